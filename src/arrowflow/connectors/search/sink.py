"""The ``_bulk`` sink shared by Elasticsearch and OpenSearch, on :class:`~arrowflow.writer.AsyncBatchWriter`.

Entries are the per-row ``_bulk`` lines (action line + source line) from the compiled kernel
(:mod:`arrowflow._ext.bulk`) as one ``pa.BinaryArray`` per batch, so a request body is a zero-copy
run of the entries' data buffer. The writer cuts requests by ``max_actions`` and ``max_bytes``,
sends up to ``max_in_flight`` at once and retries (``batching``); this module only builds entries and
reads the per-item answers:

* an item with status 429, 5xx or ``es_rejected_execution_exception`` is retried (only that item),
  with backoff (full jitter) up to ``batching.max_attempts``;
* a ``version_conflict_engine_exception`` on ``create`` is ignored (``on_conflict="ignore"``: the
  document already exists, which is what a replay after a crash produces) or an error;
* a ``delete`` of a missing document (404 ``not_found``) counts as done;
* anything else (mapping / parse errors, strict-mapping rejections, ...) goes to the error policy
  with the server's error text (``"<status> <type>: <reason> (caused by ...)"``);
* a failure of the whole request (connection refused, timeout, 429, 5xx) is retried whole.

The writer owns the retries: the client the sink makes gets ``max_retries=0`` unless
``client_options`` set it (the client libraries retry a lost connection up to 3 times by themselves,
with no backoff, and such a resend showed in no metric). A request that failed on its connection (a
reset, a refused connect, no answer within the client's ``timeout`` / ``request_timeout``) drops that
connection, and the retry opens a new one: :meth:`SearchSink.metrics` counts them as ``reconnects``,
and those that timed out also as ``timeouts`` (a silent server is noticed by the timeout, it does not
hang the pipeline).

Guarantee: at-least-once (``flush()`` returns when every written row is acknowledged or given to the
error policy). With ``_id`` from the data (``id_column``) and ``index``/``update``/``delete`` (or
``create`` with ``on_conflict="ignore"``) a replay overwrites the same documents, so the sink is
idempotent (``sink.idempotent``) and a pipeline run is exactly-once in effect.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import ConfigAttributes, hide_secrets, resolve_config, reveal_secrets
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError, ConnectorError, SerializationError
from ...writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult
from ._client import RETRYABLE_STATUS, Flavor, is_retryable_exception
from .config import SEARCH_BATCHING, SearchSinkConfig

__all__ = ["SearchSink", "SearchSinkConfig", "item_outcomes"]

#: ``params``' default: no extra ``_bulk`` parameters (read-only, so one object serves every sink).
_NO_PARAMS: Mapping[str, Any] = MappingProxyType({})


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


class SearchSink(ConfigAttributes, AsyncBatchWriter):
    """Writes batches through ``_bulk`` (see the module docstring for delivery and failures).

    ``hosts`` (or ``client``, an existing client not closed by the sink) and ``client_options``
    (passed to the client: ``basic_auth``, ``api_key``, ``http_auth``, ``ca_certs``,
    ``verify_certs``, ``node_class``, ``request_timeout``, ...; secret-named string options are
    hidden in ``repr``) say where to write; the other options are :class:`SearchSinkConfig`'s.
    :class:`~arrowflow.connectors.search.elasticsearch.ElasticsearchSink` and
    :class:`~arrowflow.connectors.search.opensearch.OpenSearchSink` set the client library
    (``flavor``); this base takes it as ``flavor=``.
    """

    name = "search"
    #: The client library (set by the Elasticsearch and OpenSearch classes).
    flavor: Flavor

    def __init__(
        self,
        hosts: Any = None,
        index: str | None = None,
        *,
        index_column: str | None = None,
        index_template: str | None = None,
        index_time_column: str | None = None,
        action: str = "index",
        id_column: str | None = None,
        routing_column: str | None = None,
        doc_as_upsert: bool = False,
        document_columns: Sequence[str] | None = None,
        nulls: str = "null",
        nan: str = "error",
        on_conflict: str = "error",
        refresh: str | None = None,
        params: Mapping[str, Any] = _NO_PARAMS,
        batching: BatchingConfig = SEARCH_BATCHING,
        client: Any = None,
        client_options: Mapping[str, Any] | None = None,
        error_policy: ErrorPolicyLike = "fail",
        name: str | None = None,
        flavor: Flavor | None = None,
        config: SearchSinkConfig | None = None,
        **deprecated: Any,
    ) -> None:
        if isinstance(hosts, Flavor):  # 0.1.0: SearchSink(flavor, config, hosts=..., ...)
            flavor, config, hosts = hosts, index, deprecated.pop("hosts", None)  # type: ignore[assignment]
            index = None
        config = resolve_config(SearchSinkConfig, config, locals(), **deprecated)
        flavor = flavor or getattr(type(self), "flavor", None)
        if not isinstance(flavor, Flavor):
            raise ConfigurationError("give flavor= (ELASTICSEARCH or OPENSEARCH)", option="flavor")
        if (hosts is None) == (client is None):
            raise ConfigurationError("give either hosts or client", option="hosts")
        super().__init__(config.batching, error_policy=error_policy, name=name or flavor.name)
        self.flavor = flavor
        self.config = config
        self.idempotent = config.idempotent
        self.client_options = hide_secrets(dict(client_options or {}))
        self._hosts = hosts
        self._owns_client = client is None
        self._client = client
        self._client_lock = threading.Lock()
        self._drops = {"reconnects": 0, "timeouts": 0}
        params = dict(config.params)
        if config.refresh is not None:
            params["refresh"] = config.refresh
        self._params = params

    @property
    def search_config(self) -> SearchSinkConfig:
        """0.1.0's name of :attr:`config`."""
        return self.config  # type: ignore[no-any-return]

    @property
    def client(self) -> Any:
        """The client (created on first use; thread-safe)."""
        with self._client_lock:
            if self._client is None:
                options = reveal_secrets(self.client_options)
                options.setdefault("max_retries", 0)  # the writer retries (see the module docstring)
                self._client = self.flavor.make_client(self._hosts, options)
            return self._client

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hosts={self._hosts!r}, config={self.config!r})"

    # -- AsyncBatchWriter hooks --------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> pa.BinaryArray | Encoded:
        from ..._ext.bulk import encode_bulk

        cfg = self.config
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
        try:
            answer = self.flavor.request(
                self.client, "POST", "/_bulk", params=self._params, body=body, ndjson=True
            )
        except Exception as exc:
            self._dropped(exc)
            raise
        return item_outcomes(answer, n, ignore_conflicts=self.config.on_conflict == "ignore")

    def _dropped(self, exc: BaseException) -> None:
        """Count a request that failed on its connection (see the module docstring)."""
        names = {cls.__name__ for cls in type(exc).__mro__}
        if not (isinstance(exc, OSError) or names & {"ConnectionError", "ConnectionTimeout"}):
            return  # an answer (an HTTP error status): the connection is fine
        with self._client_lock:
            self._drops["reconnects"] += 1
            if isinstance(exc, TimeoutError) or "ConnectionTimeout" in names:
                self._drops["timeouts"] += 1

    def classify(self, exc: BaseException) -> bool:
        return is_retryable_exception(exc)

    def metrics(self) -> dict[str, int]:
        """:meth:`AsyncBatchWriter.metrics` plus ``reconnects`` (requests that failed on their
        connection: reset, refused or timed out; the retry opens a new one) and ``timeouts`` (those
        that got no answer within the client's timeout)."""
        out = super().metrics()
        with self._client_lock:
            out.update(self._drops)
        return out

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            if self._owns_client and self._client is not None:
                self._client.close()
