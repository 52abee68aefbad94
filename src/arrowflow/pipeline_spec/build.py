"""Build a :class:`~arrowflow.pipeline.Pipeline` from a YAML document (``arrowflow run pipeline.yaml``).

The document::

    source: {type: datagen, count: 1000, fields: {id: {sequence: {start: 0}}}}
    watermarks:                    # optional: event time (arrowflow.time.WatermarkStrategy)
      column: ts                   # or timestamps: "module:function" (batch -> timestamps)
      max_delay: 5s                # bounded out-of-orderness (omit: monotonous)
      idleness: 1m                 # optional
      alignment: {group: g, max_drift: 30s}   # optional
      late_rows: keep              # keep | drop | fail | a dead-letter sink mapping
    operators:                     # optional, applied in order
      - filter: "id % 2 == 0"      # see arrowflow.pipeline_spec.expr for the expression language
      - select: [id]
      - window:                    # tumbling: 1m | sliding: {size: 5m, slide: 1m} | session: {gap: 30s}
          tumbling: 1m
          by: [user]
          aggs: {n: count, total: {sum: amount}, users: {approx_distinct: user}}
          allowed_lateness: 10s    # optional; also column: (event time), late_rows:, time: processing
    sink: {type: file, path: out/, format: parquet}
    run: {guarantee: at-least-once, checkpoint_dir: ckpt/, checkpoint_interval: 5}   # optional
    #  also: restart: {type: exponential-delay, initial: 1s, max: 1m}  (or fixed-delay: attempts,
    #  delay | failure-rate: max_failures, interval, delay | none), parallelism: 2

Everything is checked before anything runs: unknown keys, missing required options, wrong types,
unknown connector types and operators raise :class:`~arrowflow.errors.ConfigurationError` reading
``file:line: path.to.key: what is wrong``.

How a connector mapping becomes a constructor call (data-driven; no per-connector code beyond the
few adapters in :data:`FIELD_ADAPTERS`):

* ``type`` names a connector of :mod:`arrowflow.connectors.registry` (aliases in :data:`ALIASES`) or
  an import path ``"package.module:Class"``; the role (source or sink) picks the class. Where the
  registry names a ``sink_factory`` (kafka: ``kafka_sink``), the sink of ``type: NAME`` is built by
  it, with the class's options: ``type: kafka`` with ``guarantee: exactly-once`` is a
  ``TransactionalKafkaSink``.
* The other keys must be parameters of the class's ``__init__``; the constructor (its frozen config
  dataclass) validates the values, and a :class:`ConfigurationError` naming an option is reported at
  that option's line.
* Generic conversions by parameter: a ``format`` mapping ``{type: json, ...}`` (or a format name where
  the parameter's default is not a string) goes through :func:`arrowflow.formats.for_name`; a
  ``schema`` mapping ``{column: type name}`` becomes a ``pyarrow.Schema``; a string for a ``bytes``
  parameter is UTF-8 encoded; a string ``filter`` is an expression; ``"module:function"`` for a
  callable parameter (``generator``, ``fn``, ``partitioner`` ..., or any parameter annotated
  ``Callable`` that takes no string) is imported.
* A mapping for a parameter annotated with a configuration dataclass (``batching: BatchingConfig``,
  ``retry: Retry``, or ``X | None``; not where the annotation also takes a ``Mapping``, which the
  connector reads itself) builds that dataclass, recursively, with the same checks, conversions and
  error locations (``sink.batching.max_in_flight``). Fields the mapping leaves out keep the
  connector's default for the other options given (:func:`connector_default`): a MongoDB sink's
  ``batching: {max_request_rows: 200}`` in ``mode: replace`` is ``MONGODB_KEYED_BATCHING`` with 200
  rows per request, not ``BatchingConfig()`` with 200.
* Strings under secret-looking keys (password, token, api_key ...) arrive as
  :class:`~arrowflow.config.Secret` (see :func:`~arrowflow.pipeline_spec.loader.is_secret_key`).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import importlib
import inspect
import os
import re
import types
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..config import REQUIRED, check_type
from ..errors import ConfigurationError
from ..ops.base import Operator
from ..sink import Sink
from ..source import Source
from .expr import parse_expression
from .loader import Node, NodeList, expand_tree, load_yaml, located

__all__ = [
    "ALIASES",
    "BENCH_FIELDS",
    "OPERATORS",
    "RUN_OPTIONS",
    "PipelineSpec",
    "apply_overrides",
    "bench_fields",
    "build_connector",
    "build_pipeline",
    "connector_default",
    "import_object",
    "load_pipeline",
    "resolve_connector",
]

#: Connector names accepted besides the registry's own.
ALIASES: dict[str, str] = {
    "file": "filesystem",
    "files": "filesystem",
    "console": "print",
    "stdout": "print",
    "discard": "null",
    "blackhole": "null",
}

#: ``run:`` keys (the options of :meth:`arrowflow.Pipeline.run` that a file can spell).
RUN_OPTIONS: tuple[str, ...] = (
    "checkpoint_dir",
    "checkpoint_interval",
    "guarantee",
    "max_rows",
    "progress",
    "metrics_port",
    "max_batch_rows",
    "read_timeout",
    "queue_size",
    "watermark_interval",
    "restart",
    "parallelism",
)

#: ``run.restart.type`` values (Flink's names; ``_`` and ``-`` are interchangeable) and the options
#: each takes (the keyword parameters of the :mod:`arrowflow.pipeline.restart` factory).
RESTART_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "none": ("no_restart", ()),
    "fixed-delay": ("fixed_delay", ("attempts", "delay")),
    "exponential-delay": (
        "exponential_delay",
        ("initial", "max", "multiplier", "reset_after", "attempts", "jitter", "seed"),
    ),
    "failure-rate": ("failure_rate", ("max_failures", "interval", "delay")),
}

_TOP_LEVEL = ("source", "watermarks", "operators", "sink", "run")
_CALLABLE_PARAMS = {
    "generator",
    "fn",
    "func",
    "function",
    "partitioner",
    "setup",
    "teardown",
    "key_fn",
    "callback",
}
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class _Ctx:
    """Where a value sits: the file name and the key path (for error messages)."""

    filename: str
    #: The document's watermark strategy (a window's default event time), if it has one.
    watermarks: Any = None

    def error(self, node: Any, key: Any, path: str, message: str) -> ConfigurationError:
        line = node.line_of(key) if isinstance(node, (Node, NodeList)) else None
        return located(self.filename, line, path, message)


def _plain(value: Any) -> Any:
    """A copy of ``value`` made of plain dicts and lists (connectors never see :class:`Node`)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _show(node: Node, key: Any) -> str:
    """How an error message quotes a value: the unexpanded text, never a secret."""
    if key in node.raw:
        return repr(node.raw[key])
    return repr(node[key])


