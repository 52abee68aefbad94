"""The options of :class:`~.sink.MongoSink`, :class:`~.source.MongoSource` and
:class:`~.change_stream.MongoChangeStreamSource`, checked in one place (the connection options they
share are :class:`MongoConnectionOptions`), and the sink's default batching (:data:`MONGODB_BATCHING`,
:data:`MONGODB_KEYED_BATCHING`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ...config import Secret, check_choice, check_positive, check_type, hide_secrets, post_init_bases
from ...errors import ConfigurationError
from ...writer import BatchingConfig, legacy_batching
from ._client import MAX_DOCUMENT_BYTES

__all__ = [
    "MONGODB_BATCHING",
    "MONGODB_KEYED_BATCHING",
    "MongoChangeStreamSourceConfig",
    "MongoConnectionOptions",
    "MongoSinkConfig",
    "MongoSourceConfig",
]


def _names(option: str, value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """A column name or a sequence of them as a tuple (``None`` stays)."""
    if value is None:
        return None
    out = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(v, str) and v for v in out):
        raise ConfigurationError(f"{option} must be column names, got {value!r}", option=option)
    return out


@dataclass(frozen=True, kw_only=True)
class MongoConnectionOptions:
    """Where every MongoDB connector connects: ``uri`` (kept as a :class:`~arrowflow.config.Secret`),
    ``database`` and pymongo ``client_options`` (secret-named entries hidden in reprs)."""

    uri: Secret | str
    """``mongodb://...`` (credentials allowed: never shown in reprs)."""
    database: str
    """The database."""
    client_options: Mapping[str, Any] = field(default_factory=dict)
    """Passed to ``pymongo.MongoClient``."""

    def __post_init__(self) -> None:
        post_init_bases(super())
        check_type("uri", self.uri, (str, Secret))
        if isinstance(self.uri, str):
            object.__setattr__(self, "uri", Secret(self.uri))
        check_type("database", self.database, str)
        if not self.database:
            raise ConfigurationError("database must not be empty", option="database")
        if self.client_options is None:  # the constructors' default
            object.__setattr__(self, "client_options", {})
        check_type("client_options", self.client_options, Mapping)
        # Secret-looking entries (password, tlsCertificateKeyFilePassword, ...) never show in repr.
        object.__setattr__(self, "client_options", hide_secrets(self.client_options))


#: :class:`~.sink.MongoSink`'s batching in ``mode="insert"`` unless configured (0.1.0's defaults):
#: requests of 1000 documents and at most 48 MiB, documents up to 16 MiB (the server's limit), four
#: requests in flight, 10,000 rows buffered, 1 s in the buffer; retries as :class:`BatchingConfig`'s.
MONGODB_BATCHING = BatchingConfig(
    max_request_rows=1000,
    max_request_bytes=48 * 1024 * 1024,
    max_record_bytes=MAX_DOCUMENT_BYTES,
    max_buffered_rows=10_000,
    max_time_in_buffer=1.0,
)
#: The keyed modes' (``"replace"``, ``"update"``) default: :data:`MONGODB_BATCHING` with one request
#: in flight, so that the upserts of one key apply in write order.
MONGODB_KEYED_BATCHING = dataclasses.replace(MONGODB_BATCHING, max_in_flight=1)


def _mode_batching(options: Mapping[str, Any]) -> BatchingConfig:
    """The default batching for the sink options given (0.1.0's rule): one request in flight in the
    keyed modes, and room for four requests of 0.1.0's ``batch_size`` in the buffer."""
    base = MONGODB_BATCHING if options.get("mode", "insert") == "insert" else MONGODB_KEYED_BATCHING
    rows = options.get("batch_size", base.max_request_rows)
    if 4 * rows <= base.max_buffered_rows:
        return base  # the constant itself: a copy of the config with another mode follows that mode
    return dataclasses.replace(base, max_buffered_rows=4 * rows)


