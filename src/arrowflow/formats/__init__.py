"""Row formats: codecs between a ``pyarrow.RecordBatch`` and one payload per row.

Message-source and sink connectors code against :class:`Format` (``encode(batch) -> Encoded``,
``decode(payloads) -> Decoded``, ``schema``) and hand failures to an error policy with
:func:`decode_with_policy` / :func:`encode_with_policy`. :func:`for_name` builds a format from a
name and options (YAML, CLI).

Importing this package imports pyarrow and numpy only: fastavro loads when an :class:`Avro` is
built, the JSON kernel when :meth:`Json.encode` first runs.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from .arrow_ipc import ArrowIpc
from .avro import Avro, avro_to_arrow
from .base import Decoded, Encoded, Format, decode_with_policy, encode_with_policy
from .csv import Csv
from .json import Json
from .raw import Raw
from .schema_registry import ConfluentFraming, SchemaNotFound, SchemaRegistryClient

__all__ = [
    "FORMATS",
    "ArrowIpc",
    "Avro",
    "ConfluentFraming",
    "Csv",
    "Decoded",
    "Encoded",
    "Format",
    "Json",
    "Raw",
    "SchemaNotFound",
    "SchemaRegistryClient",
    "avro_to_arrow",
    "decode_with_policy",
    "encode_with_policy",
    "for_name",
]

#: The names :func:`for_name` accepts.
FORMATS: dict[str, type[Format]] = {
    "json": Json,
    "raw": Raw,
    "csv": Csv,
    "avro": Avro,
    "arrow-ipc": ArrowIpc,
}


def for_name(name: str, **options: Any) -> Format:
    """Build the format called ``name`` (``json``, ``raw``, ``csv``, ``avro``, ``arrow-ipc``).

    ``options`` are the format's constructor arguments. Where a format takes a ``schema`` as a
    pyarrow schema, a mapping ``{column: type name}`` (``"int64"``, ``"string"``, ``"timestamp[us]"``
    ...) is accepted too, so YAML can spell it. Unknown names and options raise
    :class:`ConfigurationError`.
    """
    key = name.lower().replace("_", "-") if isinstance(name, str) else name
    if key == "arrow":
        key = "arrow-ipc"
    if key not in FORMATS:
        raise ConfigurationError(
            f"format={name!r} is not allowed; choose one of {', '.join(sorted(FORMATS))}", option="format"
        )
    cls = FORMATS[key]
    if cls is Raw and isinstance(options.get("type"), str):
        options["type"] = _type_from_name(options["type"], "type")
    if cls is not Avro and isinstance(options.get("schema"), dict):
        options["schema"] = _schema_from_mapping(options["schema"])
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigurationError(f"format {key!r}: {exc}", option="format") from exc


def _type_from_name(text: str, option: str) -> Any:
    import pyarrow as pa

    try:
        return pa.type_for_alias(text)
    except (ValueError, KeyError):
        pass
    if text.startswith("timestamp[") and text.endswith("]"):
        inner = text[len("timestamp[") : -1].split(",")
        unit = inner[0].strip()
        tz = inner[1].split("=")[-1].strip() if len(inner) > 1 else None
        return pa.timestamp(unit, tz=tz)
    raise ConfigurationError(f"{option}: unknown type {text!r}", option=option)


def _schema_from_mapping(mapping: dict[str, Any]) -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(str(n), _type_from_name(t, f"schema.{n}") if isinstance(t, str) else t)
            for n, t in mapping.items()
        ]
    )