def _type_name(value: Any) -> str:
    names: dict[type, str] = {
        dict: "a mapping",
        Node: "a mapping",
        list: "a list",
        NodeList: "a list",
        str: "a string",
    }
    return names.get(type(value), type(value).__name__)


def import_object(path: str, what: str = "object") -> Any:
    """Import ``"package.module:attr"`` (``attr`` may be dotted). Raises ``ConfigurationError``."""
    if not isinstance(path, str) or not _IMPORT_PATH.match(path):
        raise ConfigurationError(f"{what} must be an import path 'package.module:name', got {path!r}")
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot import {path!r}: {exc}") from None
    return obj


# -- datagen -------------------------------------------------------------------------------------


def bench_fields() -> dict[str, Any]:
    """The benchmark table of BASELINES.md as DataGen fields: int64, float64, string (15-25 chars),
    bool, timestamp[us], int32, string (6-10 chars), float64."""
    from datetime import datetime

    from ..connectors import datagen as dg

    return {
        "id": dg.Sequence(start=0),
        "value": dg.Uniform(low=0.0, high=1000.0),
        "name": dg.RandomString(length=(15, 25)),
        "flag": dg.Bool(p=0.5),
        "ts": dg.Timestamps(start=datetime(2026, 1, 1), step=1000, unit="us"),
        "quantity": dg.Uniform(low=0, high=1_000_000, type="int32"),
        "code": dg.RandomString(length=(6, 10)),
        "score": dg.Normal(mean=0.0, std=1.0),
    }


#: Column names of :func:`bench_fields`.
BENCH_FIELDS: tuple[str, ...] = ("id", "value", "name", "flag", "ts", "quantity", "code", "score")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _field_generators() -> dict[str, type]:
    from ..connectors import datagen as dg

    out: dict[str, type] = {}
    for attr in dir(dg):
        obj = getattr(dg, attr)
        if isinstance(obj, type) and issubclass(obj, dg.FieldGenerator) and obj is not dg.FieldGenerator:
            out[_snake(obj.__name__)] = obj
    return out


def _datagen_fields(value: Any, node: Node, key: str, path: str, ctx: _Ctx) -> Any:
    """``{column: {generator: {options}}}`` (or ``{column: generator}``) -> DataGen field generators."""
    if value == "bench":
        return bench_fields()
    if not isinstance(value, Node):
        raise ctx.error(node, key, path, f"must be a mapping of column -> generator, got {_type_name(value)}")
    gens = _field_generators()
    allowed = ", ".join(sorted(gens))
    out: dict[str, Any] = {}
    for column, spec in value.items():
        sub = f"{path}.{column}"
        if isinstance(spec, str):
            gen_name, options = spec, Node()
        elif isinstance(spec, Node) and len(spec) == 1:
            gen_name, options = next(iter(spec.items()))
            options = Node() if options is None else options
        else:
            raise ctx.error(value, column, sub, f"must be {{generator: {{options}}}} with one of: {allowed}")
        cls = gens.get(gen_name)
        if cls is None:
            where = value if isinstance(spec, str) else spec
            raise ctx.error(
                where,
                gen_name if isinstance(spec, Node) else column,
                sub,
                f"unknown generator {gen_name!r}; allowed: {allowed}",
            )
        if not isinstance(options, Node):
            raise ctx.error(
                spec, gen_name, f"{sub}.{gen_name}", f"options must be a mapping, got {_type_name(options)}"
            )
        names = [f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]
        # skip=(): a generator's own "type" option (Uniform(type="int32")) is not the connector type.
        out[column] = _construct(cls, options, f"{sub}.{gen_name}", ctx, names=names, skip=())
    return out


def _partition_commit(value: Any, node: Node, key: str, path: str, ctx: _Ctx) -> Any:
    """``{every: 1h, delay: 10s, success_file: _SUCCESS, callback: "module:function"}``."""
    from ..connectors.filesystem import PartitionCommit

    if value is True:
        value = Node()
    if not isinstance(value, Node):
        raise ctx.error(
            node, key, path, "must be a mapping {every, time_column, delay, success_file, callback}"
        )
    return _construct(PartitionCommit, value, path, ctx, skip=(), option_prefix="partition_commit.")


#: Per (class name, parameter) adapters: ``fn(value, node, key, path, ctx) -> constructor value``.
FIELD_ADAPTERS: dict[tuple[str, str], Callable[[Any, Node, str, str, _Ctx], Any]] = {
    ("DataGenSource", "fields"): _datagen_fields,
    ("DataGenSource", "schema_spec"): _datagen_fields,
    ("FileSink", "partition_commit"): _partition_commit,
}


