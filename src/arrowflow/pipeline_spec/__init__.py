"""Pipelines described in YAML (``arrowflow run pipeline.yaml``).

* :mod:`.loader`: YAML with line numbers, ``${ENV}`` expansion, secrets wrapped in
  :class:`~arrowflow.config.Secret`.
* :mod:`.expr`: a safe expression language compiled to ``pyarrow.compute`` expressions.
* :mod:`.build`: document -> :class:`~arrowflow.pipeline.Pipeline` (connectors through the registry).

This package sits above :mod:`arrowflow.pipeline` and below the CLI; it imports PyYAML only when a
document is parsed.
"""

from __future__ import annotations

from .build import (
    ALIASES,
    BENCH_FIELDS,
    OPERATORS,
    RUN_OPTIONS,
    PipelineSpec,
    apply_overrides,
    bench_fields,
    build_connector,
    build_pipeline,
    connector_default,
    import_object,
    load_pipeline,
    resolve_connector,
)
from .expr import FUNCTIONS, parse_expression
from .loader import Node, NodeList, expand_tree, is_secret_key, load_yaml

__all__ = [
    "ALIASES",
    "BENCH_FIELDS",
    "FUNCTIONS",
    "OPERATORS",
    "RUN_OPTIONS",
    "Node",
    "NodeList",
    "PipelineSpec",
    "apply_overrides",
    "bench_fields",
    "build_connector",
    "build_pipeline",
    "connector_default",
    "expand_tree",
    "import_object",
    "is_secret_key",
    "load_pipeline",
    "load_yaml",
    "parse_expression",
    "resolve_connector",
]
