"""Compiled kernels (Cython sources in the top-level ``ext/`` folder).

There is no pure-Python fallback at run time: a missing compiled module is an ImportError that says
how to build it. The slow references in :mod:`arrowflow._reference` exist only as test oracles.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["COMPILED", "KERNELS", "compiled", "load"]

_BUILD_HINT = (
    "arrowflow's compiled kernels are missing ({name}: {error}). Build them with "
    "`pip install -e .` (or `python setup.py build_ext --inplace`) from the source tree."
)


def load(name: str) -> ModuleType:
    """Import ``arrowflow._ext.<name>``, failing with a clear message if it was not built."""
    try:
        return importlib.import_module(f"arrowflow._ext.{name}")
    except ImportError as exc:  # pragma: no cover - exercised only on a broken install
        raise ImportError(_BUILD_HINT.format(name=name, error=exc)) from exc


def _compiled(name: str) -> bool:
    module = load(name)
    return bool(getattr(module, "__file__", "").endswith((".so", ".pyd")))


#: The compiled kernel modules (one per ``ext/*.pyx``), named ``<format>_<direction>`` where they
#: convert. ``json`` and ``bson`` (0.1.0's names of ``json_encode`` and ``bson_encode``) are Python
#: re-exports, not kernels.
KERNELS: tuple[str, ...] = (
    "avro_decode",
    "avro_encode",
    "bson_decode",
    "bson_encode",
    "bulk",
    "datagen",
    "json_decode",
    "json_encode",
    "kafka_fetch",
    "kafka_produce",
    "mqtt_frames",
    "murmur2",
    "nats_frames",
    "remote_write",
)


def compiled() -> bool:
    """True when every kernel imports as a compiled extension module (the test suite asserts it)."""
    return all(_compiled(name) for name in KERNELS)


def __getattr__(name: str) -> bool:
    # Computed on first access so that importing arrowflow does not import every kernel.
    if name == "COMPILED":
        return compiled()
    raise AttributeError(name)