# -- generic conversions ---------------------------------------------------------------------------


def _arrow_type(text: str, option: str) -> pa.DataType:
    from ..formats import _type_from_name

    return _type_from_name(text, option)  # type: ignore[no-any-return]


def _schema(value: Mapping[str, Any], path: str) -> pa.Schema:
    return pa.schema(
        [
            pa.field(str(n), _arrow_type(t, f"{path}.{n}") if isinstance(t, str) else t)
            for n, t in value.items()
        ]
    )


def _format(value: Any, node: Node, key: str, path: str, ctx: _Ctx) -> Any:
    from ..formats import for_name

    if isinstance(value, str):
        name, options = value, {}
    else:
        if "type" not in value:
            raise ctx.error(
                value, "type", path, "a format mapping needs type: (json, csv, avro, raw, arrow-ipc)"
            )
        options = {k: _plain(v) for k, v in value.items() if k != "type"}
        name = value["type"]
    try:
        return for_name(name, **options)
    except ConfigurationError as exc:
        opt = exc.option if isinstance(value, Node) and exc.option in value else key
        where = value if opt != key else node
        raise ctx.error(where, opt, path if opt == key else f"{path}.{opt}", _strip(str(exc), opt)) from None


def _strip(message: str, option: str | None) -> str:
    """Drop a leading ``"option: "`` from a constructor's message (the location already names it)."""
    if option and message.startswith(f"{option}: "):
        return message[len(option) + 2 :]
    return message


