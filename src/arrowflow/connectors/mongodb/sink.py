"""MongoDB sink: :class:`MongoSink`.

**MongoSink** (:class:`~arrowflow.writer.AsyncBatchWriter`): each batch is encoded by
``arrowflow._ext.bson_encode`` into one BSON document per row (GIL released, no Python object per row); rows
holding a value BSON cannot represent (uint64 over 2**63 - 1, an inexact decimal, ...) go to the error
policy. Requests are sent as:

* ``mode="insert"``: ``insert_many`` of ``RawBSONDocument`` s (the only per-row Python objects, at the
  client boundary). ``ignore_duplicates=True`` treats a duplicate-key error (code 11000) as success,
  so re-inserting rows with an ``_id`` column after a restart is harmless (exactly-once in effect).
* ``mode="replace"``: ``bulk_write`` of ``ReplaceOne(filter, doc, upsert=True)``; ``mode="update"``:
  ``UpdateOne(filter, {"$set": doc}, upsert=True)``. The filter is the row's ``keys`` columns (default
  ``("_id",)``), encoded by the same kernel. Both are idempotent (``idempotent`` is true).

``ordered=True`` stops a request at its first failing document; the documents after it are re-sent
(retryable). Per-document write errors (``BulkWriteError.details["writeErrors"]``) are mapped back to
rows by their index: transient codes (not primary, shutting down, network, write conflict) are retried
with backoff, the rest (duplicate key, document validation, ...) go to the error policy. A failure of
the whole request (connection loss, server selection timeout, an error labelled
``RetryableWriteError``) retries the request. Batching, retries, backpressure and ordering are those
of :class:`~arrowflow.writer.AsyncBatchWriter`, set by ``batching=BatchingConfig(...)``
(``max_request_rows`` = documents per request, ``max_time_in_buffer`` = seconds a document may wait):
:data:`~.config.MONGODB_BATCHING` by default, :data:`~.config.MONGODB_KEYED_BATCHING` (one request in
flight, so upserts of one key apply in write order) in the keyed modes. 0.1.0's ``batch_size``,
``batch_interval`` and ``max_in_flight`` still work, with a ``DeprecationWarning``. ``flush()`` blocks
until every document is acknowledged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import NO_OPTIONS, REQUIRED, ConfigAttributes, Secret, resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError, ConnectorError
from ...writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult
from ._client import DUPLICATE_KEY, RETRYABLE_CODES, make_client, retryable
from .config import MONGODB_BATCHING, MongoSinkConfig


class MongoSink(ConfigAttributes, AsyncBatchWriter):
    """Writes batches into a MongoDB collection. See the module docstring for the contract."""

    name = "mongodb"

    def __init__(
        self,
        uri: str | Secret = REQUIRED,
        database: str = REQUIRED,
        collection: str = REQUIRED,
        *,
        mode: str = "insert",
        keys: str | Sequence[str] = ("_id",),
        ordered: bool = False,
        ignore_duplicates: bool = False,
        nulls: str = "null",
        object_id: str | Sequence[str] | None = None,
        bypass_document_validation: bool = False,
        batching: BatchingConfig = MONGODB_BATCHING,
        client_options: Mapping[str, Any] = NO_OPTIONS,
        error_policy: ErrorPolicyLike = "fail",
        config: MongoSinkConfig | None = None,
        **deprecated: Any,
    ) -> None:
        config = resolve_config(MongoSinkConfig, config, locals(), **deprecated)
        keyed = config.mode != "insert"
        super().__init__(
            config.batching, error_policy=error_policy, name=f"mongodb:{config.database}.{config.collection}"
        )
        self.config = config
        self.idempotent = keyed or config.ignore_duplicates
        self._client: Any = None
        self._collection: Any = None

    @property
    def sink_config(self) -> MongoSinkConfig:
        """0.1.0's name of :attr:`config`."""
        return self.config  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        c = self.config
        return f"MongoSink({c.database!r}, {c.collection!r}, mode={c.mode!r}, keys={c.keys!r})"

    def _coll(self) -> Any:
        if self._collection is None:
            c = self.config
            self._client = make_client(c.uri, c.client_options)
            self._collection = self._client[c.database][c.collection]
        return self._collection

    # -- AsyncBatchWriter hooks ----------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> Any:
        """Documents (insert) or ``{doc, filter}`` structs (keyed modes), via the BSON kernel."""
        from ..._ext import bson_encode as kernel

        c = self.config
        missing = [k for k in c.keys if k not in batch.schema.names] if c.mode != "insert" else []
        if missing:
            raise ConfigurationError(f"key column(s) {missing} are not in the batch", option="keys")
        docs, failed, errors = kernel.encode_documents_checked(batch, object_id=c.object_id, nulls=c.nulls)
        entries: pa.Array = docs
        if c.mode != "insert":
            good = batch
            if len(failed):
                keep = np.ones(batch.num_rows, dtype=bool)
                keep[failed] = False
                good = batch.filter(pa.array(keep))
            filters = kernel.encode_documents(good, columns=list(c.keys), object_id=c.object_id, nulls="null")
            entries = pa.StructArray.from_arrays([docs, filters], names=["doc", "filter"])
        if len(failed):
            return Encoded(entries=entries, failed=failed, errors=errors)
        return entries

    def entry_sizes(self, entries: Any) -> np.ndarray:
        if isinstance(entries, pa.StructArray):
            return super().entry_sizes(entries.field("doc"))
        return super().entry_sizes(entries)

    def classify(self, exc: BaseException) -> bool:
        return retryable(exc)

    def submit(self, entries: Any) -> SubmitResult | None:
        """One ``insert_many`` / ``bulk_write``; per-document errors are mapped to entry indices."""
        import pymongo.errors as pe
        from bson.raw_bson import RawBSONDocument

        c = self.config
        coll = self._coll()
        n = len(entries)
        try:
            if c.mode == "insert":
                docs = [RawBSONDocument(b) for b in entries.to_pylist()]
                coll.insert_many(
                    docs, ordered=c.ordered, bypass_document_validation=c.bypass_document_validation
                )
            else:
                coll.bulk_write(
                    self._requests(entries),
                    ordered=c.ordered,
                    bypass_document_validation=c.bypass_document_validation,
                )
        except pe.BulkWriteError as exc:
            return self._partial(exc.details, n)
        return None

    def _requests(self, entries: pa.StructArray) -> list[Any]:
        from bson.raw_bson import RawBSONDocument
        from pymongo import ReplaceOne, UpdateOne

        docs = entries.field("doc").to_pylist()
        filters = entries.field("filter").to_pylist()
        if self.config.mode == "replace":
            return [
                ReplaceOne(RawBSONDocument(f), RawBSONDocument(d), upsert=True)
                for f, d in zip(filters, docs, strict=True)
            ]
        # {"$set": doc} around the encoded document, without decoding it.
        out = []
        for f, d in zip(filters, docs, strict=True):
            body = b"\x03$set\x00" + d + b"\x00"
            out.append(
                UpdateOne(
                    RawBSONDocument(f),
                    RawBSONDocument((len(body) + 4).to_bytes(4, "little") + body),
                    upsert=True,
                )
            )
        return out

    def _partial(self, details: Mapping[str, Any], n: int) -> SubmitResult | None:
        """Failed entries of a ``BulkWriteError``: duplicates ignored on request, transient codes retried."""
        c = self.config
        failed: list[int] = []
        errors: list[str] = []
        retryable: list[bool] = []
        for err in details.get("writeErrors", []):
            code = err.get("code")
            if code == DUPLICATE_KEY and c.ignore_duplicates:
                continue
            failed.append(int(err["index"]))
            errors.append(f"code {code}: {err.get('errmsg', '')}")
            retryable.append(code in RETRYABLE_CODES)
        if c.ordered and details.get("writeErrors"):
            # An ordered write stops at its first error: what follows was not attempted; send again.
            first = int(details["writeErrors"][0]["index"])
            failed.extend(range(first + 1, n))
            errors.extend(
                ["not attempted: an earlier document of the ordered write failed"] * (n - first - 1)
            )
            retryable.extend([True] * (n - first - 1))
        if details.get("writeConcernErrors"):
            raise ConnectorError(
                f"mongodb: write concern error: {details['writeConcernErrors'][0]}", retryable=True
            )
        if not failed:
            return None
        return SubmitResult(
            failed=np.array(failed, dtype=np.int64), errors=errors, retryable=np.array(retryable)
        )

    def _close(self) -> None:
        super()._close()
        if self._client is not None:
            self._client.close()
            self._client = None
            self._collection = None
