"""The options of the search sink and source (Elasticsearch and OpenSearch), checked in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ...config import check_choice, check_exactly_one, check_name, check_positive, check_type
from ...errors import ConfigurationError
from ...writer import BatchingConfig, legacy_batching

__all__ = ["SEARCH_BATCHING", "SearchSinkConfig", "SearchSourceConfig"]

ACTIONS = ("index", "create", "update", "delete")

#: The sink's batching unless configured: 10,000 actions or 5 MiB a ``_bulk`` request (Elastic's
#: sizing advice starts at a few MB a request; 0.1.0's 1000 actions made a single node spend its time
#: on per-request work: 4x fewer documents/s in the peers benchmark's workload 4), two in flight,
#: 20,000 rows buffered, 1 s in the buffer, up to 9 attempts with 0.05 s -> 5 s backoff.
SEARCH_BATCHING = BatchingConfig(
    max_request_rows=10_000,
    max_in_flight=2,
    max_buffered_rows=20_000,
    max_time_in_buffer=1.0,
    max_attempts=9,
)


@legacy_batching(
    "max_actions",
    "max_bytes",
    "flush_interval",
    "max_in_flight",
    "max_buffered_rows",
    "max_retries",
    "backoff",
    "initial_backoff",
    "max_backoff",
)
@dataclass(frozen=True, kw_only=True)
class SearchSinkConfig:
    """Options of a search sink (:class:`~arrowflow.connectors.search.elasticsearch.ElasticsearchSink`,
    :class:`~arrowflow.connectors.search.opensearch.OpenSearchSink`).

    0.1.0's request and retry options (``max_actions``, ``max_bytes``, ``flush_interval``,
    ``max_in_flight``, ``max_buffered_rows``, ``max_retries``, ``backoff``, ``initial_backoff``,
    ``max_backoff``) still work, with a ``DeprecationWarning``: they are folded into ``batching``.
    """

    index: str | None = None
    """The index every document goes to; excludes ``index_column`` and ``index_template``."""
    index_column: str | None = None
    """A column naming each row's index (a null one sends the row to the error policy)."""
    index_template: str | None = None
    """A ``strftime`` pattern (``"logs-%Y.%m.%d"``) over ``index_time_column``."""
    index_time_column: str | None = None
    """The timestamp column ``index_template`` formats."""
    action: str = "index"
    """``index``, ``create``, ``update`` or ``delete``."""
    id_column: str | None = None
    """A column of ``_id`` values (required for ``update`` and ``delete``; a null one sends the row to
    the error policy there). With ids the sink is idempotent."""
    routing_column: str | None = None
    """A column of ``routing`` values."""
    doc_as_upsert: bool = False
    """With ``update``: insert the document when it does not exist."""
    document_columns: Sequence[str] | None = None
    """The columns of the document (default: every column but the index, id and routing columns)."""
    nulls: str = "null"
    """``"null"`` writes null fields, ``"omit"`` leaves them out."""
    nan: str = "error"
    """A NaN float: ``"error"`` (the row goes to the error policy) or ``"null"``."""
    on_conflict: str = "error"
    """With ``create``: ``"ignore"`` counts a document that exists already as written (what a replay
    produces), ``"error"`` sends the row to the error policy."""
    refresh: str | None = None
    """``_bulk``'s ``refresh``: ``"true"``, ``"wait_for"``, ``"false"`` or ``None``."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """More ``_bulk`` query parameters (``pipeline``, ``timeout``, ...)."""
    batching: BatchingConfig = SEARCH_BATCHING
    """Requests (``max_request_rows`` actions, ``max_request_bytes``), buffering and retries
    (:class:`~arrowflow.writer.BatchingConfig`). An item answered with 429, 5xx or
    ``es_rejected_execution_exception`` is retried alone; a whole request that failed so is retried."""

    def __post_init__(self) -> None:
        check_choice("action", self.action, ACTIONS)
        check_choice("nulls", self.nulls, ("null", "omit"))
        check_choice("nan", self.nan, ("error", "null"))
        check_choice("on_conflict", self.on_conflict, ("error", "ignore"))
        for name in (
            "index",
            "index_column",
            "index_template",
            "index_time_column",
            "id_column",
            "routing_column",
        ):
            check_type(name, getattr(self, name), str, allow_none=True)
        check_exactly_one(
            index=self.index, index_column=self.index_column, index_template=self.index_template
        )
        if (self.index_template is None) != (self.index_time_column is None):
            raise ConfigurationError(
                "index_template and index_time_column go together", option="index_time_column"
            )
        if self.action in ("update", "delete") and self.id_column is None:
            raise ConfigurationError(f"action {self.action!r} needs id_column", option="id_column")
        if self.doc_as_upsert and self.action != "update":
            raise ConfigurationError("doc_as_upsert applies to action='update' only", option="doc_as_upsert")
        if self.document_columns is not None:
            check_type("document_columns", self.document_columns, (tuple, list))
            object.__setattr__(self, "document_columns", tuple(self.document_columns))
        check_choice("refresh", self.refresh, (None, "true", "false", "wait_for"))
        check_type("params", self.params, Mapping)
        # A plain dict: the sink's default is a read-only mappingproxy, which does not pickle (the
        # configuration ships to Ray workers).
        object.__setattr__(self, "params", dict(self.params))
        check_type("batching", self.batching, BatchingConfig)

    @property
    def idempotent(self) -> bool:
        """True when replaying rows leaves the index as if written once (ids come from the data)."""
        if self.id_column is None:
            return False
        return self.action != "create" or self.on_conflict == "ignore"


@dataclass(frozen=True, kw_only=True)
class SearchSourceConfig:
    """Options of a search source (:class:`~arrowflow.connectors.search.elasticsearch.ElasticsearchSource`,
    :class:`~arrowflow.connectors.search.opensearch.OpenSearchSource`)."""

    index: str
    """The index (or alias, or pattern) to read."""
    query: Mapping[str, Any] | None = None
    """A query DSL ``query`` (default: every document)."""
    schema: pa.Schema | None = None
    """The columns and their types (values are converted; missing fields become nulls); default:
    inferred from the first page."""
    columns: Sequence[str] | None = None
    """Project ``_source`` to these fields."""
    id_column: str | None = None
    """Add each hit's ``_id`` as this column."""
    sort: Sequence[Any] = ({"_id": "asc"},)
    """A total order for ``search_after`` (a unique field last). Elasticsearch 8+ refuses ``_id``
    unless ``indices.id_field_data.enabled``: name a unique field of the documents there."""
    page_size: int = 1000
    """Hits per request."""
    slices: int = 1
    """Splits; more than one reads the slices of a point in time in parallel."""
    keep_alive: str = "5m"
    """How long a point in time lives between requests."""

    def __post_init__(self) -> None:
        check_name("index", self.index)
        check_type("query", self.query, Mapping, allow_none=True)
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        check_type("id_column", self.id_column, str, allow_none=True)
        if self.columns is not None:
            check_type("columns", self.columns, (tuple, list))
            object.__setattr__(self, "columns", tuple(self.columns))
        check_type("sort", self.sort, (tuple, list))
        if not self.sort:
            raise ConfigurationError("sort must name at least one field (a total order)", option="sort")
        object.__setattr__(self, "sort", tuple(self.sort))
        for name in ("page_size", "slices"):
            check_type(name, getattr(self, name), int)
            check_positive(name, getattr(self, name))
        check_type("keep_alive", self.keep_alive, str)
