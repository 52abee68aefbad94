"""The ``_bulk`` sink shared by Elasticsearch and OpenSearch, on :class:`~arrowflow.writer.AsyncBatchWriter`.

Entries are the per-row ``_bulk`` lines (action line + source line) from the compiled kernel
(:mod:`arrowflow._ext.bulk`) as one ``pa.BinaryArray`` per batch, so a request body is a zero-copy
run of the entries' data buffer. The writer cuts requests by ``max_actions`` and ``max_bytes``,
sends up to ``max_in_flight`` at once and retries; this module only builds entries and reads the
per-item answers:

* an item with status 429, 5xx or ``es_rejected_execution_exception`` is retried (only that item),
  with backoff (``backoff="exponential"`` or ``"constant"``, full jitter) up to ``max_retries``;
* a ``version_conflict_engine_exception`` on ``create`` is ignored (``on_conflict="ignore"``: the
  document already exists, which is what a replay after a crash produces) or an error;
* a ``delete`` of a missing document (404 ``not_found``) counts as done;
* anything else (mapping / parse errors, strict-mapping rejections, ...) goes to the error policy
  with the server's error text (``"<status> <type>: <reason> (caused by ...)"``);
* a failure of the whole request (connection refused, timeout, 429, 5xx) is retried whole.

Guarantee: at-least-once (``flush()`` returns when every written row is acknowledged or given to the
error policy). With ``_id`` from the data (``id_column``) and ``index``/``update``/``delete`` (or
``create`` with ``on_conflict="ignore"``) a replay overwrites the same documents, so the sink is
idempotent (``sink.idempotent``) and a pipeline run is exactly-once in effect.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import check_choice, check_positive, check_type, hide_secrets, reveal_secrets
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError, ConnectorError, SerializationError
from ...writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult
from ._client import RETRYABLE_STATUS, Flavor, is_retryable_exception

__all__ = ["SearchSink", "SearchSinkConfig", "item_outcomes"]

_ACTIONS = ("index", "create", "update", "delete")


@dataclass(frozen=True, kw_only=True)
class SearchSinkConfig:
    """Options of a search sink (Elasticsearch / OpenSearch).

    Target: ``index`` (fixed name), or ``index_column`` (per row), or ``index_template`` (a
    ``strftime`` pattern such as ``"logs-%Y.%m.%d"``) over the timestamp column ``index_time_column``.
    ``action``: ``index`` | ``create`` | ``update`` | ``delete``; ``id_column`` and ``routing_column``
    give ``_id`` / ``routing`` (required ``_id`` for ``update`` and ``delete``; rows with a null id or
    index go to the error policy). ``doc_as_upsert`` for ``update``. ``document_columns`` selects
    the document's columns (default: all but the meta columns); ``nulls``/``nan`` as in the JSON
    format. Requests: ``max_actions``, ``max_bytes``, ``flush_interval`` (seconds; ``None`` =
    only full requests and flush), ``max_in_flight``, ``max_buffered_rows``. Retries: ``max_retries``,
    ``backoff``, ``initial_backoff``, ``max_backoff``. ``on_conflict`` for ``create``.
    ``refresh`` is passed to ``_bulk`` (``"true"``, ``"wait_for"``, ``"false"``, or ``None``).
    """

    index: str | None = None
    index_column: str | None = None
    index_template: str | None = None
    index_time_column: str | None = None
    action: str = "index"
    id_column: str | None = None
    routing_column: str | None = None
    doc_as_upsert: bool = False
    document_columns: tuple[str, ...] | None = None
    nulls: str = "null"
    nan: str = "error"
    on_conflict: str = "error"
    max_actions: int = 1000
    max_bytes: int = 5 * 1024 * 1024
    flush_interval: float | None = 1.0
    max_in_flight: int = 2
    max_buffered_rows: int | None = None
    max_retries: int = 8
    backoff: str = "exponential"
    initial_backoff: float = 0.05
    max_backoff: float = 5.0
    refresh: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("action", self.action, _ACTIONS)
        check_choice("nulls", self.nulls, ("null", "omit"))
        check_choice("nan", self.nan, ("error", "null"))
        check_choice("on_conflict", self.on_conflict, ("error", "ignore"))
        check_choice("backoff", self.backoff, ("exponential", "constant"))
        for name in (
            "index",
            "index_column",
            "index_template",
            "index_time_column",
            "id_column",
            "routing_column",
        ):
            check_type(name, getattr(self, name), str, allow_none=True)
        targets = [n for n in ("index", "index_column", "index_template") if getattr(self, n) is not None]
        if len(targets) != 1:
            raise ConfigurationError(
                "give exactly one of index, index_column, index_template", option="index"
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
        for name in ("max_actions", "max_bytes", "max_in_flight"):
            check_type(name, getattr(self, name), int)
            check_positive(name, getattr(self, name))
        check_type("max_buffered_rows", self.max_buffered_rows, int, allow_none=True)
        check_positive("max_buffered_rows", self.max_buffered_rows, allow_none=True)
        check_type("max_retries", self.max_retries, int)
        if self.max_retries < 0:
            raise ConfigurationError(
                f"max_retries must be >= 0, got {self.max_retries}", option="max_retries"
            )
        check_positive("flush_interval", self.flush_interval, allow_none=True)
        check_positive("initial_backoff", self.initial_backoff)
        check_positive("max_backoff", self.max_backoff)
        check_choice("refresh", self.refresh, (None, "true", "false", "wait_for"))

    @property
    def idempotent(self) -> bool:
        """True when replaying rows leaves the index as if written once (ids come from the data)."""
        if self.id_column is None:
            return False
        return self.action != "create" or self.on_conflict == "ignore"

    def batching(self) -> BatchingConfig:
        constant = self.backoff == "constant"
        return BatchingConfig(
            max_request_rows=self.max_actions,
            max_request_bytes=self.max_bytes,
            max_in_flight=self.max_in_flight,
            max_buffered_rows=self.max_buffered_rows or max(10_000, 4 * self.max_actions),
            max_time_in_buffer=self.flush_interval,
            initial_backoff=self.initial_backoff,
            max_backoff=self.initial_backoff if constant else max(self.max_backoff, self.initial_backoff),
            backoff_multiplier=1.0 if constant else 2.0,
            max_attempts=self.max_retries + 1,
        )


def _error_text(status: int, error: Any) -> str:
    if isinstance(error, Mapping):
        text = f"{status} {error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, Mapping):
            text += f" (caused by {cause.get('type', '')}: {cause.get('reason', '')})"
        return text
    return f"{status} {error}"


def item_outcomes(answer: Mapping[str, Any], n: int, *, ignore_conflicts: bool) -> SubmitResult:
    """Read a ``_bulk`` answer for ``n`` items into a :class:`SubmitResult` (see the module docstring).

    The answer's ``errors`` flag is checked first, so a fully successful request costs no per-item
    work. Raises :class:`ConnectorError` (not retryable) when the answer does not hold ``n`` items.
    """
    if not answer.get("errors"):
        items = answer.get("items")
        if items is not None and len(items) != n:
            raise ConnectorError(f"_bulk answered {len(items)} items for {n} actions")
        return SubmitResult.ok()
    items = answer.get("items") or []
    if len(items) != n:
        raise ConnectorError(f"_bulk answered {len(items)} items for {n} actions")
    failed: list[int] = []
    errors: list[str] = []
    retryable: list[bool] = []
    for i, item in enumerate(items):
        ((op, result),) = item.items()
        status = int(result.get("status", 0))
        error = result.get("error")
        if error is None and status < 300:
            continue
        etype = error.get("type", "") if isinstance(error, Mapping) else ""
        if op == "delete" and status == 404 and error is None:
            continue  # deleting what is not there: the desired end state
        if (
            ignore_conflicts
            and op == "create"
            and (status == 409 or etype == "version_conflict_engine_exception")
        ):
            continue
        failed.append(i)
        errors.append(_error_text(status, error))
        retryable.append(status in RETRYABLE_STATUS or etype == "es_rejected_execution_exception")
    if not failed:
        return SubmitResult.ok()
    return SubmitResult(
        failed=np.asarray(failed, dtype=np.int64), errors=errors, retryable=np.asarray(retryable, dtype=bool)
    )


class SearchSink(AsyncBatchWriter):
    """Writes batches through ``_bulk`` (see the module docstring for delivery and failures).

    ``flavor`` picks the client library; ``client`` is an existing client (not closed by the sink),
    else one is made from ``hosts`` and ``client_options`` (passed through: ``basic_auth``,
    ``api_key``, ``http_auth``, ``ca_certs``, ``verify_certs``, ``node_class``, ``request_timeout``,
    ...; secret-named string options are hidden in ``repr``).
    """

    name = "search"

    def __init__(
        self,
        flavor: Flavor,
        config: SearchSinkConfig,
        *,
        hosts: Any = None,
        client: Any = None,
        client_options: Mapping[str, Any] | None = None,
        error_policy: ErrorPolicyLike = "fail",
        name: str | None = None,
    ) -> None:
        check_type("config", config, SearchSinkConfig)
        if (hosts is None) == (client is None):
            raise ConfigurationError("give either hosts or client", option="hosts")
        super().__init__(config.batching(), error_policy=error_policy, name=name or flavor.name)
        self.flavor = flavor
        self.search_config = config
        self.idempotent = config.idempotent
        self.client_options = hide_secrets(dict(client_options or {}))
        self._hosts = hosts
        self._owns_client = client is None
        self._client = client
        self._client_lock = threading.Lock()
        params: dict[str, Any] = dict(config.params)
        if config.refresh is not None:
            params["refresh"] = config.refresh
        self._params = params

    @property
    def client(self) -> Any:
        """The client (created on first use; thread-safe)."""
        with self._client_lock:
            if self._client is None:
                self._client = self.flavor.make_client(self._hosts, reveal_secrets(self.client_options))
            return self._client

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hosts={self._hosts!r}, config={self.search_config!r})"

    # -- AsyncBatchWriter hooks --------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> pa.BinaryArray | Encoded:
        from ..._ext.bulk import encode_bulk

        cfg = self.search_config
        names = batch.schema.names
        for option in ("index_column", "index_time_column", "id_column", "routing_column"):
            column = getattr(cfg, option)
            if column is not None and column not in names:
                raise ConfigurationError(
                    f"{option}={column!r} is not a column of the batch {names}", option=option
                )
        index_values: pa.Array | None = None
        if cfg.index_column is not None:
            index_values = batch.column(cfg.index_column)
        elif cfg.index_template is not None:
            assert cfg.index_time_column is not None
            index_values = pc.strftime(batch.column(cfg.index_time_column), format=cfg.index_template)
        bad = None
        reasons: list[str] = []
        if index_values is not None and index_values.null_count:
            bad = index_values.is_null()
            reasons.append("null index value")
        if cfg.action in ("update", "delete") and batch.column(cfg.id_column).null_count:
            null_id = batch.column(cfg.id_column).is_null()
            bad = null_id if bad is None else pc.or_(bad, null_id)
            reasons.append(f"null _id (required by {cfg.action})")
        failed = np.empty(0, dtype=np.int64)
        if bad is not None:
            mask = bad.to_numpy(zero_copy_only=False)
            failed = np.flatnonzero(mask)
            keep = pa.array(~mask)
            batch = batch.filter(keep)
            if index_values is not None:
                index_values = index_values.filter(keep)
        try:
            # One kernel call: documents slice by slice, then their entries into one output.
            entries = encode_bulk(
                batch,
                action=cfg.action,
                index=cfg.index,
                index_values=None if cfg.index_column is not None else index_values,
                index_column=cfg.index_column,
                id_column=cfg.id_column,
                routing_column=cfg.routing_column,
                doc_as_upsert=cfg.doc_as_upsert,
                columns=list(cfg.document_columns) if cfg.document_columns is not None else None,
                nulls=cfg.nulls,
                nan=cfg.nan,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise SerializationError(f"{self.name}: cannot encode documents: {exc}") from exc
        if len(failed):
            return Encoded(entries=entries, failed=failed, errors=" or ".join(reasons))
        return entries

    def submit(self, entries: pa.BinaryArray) -> SubmitResult | None:
        n = len(entries)
        if isinstance(entries, pa.ChunkedArray):
            entries = entries.combine_chunks()
        offsets = np.frombuffer(entries.buffers()[1], dtype=np.int32, count=entries.offset + n + 1)
        start, stop = int(offsets[entries.offset]), int(offsets[entries.offset + n])
        body = entries.buffers()[2].slice(start, stop - start).to_pybytes()
        answer = self.flavor.request(
            self.client, "POST", "/_bulk", params=self._params, body=body, ndjson=True
        )
        return item_outcomes(answer, n, ignore_conflicts=self.search_config.on_conflict == "ignore")

    def classify(self, exc: BaseException) -> bool:
        return is_retryable_exception(exc)

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            if self._owns_client and self._client is not None:
                self._client.close()


def sink_config(
    index: str | None = None,
    *,
    config: SearchSinkConfig | None = None,
    **options: Any,
) -> SearchSinkConfig:
    """A :class:`SearchSinkConfig` from keyword options (or ``config`` itself when given)."""
    if config is not None:
        if index is not None or options:
            raise ConfigurationError("give either config or individual options", option="config")
        return config
    if isinstance(options.get("document_columns"), Sequence) and options.get("document_columns") is not None:
        options["document_columns"] = tuple(options["document_columns"])
    return SearchSinkConfig(index=index, **options)