@legacy_batching("batch_size", "batch_interval", "max_in_flight", default=_mode_batching)
@dataclass(frozen=True, kw_only=True)
class MongoSinkConfig(MongoConnectionOptions):
    """Options of :class:`MongoSink` (see the module docstring).

    ``batching``: requests, threads and retries; by default :data:`MONGODB_BATCHING` in
    ``mode="insert"`` and :data:`MONGODB_KEYED_BATCHING` (one request in flight) in the keyed modes
    (``batching=None`` or either constant stands for the mode's default). A ``batching`` given
    otherwise is used as is: more than one request in flight in a keyed mode may apply two upserts
    of one key out of order. 0.1.0's ``batch_size``, ``batch_interval`` and ``max_in_flight`` still
    work, with a ``DeprecationWarning``: they are folded into ``batching``
    (``max_request_rows``, ``max_time_in_buffer``, ``max_in_flight``) on top of the mode's default.
    """

    collection: str
    mode: str = "insert"
    keys: tuple[str, ...] = ("_id",)
    ordered: bool = False
    ignore_duplicates: bool = False
    nulls: str = "null"
    object_id: tuple[str, ...] | None = None
    bypass_document_validation: bool = False
    batching: BatchingConfig = MONGODB_BATCHING

    def __post_init__(self) -> None:
        super().__post_init__()
        check_type("collection", self.collection, str)
        if not self.collection:
            raise ConfigurationError("collection must not be empty", option="collection")
        check_choice("mode", self.mode, ("insert", "replace", "update"))
        if any(self.batching is d for d in (None, MONGODB_BATCHING, MONGODB_KEYED_BATCHING)):
            object.__setattr__(self, "batching", _mode_batching({"mode": self.mode}))
        check_type("batching", self.batching, BatchingConfig)
        check_choice("nulls", self.nulls, ("null", "omit"))
        if isinstance(self.keys, str):
            object.__setattr__(self, "keys", (self.keys,))
        elif isinstance(self.keys, Sequence):
            object.__setattr__(self, "keys", tuple(self.keys))
        check_type("keys", self.keys, tuple)
        if not self.keys or not all(isinstance(k, str) and k for k in self.keys):
            raise ConfigurationError("keys must be a non-empty sequence of column names", option="keys")
        object.__setattr__(self, "object_id", _names("object_id", self.object_id))
        check_type("ordered", self.ordered, bool)
        check_type("ignore_duplicates", self.ignore_duplicates, bool)


@dataclass(frozen=True, kw_only=True)
class MongoSourceConfig(MongoConnectionOptions):
    """Options of :class:`~.source.MongoSource` (see :mod:`.source`)."""

    collection: str
    """The collection read."""
    filter: Mapping[str, Any] | None = None
    """A query filter (``find``)."""
    projection: Mapping[str, Any] | None = None
    """A projection (must keep ``_id``: positions are ``_id`` values)."""
    schema: pa.Schema | None = None
    """The schema of the documents (inferred per batch when ``None``)."""
    num_splits: int = 1
    """``_id`` ranges read in parallel (cut at quantiles of a ``$sample``)."""
    samples_per_split: int = 10
    """``$sample`` size per split when ``num_splits > 1``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_type("collection", self.collection, str)
        check_type("filter", self.filter, Mapping, allow_none=True)
        object.__setattr__(self, "filter", dict(self.filter or {}))
        check_type("projection", self.projection, Mapping, allow_none=True)
        if self.projection is not None:
            object.__setattr__(self, "projection", dict(self.projection))
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        check_type("num_splits", self.num_splits, int)
        check_positive("num_splits", self.num_splits)
        check_type("samples_per_split", self.samples_per_split, int)
        check_positive("samples_per_split", self.samples_per_split)


@dataclass(frozen=True, kw_only=True)
class MongoChangeStreamSourceConfig(MongoConnectionOptions):
    """Options of :class:`~.change_stream.MongoChangeStreamSource` (see :mod:`.change_stream`)."""

    collection: str | None = None
    """The collection watched (``None``: the whole database)."""
    schema: pa.Schema | None = None
    """The schema of ``fullDocument`` (inferred per batch when ``None``)."""
    pipeline: Sequence[Mapping[str, Any]] | None = None
    """Aggregation stages applied to the change stream."""
    full_document: str | None = "updateLookup"
    """``fullDocument`` of the ``watch`` (``None``: the server's default)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_type("collection", self.collection, str, allow_none=True)
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        object.__setattr__(self, "pipeline", [dict(p) for p in self.pipeline or []])
        check_type("full_document", self.full_document, str, allow_none=True)
