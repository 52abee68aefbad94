"""Connectors. Names are exported lazily (module ``__getattr__``), so
``from arrowflow.connectors import CollectionSource`` imports only that connector's module, and no
connector's client library is imported until the connector is used. Every source and sink class
listed in :mod:`arrowflow.connectors.registry` is exported this way, and so is each sink factory it
names (``kafka_sink``).

The catalogue of every connector, with the extra each needs, is :mod:`arrowflow.connectors.registry`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .registry import CONNECTORS

if TYPE_CHECKING:
    from .collection import CollectionSource as CollectionSource
    from .memory import MemorySink as MemorySink
    from .null import NullSink as NullSink
    from .print import PrintSink as PrintSink
    from .socket import SocketSink as SocketSink
    from .socket import SocketSource as SocketSource

#: Exported name -> module that defines it: the built-ins, plus every class and factory the catalogue
#: lists.
_EXPORTS: dict[str, str] = {
    "CollectionSource": f"{__name__}.collection",
    "SocketSource": f"{__name__}.socket",
    "SocketSink": f"{__name__}.socket",
    "PrintSink": f"{__name__}.print",
    "NullSink": f"{__name__}.null",
    "MemorySink": f"{__name__}.memory",
}
for _info in CONNECTORS:
    for _name in (*_info.sources, *_info.sinks, *filter(None, [_info.sink_factory])):
        _EXPORTS.setdefault(_name, _info.module)

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