# -- typed parameters --------------------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> Mapping[str, Any]:
    """The resolved annotations of ``cls``'s constructor (a dataclass: its fields). Annotations are
    strings (``from __future__ import annotations``); one that cannot be resolved (a name imported
    only for type checkers) is left out, and its parameter gets no typed conversion."""
    target: Any = cls if dataclasses.is_dataclass(cls) else cls.__init__  # type: ignore[misc]
    try:
        return typing.get_type_hints(target)
    except Exception:  # one annotation that does not resolve fails them all: resolve them one by one
        pass
    out: dict[str, Any] = {}
    owners = list(reversed(cls.__mro__)) if dataclasses.is_dataclass(cls) else [target]
    for owner in owners:
        namespace = getattr(inspect.getmodule(owner), "__dict__", {})
        for name, annotation in inspect.get_annotations(owner).items():  # its own, not inherited
            try:
                out[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
            except Exception:  # a name imported for type checkers only: no typed conversion then
                out.pop(name, None)
    return out


def _union_args(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _config_type(hint: Any) -> type | None:
    """The configuration dataclass a parameter annotated ``hint`` takes (``X``, ``X | None``; of
    ``X | Y`` where both are dataclasses, the first: ``retry: Retry | RetryStrategy`` lists the current
    one before the deprecated one), unless the annotation also takes a ``Mapping`` (the connector reads
    that mapping itself) or other types."""
    args = [a for a in _union_args(hint) if a is not type(None)]
    if not args or not all(isinstance(a, type) and dataclasses.is_dataclass(a) for a in args):
        return None
    return args[0]  # type: ignore[no-any-return]


def _takes_callable(hint: Any) -> bool:
    """Whether ``hint`` is ``Callable[...]`` (or ``... | None``) and takes no string."""
    args = _union_args(hint)
    if str in args:
        return False
    return any(typing.get_origin(a) is collections.abc.Callable for a in args)


def connector_default(cls: type, name: str, options: Mapping[str, Any]) -> Any:
    """What ``cls(**options)`` uses for its parameter ``name`` when ``name`` is not given, or ``None``
    when that is not an instance of the parameter's configuration dataclass.

    Where the constructor takes ``config=`` (a dataclass with a ``name`` field), the default is that
    configuration's ``name`` built from the ``options`` that are its fields: per-option defaults
    follow (MongoSink's batching is ``MONGODB_KEYED_BATCHING`` in the keyed modes). Otherwise, and
    when the options do not make a valid configuration (the connector's own construction reports
    that), it is the parameter's default.
    """
    hints = _hints(cls)
    wanted = _config_type(hints.get(name))
    if wanted is None:
        return None
    params, _ = _parameters(cls)
    default: Any = params[name].default if name in params else None
    config_type = _config_type(hints.get("config"))
    if config_type is not None and name != "config":
        names = {f.name for f in dataclasses.fields(config_type) if f.init}
        if name in names:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a check's warning shows when the sink is built
                    config = config_type(**{k: v for k, v in options.items() if k in names and k != name})
                default = getattr(config, name)
            except (ConfigurationError, TypeError, ValueError):
                pass
    return default if isinstance(default, wanted) else None


def _build_config(
    cls: type, config_type: type, kwargs: Mapping[str, Any], mapping: Node, key: str, path: str, ctx: _Ctx
) -> Any:
    """``config_type`` (the dataclass ``cls``'s parameter ``key`` takes) from the mapping
    ``mapping[key]``: fields not in it come from :func:`connector_default` for the other options
    (``kwargs``), else from ``config_type``'s own defaults."""
    base = connector_default(cls, key, kwargs)
    prefix = None
    if base is not None:
        prefix = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
    return _construct(config_type, mapping[key], path, ctx, skip=(), prefix=prefix)


def _convert(
    cls: type, param: inspect.Parameter | None, value: Any, node: Node, key: str, path: str, ctx: _Ctx
) -> Any:
    adapter = FIELD_ADAPTERS.get((cls.__name__, key))
    if adapter is not None:
        return adapter(value, node, key, path, ctx)
    default = param.default if param is not None else inspect.Parameter.empty
    if key in ("format", "key_format") and (
        isinstance(value, Node) or (isinstance(value, str) and not isinstance(default, str))
    ):
        return _format(value, node, key, path, ctx)
    if key == "schema" and isinstance(value, Node):
        try:
            return _schema(value, path)
        except ConfigurationError as exc:
            raise ctx.error(node, key, path, str(exc)) from None
    if key == "filter" and isinstance(value, str):
        try:
            return parse_expression(value)
        except ConfigurationError as exc:
            raise ctx.error(node, key, path, str(exc)) from None
    if isinstance(default, bytes) and isinstance(value, str):
        return value.encode()
    typed_callable = isinstance(value, str) and _takes_callable(_hints(cls).get(key))
    if typed_callable or (key in _CALLABLE_PARAMS and isinstance(value, str) and _IMPORT_PATH.match(value)):
        try:
            return import_object(value, key)
        except ConfigurationError as exc:
            raise ctx.error(node, key, path, str(exc)) from None
    return _plain(value)


def _parameters(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """``cls.__init__``'s keyword-capable parameters and whether it takes ``**kwargs``."""
    sig = inspect.signature(cls)
    params = {
        name: p
        for name, p in sig.parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return params, var_kw


def _construct(
    cls: type,
    mapping: Node,
    path: str,
    ctx: _Ctx,
    *,
    names: Sequence[str] | None = None,
    skip: Sequence[str] = ("type",),
    prefix: Mapping[str, Any] | None = None,
    option_prefix: str = "",
    factory: Callable[..., Any] | None = None,
) -> Any:
    """``cls(**mapping)`` after checking the keys against its parameters (or ``names``).

    ``option_prefix``: stripped from the ``option`` of a constructor's :class:`ConfigurationError`
    (options of nested configurations are named ``parent.option``). ``factory``: called instead of
    ``cls``, with ``cls``'s options."""
    params, var_kw = _parameters(cls)
    allowed = list(names) if names is not None else list(params)
    kwargs: dict[str, Any] = dict(prefix or {})
    # Mappings for configuration-dataclass parameters, built once the other options are known.
    configs: dict[str, tuple[type, str]] = {}
    for key, value in mapping.items():
        if key in skip:
            continue
        sub = f"{path}.{key}" if path else str(key)
        if not isinstance(key, str) or (key not in allowed and not var_kw):
            raise ctx.error(mapping, key, sub, f"unknown option; allowed: {', '.join(allowed) or '(none)'}")
        config_type = _config_type(_hints(cls).get(key)) if isinstance(value, Node) else None
        if config_type is not None and (cls.__name__, key) not in FIELD_ADAPTERS:
            configs[key] = (config_type, sub)
        else:
            kwargs[key] = _convert(cls, params.get(key), value, mapping, key, sub, ctx)
    for key, (config_type, sub) in configs.items():
        kwargs[key] = _build_config(cls, config_type, kwargs, mapping, key, sub, ctx)
    missing = [
        n
        for n, p in params.items()
        # REQUIRED: a keyword the constructor also accepts through ``config=``
        if (p.default is inspect.Parameter.empty or (p.default is REQUIRED and "config" not in kwargs))
        and n not in kwargs
        and (names is None or n in names)
    ]
    if missing:
        raise ctx.error(mapping, None, path, f"missing required option(s): {', '.join(missing)}")
    try:
        return (factory or cls)(**kwargs)
    except ConfigurationError as exc:
        opt = exc.option
        if opt and option_prefix and opt.startswith(option_prefix):
            opt = opt[len(option_prefix) :]
        if opt in mapping:
            raise ctx.error(
                mapping, opt, f"{path}.{opt}", _strip(_strip(str(exc), exc.option), opt)
            ) from None
        raise ctx.error(mapping, None, path, str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise ctx.error(mapping, None, path, f"{cls.__name__}: {exc}") from None


# -- connectors ------------------------------------------------------------------------------------


def resolve_connector(name: str, role: str, variant: str | None = None) -> type:
    """The class for connector ``name`` in ``role`` (``"source"`` or ``"sink"``).

    ``name`` is a registry name, an alias from :data:`ALIASES`, or ``"package.module:Class"``;
    ``variant`` picks one of the entry's other classes (``ConnectorInfo.variants``: ``mongodb`` +
    ``change-stream`` is ``MongoChangeStreamSource``). Raises :class:`ConfigurationError` (unknown
    name or variant, no class for that role, client library missing).
    """
    from ..connectors import registry

    base: type = Source if role == "source" else Sink
    if not isinstance(name, str):
        raise ConfigurationError(f"type must be a string, got {type(name).__name__}", option="type")
    check_type("variant", variant, str, allow_none=True)
    if ":" in name:
        if variant is not None:
            raise ConfigurationError(
                "variant goes with a registry name, not an import path", option="variant"
            )
        cls = import_object(name, "type")
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise ConfigurationError(f"{name!r} is not an arrowflow {base.__name__}", option="type")
        return cls
    by_name = {info.name: info for info in registry.CONNECTORS}
    info = by_name.get(ALIASES.get(name, name))
    if info is None:
        raise ConfigurationError(
            f"unknown connector type {name!r}; known: {', '.join(sorted(by_name))} "
            "(or 'package.module:Class')",
            option="type",
        )
    class_name = info.class_name(role, variant)
    if class_name is None and variant is None:
        have = [n for n, i in by_name.items() if (i.sources if role == "source" else i.sinks)]
        raise ConfigurationError(
            f"connector {name!r} has no {role}; {role}s: {', '.join(sorted(have))}", option="type"
        )
    if class_name is None:
        known = info.variant_names(role)
        raise ConfigurationError(
            f"connector {name!r} has no {role} variant {variant!r}; "
            f"its {role} variants: {', '.join(known) or '(none)'}",
            option="variant",
        )
    try:
        module = importlib.import_module(info.module)
    except ImportError as exc:
        extra = f" (pip install 'arrowflow[{info.extra}]')" if info.extra else ""
        raise ConfigurationError(
            f"connector {name!r} cannot be loaded: {exc}{extra}", option="type"
        ) from None
    return getattr(module, class_name)  # type: ignore[no-any-return]


def build_connector(spec: Any, role: str, *, filename: str = "<spec>", path: str | None = None) -> Any:
    """Construct the source or sink described by ``spec`` (a mapping with ``type``).

    ``spec`` may be a plain mapping (converted to a located :class:`Node` without line numbers).
    """
    path = role if path is None else path
    ctx = _Ctx(filename)
    node = spec if isinstance(spec, Node) else _to_node(spec)
    if not isinstance(node, Node):
        raise located(filename, None, path, f"must be a mapping with a type, got {_type_name(spec)}")
    if "type" not in node:
        raise ctx.error(node, None, path, "missing 'type' (a connector name or 'package.module:Class')")
    type_name = node["type"]
    if type_name is None:
        type_name = "null"  # YAML reads ``type: null`` as None; the user means the null sink
    try:
        cls = resolve_connector(type_name, role, node.get("variant"))
    except ConfigurationError as exc:
        key = "variant" if exc.option == "variant" else "type"
        raise ctx.error(node, key, f"{path}.{key}", str(exc)) from None
    factory = _sink_factory(type_name, role, node)
    return _construct(cls, node, path, ctx, skip=("type", "variant"), factory=factory)


def _to_node(value: Any) -> Any:
    if isinstance(value, (Node, NodeList)):
        return value
    if isinstance(value, Mapping):
        node = Node({k: _to_node(v) for k, v in value.items()})
        return node
    if isinstance(value, list):
        out = NodeList(_to_node(v) for v in value)
        return out
    return value


def _sink_factory(name: Any, role: str, node: Node) -> Callable[..., Any] | None:
    """The registry's ``sink_factory`` for ``type: name`` (``kafka_sink`` for ``kafka``), or None: for
    a sink named by its registry name (or alias) alone, not by import path or with a ``variant``."""
    from ..connectors import registry

    if role != "sink" or not isinstance(name, str) or node.get("variant") is not None:
        return None
    info = next((i for i in registry.CONNECTORS if i.name == ALIASES.get(name, name)), None)
    if info is None or info.sink_factory is None:
        return None
    return getattr(importlib.import_module(info.module), info.sink_factory)  # type: ignore[no-any-return]


# -- operators -------------------------------------------------------------------------------------


def _op_filter(value: Any, item: Node, path: str, ctx: _Ctx) -> Operator:
    from ..ops import Filter

    if not isinstance(value, str):
        raise ctx.error(item, "filter", path, f"must be an expression string, got {_type_name(value)}")
    try:
        return Filter(parse_expression(value))
    except ConfigurationError as exc:
        raise ctx.error(item, "filter", path, str(exc)) from None


def _op_select(value: Any, item: Node, path: str, ctx: _Ctx) -> Operator:
    from ..ops import Select

    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ctx.error(item, "select", path, "must be a list of column names")
    return Select(list(value))


def _op_rename(value: Any, item: Node, path: str, ctx: _Ctx) -> Operator:
    from ..ops import Rename

    if not isinstance(value, Node) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ctx.error(item, "rename", path, "must be a mapping old name -> new name")
    return Rename(dict(value))


def _op_with_columns(value: Any, item: Node, path: str, ctx: _Ctx) -> Operator:
    from ..ops import WithColumns

    if not isinstance(value, Node) or not value:
        raise ctx.error(item, "with_columns", path, "must be a mapping column -> expression")
    columns: dict[str, Any] = {}
    for name, expr in value.items():
        if isinstance(expr, str):
            try:
                columns[str(name)] = parse_expression(expr)
            except ConfigurationError as exc:
                raise ctx.error(value, name, f"{path}.{name}", str(exc)) from None
        elif expr is None or isinstance(expr, (int, float, bool)):
            columns[str(name)] = expr
        else:
            raise ctx.error(
                value, name, f"{path}.{name}", "must be an expression string or a number/bool literal"
            )
    return WithColumns(**columns)


def _op_rebatch(value: Any, item: Node, path: str, ctx: _Ctx) -> Operator:
    from ..ops import Rebatch

    if isinstance(value, int) and not isinstance(value, bool):
        value = Node(rows=value)
    if not isinstance(value, Node):
        raise ctx.error(item, "rebatch", path, "must be a row count or {rows: N, bytes: M}")
    return _construct(Rebatch, value, path, ctx, skip=())  # type: ignore[no-any-return]


def _callable_op(cls_name: str, key: str) -> Callable[[Any, Node, str, _Ctx], Operator]:
    def build(value: Any, item: Node, path: str, ctx: _Ctx) -> Operator:
        from .. import ops

        cls = getattr(ops, cls_name)
        if isinstance(value, str):
            value_node = Node(fn=value)
            value_node.line = item.line_of(key)
            value_node.key_lines["fn"] = item.line_of(key)
            value = value_node
        if not isinstance(value, Node) or "fn" not in value:
            raise ctx.error(
                item, key, path, "must be an import path 'module:function' or {fn: 'module:function', ...}"
            )
        try:
            fn = import_object(value["fn"], "fn")
        except ConfigurationError as exc:
            raise ctx.error(value, "fn", f"{path}.fn", str(exc)) from None
        return _construct(cls, value, path, ctx, skip=("fn",), prefix={"fn": fn})  # type: ignore[no-any-return]

    return build


def _op_key_by(value: Any, item: Node, path: str, ctx: _Ctx) -> Operator:
    from ..ops import KeyBy

    if not isinstance(value, Node):
        raise ctx.error(item, "key_by", path, "must be {columns: [...], num_partitions: N}")
    return _construct(KeyBy, value, path, ctx, skip=())  # type: ignore[no-any-return]


def _op_flat_map(value: Any, item: Node, path: str, ctx: _Ctx) -> Operator:
    from ..ops import FlatMap

    if isinstance(value, str):
        return FlatMap(value)
    if not isinstance(value, Node):
        raise ctx.error(item, "flat_map", path, "must be a column name or {column: name}")
    return _construct(FlatMap, value, path, ctx, skip=())  # type: ignore[no-any-return]


_WINDOW_KINDS = ("tumbling", "sliding", "session")


def _window_assigner(value: Node, path: str, ctx: _Ctx) -> Any:
    from .. import time as et

    kinds = [k for k in _WINDOW_KINDS if k in value]
    if len(kinds) != 1:
        raise ctx.error(value, None, path, f"needs exactly one of: {', '.join(_WINDOW_KINDS)}")
    kind = kinds[0]
    spec = value[kind]
    sub = f"{path}.{kind}"
    builders = {
        "tumbling": (et.tumbling, "size"),
        "sliding": (et.sliding, None),
        "session": (et.session, "gap"),
    }
    fn, single = builders[kind]
    if not isinstance(spec, Node):
        if single is None:
            raise ctx.error(value, kind, sub, "must be a mapping {size, slide, offset}")
        spec = Node({single: spec})
        spec.line = value.line_of(kind)
    return _construct(fn, spec, sub, ctx, skip=())  # type: ignore[arg-type]


def _window_aggs(value: Any, item: Node, path: str, ctx: _Ctx) -> list[Any]:
    """``{name: count | {kind: column, ...options}}`` or a list of ``count | {kind: column}``."""
    from ..time import agg as agg_mod

    def one(spec: Any, where: Any, key: Any, sub: str, name: str | None) -> Any:
        if isinstance(spec, str):
            spec = Node({spec: None})
        if not isinstance(spec, Node) or not spec:
            raise ctx.error(where, key, sub, "must be an aggregate name (count) or {kind: column, ...}")
        kind = next(iter(spec))
        fn = getattr(agg_mod, kind, None) if kind in agg_mod.__all__ else None
        if fn is None:
            raise ctx.error(
                spec, kind, f"{sub}.{kind}", f"unknown aggregate; allowed: {', '.join(agg_mod.__all__)}"
            )
        arg = spec[kind]
        options = Node({k: v for k, v in spec.items() if k != kind})
        options.line, options.key_lines = spec.line, dict(spec.key_lines)
        if kind == "apply":
            options["fn"] = arg
            if name is not None and "name" not in options:
                options["name"] = name
        elif arg is not None:
            options["column"] = arg
        made = _construct(fn, options, f"{sub}.{kind}", ctx, skip=())
        return made.alias(name) if name is not None else made

    if isinstance(value, Node):
        return [one(spec, value, name, f"{path}.{name}", str(name)) for name, spec in value.items()]
    if isinstance(value, NodeList):
        return [one(spec, value, i, f"{path}[{i}]", None) for i, spec in enumerate(value)]
    raise ctx.error(item, "aggs", path, "must be a mapping name -> aggregate or a list of aggregates")


def _op_window(value: Any, item: Node, path: str, ctx: _Ctx) -> Operator:
    from ..ops import Window

    if not isinstance(value, Node):
        raise ctx.error(item, "window", path, "must be a mapping {tumbling|sliding|session, by, aggs, ...}")
    if True in value:
        # YAML 1.1 reads an unquoted key ``on`` as the boolean true: the user wrote on: (= column:).
        value["on"] = value.pop(True)
        value.key_lines["on"] = value.key_lines.get(True, value.line)
    if "column" in value:
        value["on"] = value.pop("column")
        value.key_lines["on"] = value.key_lines.get("column", value.line)
    allowed = (*_WINDOW_KINDS, "by", "aggs", "column", "allowed_lateness", "late_rows", "time")
    for key in value:
        if key not in allowed and key != "on":
            raise ctx.error(value, key, f"{path}.{key}", f"unknown option; allowed: {', '.join(allowed)}")
    if "aggs" not in value:
        raise ctx.error(value, None, path, "missing aggs")
    kwargs: dict[str, Any] = {
        "assigner": _window_assigner(value, path, ctx),
        "aggs": _window_aggs(value["aggs"], value, f"{path}.aggs", ctx),
    }
    for key in ("by", "allowed_lateness", "time"):
        if key in value:
            kwargs[key] = _plain(value[key])
    if "on" in value:
        on = value["on"]
        kwargs["on"] = import_object(on, "on") if isinstance(on, str) and _IMPORT_PATH.match(on) else on
    elif kwargs.get("time", "event") == "event" and ctx.watermarks is not None:
        kwargs["on"] = ctx.watermarks.timestamps
    if "late_rows" in value:
        kwargs["late_rows"] = _late_rows(value, f"{path}.late_rows", ctx)
    try:
        return Window(**kwargs)
    except ConfigurationError as exc:
        opt = exc.option if exc.option in value else None
        raise ctx.error(value, opt, f"{path}.{opt}" if opt else path, _strip(str(exc), opt)) from None


def _late_rows(node: Node, path: str, ctx: _Ctx) -> Any:
    value = node["late_rows"]
    if isinstance(value, Node):
        return build_connector(value, "sink", filename=ctx.filename, path=path)
    return value


#: ``watermarks:`` keys.
WATERMARK_OPTIONS = ("column", "timestamps", "max_delay", "idleness", "alignment", "late_rows")


def _build_watermarks(value: Any, root: Node, ctx: _Ctx) -> tuple[Any, Any]:
    """The ``watermarks:`` section -> ``(WatermarkStrategy or None, late_rows)``."""
    from ..time import WatermarkStrategy

    if value is None:
        return None, "keep"
    if not isinstance(value, Node):
        raise ctx.error(root, "watermarks", "watermarks", f"must be a mapping, got {_type_name(value)}")
    for key in value:
        if key not in WATERMARK_OPTIONS:
            raise ctx.error(
                value, key, f"watermarks.{key}", f"unknown option; allowed: {', '.join(WATERMARK_OPTIONS)}"
            )
    if ("column" in value) == ("timestamps" in value):
        raise ctx.error(
            value, None, "watermarks", "needs column: (a column name) or timestamps: 'module:function'"
        )
    key = "column" if "column" in value else "timestamps"
    ts = value[key]
    try:
        if key == "timestamps":
            ts = import_object(ts, "timestamps")
        strategy = (
            WatermarkStrategy.bounded_out_of_orderness(ts, value["max_delay"])
            if "max_delay" in value
            else WatermarkStrategy.monotonous(ts)
        )
        if "idleness" in value:
            strategy = strategy.with_idleness(value["idleness"])
        if "alignment" in value:
            al = value["alignment"]
            if not isinstance(al, Node) or set(al) != {"group", "max_drift"}:
                raise ConfigurationError("must be {group: name, max_drift: duration}", option="alignment")
            strategy = strategy.with_alignment(al["group"], al["max_drift"])
    except ConfigurationError as exc:
        names = {
            "timestamps": key,
            "max_delay": "max_delay",
            "idleness": "idleness",
            "alignment": "alignment",
        }
        opt = names.get(exc.option or "", exc.option or "")
        if exc.option in ("group", "max_drift"):
            opt = "alignment"
        where = opt if opt in value else None
        message = _strip(str(exc), exc.option)
        raise ctx.error(value, where, f"watermarks.{where}" if where else "watermarks", message) from None
    late = _late_rows(value, "watermarks.late_rows", ctx) if "late_rows" in value else "keep"
    return strategy, late


#: Operator name in YAML -> builder ``(value, item node, path, ctx) -> Operator``.
OPERATORS: dict[str, Callable[[Any, Node, str, _Ctx], Operator]] = {
    "filter": _op_filter,
    "select": _op_select,
    "rename": _op_rename,
    "with_columns": _op_with_columns,
    "rebatch": _op_rebatch,
    "map_batches": _callable_op("MapBatches", "map_batches"),
    "enrich": _callable_op("Enrich", "enrich"),
    "key_by": _op_key_by,
    "flat_map": _op_flat_map,
    "window": _op_window,
}


def _build_operators(value: Any, root: Node, ctx: _Ctx) -> list[Operator]:
    if value is None:
        return []
    if not isinstance(value, NodeList):
        raise ctx.error(root, "operators", "operators", f"must be a list, got {_type_name(value)}")
    ops: list[Operator] = []
    allowed = ", ".join(OPERATORS)
    for i, item in enumerate(value):
        path = f"operators[{i}]"
        if not isinstance(item, Node) or len(item) != 1:
            raise ctx.error(value, i, path, f"each operator is a one-key mapping; one of: {allowed}")
        name, arg = next(iter(item.items()))
        builder = OPERATORS.get(name)
        if builder is None:
            raise ctx.error(item, name, f"{path}.{name}", f"unknown operator; allowed: {allowed}")
        ops.append(builder(arg, item, f"{path}.{name}", ctx))
    return ops


# -- the document ----------------------------------------------------------------------------------


def _run_options(value: Any, root: Node, ctx: _Ctx) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Node):
        raise ctx.error(root, "run", "run", f"must be a mapping, got {_type_name(value)}")
    out: dict[str, Any] = {}
    for key, v in value.items():
        if key not in RUN_OPTIONS:
            raise ctx.error(value, key, f"run.{key}", f"unknown option; allowed: {', '.join(RUN_OPTIONS)}")
        out[key] = _restart(v, value, ctx) if key == "restart" else v
    try:
        _check_run_options(out)
    except ConfigurationError as exc:
        opt = exc.option if exc.option in value else None
        raise ctx.error(value, opt, f"run.{opt}" if opt else "run", _strip(str(exc), opt)) from None
    return out


def _restart(value: Any, run: Node, ctx: _Ctx) -> Any:
    """``run.restart``: ``none`` or ``{type: fixed-delay | exponential-delay | failure-rate, <options>}``
    -> a :class:`~arrowflow.pipeline.restart.RestartStrategy` (errors name ``run.restart.<option>``)."""
    from ..pipeline import restart as strategies

    types = ", ".join(RESTART_TYPES)
    if value is None or value == "none":
        return None
    if not isinstance(value, Node):
        raise ctx.error(run, "restart", "run.restart", f"must be 'none' or a mapping with type: ({types})")
    kind = str(value.get("type", "")).replace("_", "-")
    if kind not in RESTART_TYPES:
        where = "type" if "type" in value else None
        raise ctx.error(
            value, where, "run.restart.type", f"must be one of {types}, got {value.get('type')!r}"
        )
    factory, allowed = RESTART_TYPES[kind]
    kwargs: dict[str, Any] = {}
    for key, v in value.items():
        if key == "type":
            continue
        if key not in allowed:
            raise ctx.error(
                value,
                key,
                f"run.restart.{key}",
                f"unknown option for {kind}; allowed: {', '.join(allowed) or 'none'}",
            )
        kwargs[key] = v
    try:
        return getattr(strategies, factory)(**kwargs)
    except TypeError as exc:  # a required option is missing
        raise ctx.error(value, "type", "run.restart", f"{kind}: {exc}") from None
    except ConfigurationError as exc:
        opt = exc.option if exc.option in value else None
        path = f"run.restart.{opt}" if opt else "run.restart"
        raise ctx.error(value, opt, path, _strip(str(exc), opt)) from None


def _check_run_options(options: Mapping[str, Any]) -> None:
    from ..pipeline import RunConfig

    RunConfig(**options)


@dataclass(frozen=True)
class PipelineSpec:
    """A built pipeline and the ``run:`` options of its document.

    ``run(**overrides)`` runs it (blocking); overrides win over the file's ``run:`` section.
    """

    pipeline: Any
    run_options: dict[str, Any] = field(default_factory=dict)
    filename: str = "<spec>"

    @property
    def source(self) -> Source:
        return self.pipeline.source  # type: ignore[no-any-return]

    @property
    def sink(self) -> Sink:
        return self.pipeline.sink  # type: ignore[no-any-return]

    def options(self, **overrides: Any) -> dict[str, Any]:
        """The effective run options (file, then non-``None`` overrides), validated."""
        opts = {**self.run_options, **{k: v for k, v in overrides.items() if v is not None}}
        _check_run_options({k: v for k, v in opts.items() if k in RUN_OPTIONS})
        return opts

    def run(self, **overrides: Any) -> Any:
        """Run the pipeline (see :meth:`arrowflow.Pipeline.run`); returns its ``RunResult``."""
        return self.pipeline.run(**self.options(**overrides))


def build_pipeline(document: Any, filename: str = "<spec>") -> PipelineSpec:
    """Build a :class:`PipelineSpec` from a parsed document (a :class:`Node` or a plain mapping)."""
    from ..pipeline import Pipeline

    ctx = _Ctx(filename)
    root = _to_node(document)
    if not isinstance(root, Node):
        raise located(
            filename, None, "", f"a pipeline file is a mapping with source/sink, got {_type_name(document)}"
        )
    for key in root:
        if key not in _TOP_LEVEL:
            raise ctx.error(root, key, str(key), f"unknown section; allowed: {', '.join(_TOP_LEVEL)}")
    for key in ("source", "sink"):
        if key not in root:
            raise ctx.error(root, None, key, "missing (a mapping with type: and the connector's options)")
    source = build_connector(root["source"], "source", filename=filename)
    strategy, late_rows = _build_watermarks(root.get("watermarks"), root, ctx)
    ctx = _Ctx(filename, strategy)
    operators = _build_operators(root.get("operators"), root, ctx)
    sink = build_connector(root["sink"], "sink", filename=filename)
    run_options = _run_options(root.get("run"), root, ctx)
    try:
        pipeline = Pipeline(source, watermarks=strategy, late_rows=late_rows)
    except ConfigurationError as exc:
        raise ctx.error(root, "watermarks", "watermarks", str(exc)) from None
    for op in operators:
        pipeline = pipeline.via(op)
    return PipelineSpec(pipeline.to(sink), run_options, filename)


def apply_overrides(document: Node, overrides: Sequence[str], *, filename: str = "<spec>") -> Node:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars; ``a.b[0].c`` indexes lists)."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise ConfigurationError(f"--set {item!r}: expected key.path=value", option="set")
        dotted, _, text = item.partition("=")
        parts = _split_path(dotted)
        if not parts:
            raise ConfigurationError(f"--set {item!r}: empty key", option="set")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        if isinstance(value, (dict, list)):
            value = _to_node(value)
        target: Any = document
        for part in parts[:-1]:
            if isinstance(target, NodeList) and isinstance(part, int) and part < len(target):
                target = target[part]
            elif isinstance(target, Node):
                if not isinstance(target.get(part), (Node, NodeList)):
                    target[part] = Node()
                target = target[part]
            else:
                raise ConfigurationError(f"--set {dotted}: {part!r} is not a mapping key here", option="set")
        last = parts[-1]
        if isinstance(target, NodeList) and isinstance(last, int) and last < len(target):
            target[last] = value
        elif isinstance(target, Node):
            target[last] = value
            target.raw.pop(last, None)
        else:
            raise ConfigurationError(f"--set {dotted}: cannot set {last!r} here", option="set")
    return document


def _split_path(dotted: str) -> list[str | int]:
    out: list[str | int] = []
    for part in dotted.split("."):
        m = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", part)
        if m is None:
            raise ConfigurationError(f"--set {dotted!r}: bad key path", option="set")
        if m.group(1):
            out.append(m.group(1))
        out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return out


def load_pipeline(
    path: str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> PipelineSpec:
    """Read, validate and build the pipeline file at ``path`` (nothing runs).

    ``overrides`` are ``key.path=value`` strings applied before ``${ENV}`` expansion and validation.
    """
    p = Path(path)
    filename = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{filename}: cannot read: {exc.strerror or exc}", option="file") from None
    document = load_yaml(text, filename, environ=environ, expand=False)
    if overrides:
        if not isinstance(document, Node):
            raise located(filename, None, "", "a pipeline file is a mapping with source/sink")
        apply_overrides(document, overrides, filename=filename)
    document = expand_tree(document, filename, environ=environ)
    return build_pipeline(document, filename)
