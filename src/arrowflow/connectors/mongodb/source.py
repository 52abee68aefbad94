"""MongoDB collection source: :class:`MongoSource`.

**MongoSource** reads a collection (``filter``, ``projection``) sorted by ``_id``, in pages of at most
``max_rows`` documents (``find`` with ``_id > last``), decoded into Arrow with ``schema`` (inferred per
batch when ``None``). A page is decoded by the compiled kernel
``arrowflow._ext.bson_decode`` (GIL released, no Python object per value) when ``schema`` holds only
bool, int32, int64, float64, string, binary, fixed_size_binary(12) and timestamp[ms/us/ns] columns and
every value fits its column (see ``ext/bson_decode.pyx``); any other page takes ``bson.decode_all`` +
:func:`decode_documents`, with the same result. ``num_splits > 1`` samples ``_id`` s (``$sample``) in
:meth:`MongoSource.plan` and splits the collection into ``_id`` ranges at the sample quantiles; when
sampling fails, or the sampled ``_id`` s are not all of one BSON type (range queries only match one
type), there is a single split. **Position**: the last ``_id`` delivered in the split as canonical
extended JSON text (or ``None``); reopening resumes with ``_id > last``, so no row is re-read or
skipped. A source position is exact only for a single ``_id`` type per collection, which is MongoDB's
norm.

Errors from the server raise :class:`~arrowflow.errors.ConnectorError` (``retryable`` for connection
loss); a pipeline run fails, and a new run resumes from its last checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from ...config import NO_OPTIONS, REQUIRED, ConfigAttributes, Secret, resolve_config
from ...errors import ConfigurationError
from ...source import Position, Source, Split, SplitReader
from ._client import decode_page, extjson, from_extjson, make_client, wrap
from .config import MongoSourceConfig


class MongoSource(ConfigAttributes, Source):
    """A bounded read of one collection, split by ``_id`` ranges. See the module docstring."""

    name = "mongodb"
    replayable = True

    def __init__(
        self,
        uri: str | Secret = REQUIRED,
        database: str = REQUIRED,
        collection: str = REQUIRED,
        *,
        filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | None = None,
        schema: pa.Schema | None = None,
        num_splits: int = 1,
        samples_per_split: int = 10,
        client_options: Mapping[str, Any] = NO_OPTIONS,
        config: MongoSourceConfig | None = None,
    ) -> None:
        self.config = resolve_config(MongoSourceConfig, config, locals())

    def __repr__(self) -> str:
        return f"MongoSource({self.database!r}, {self.collection!r}, filter={self.filter!r})"

    @property
    def bounded(self) -> bool:
        return True

    @property
    def schema(self) -> pa.Schema | None:
        return self.config.schema  # type: ignore[no-any-return]

    def plan(self) -> list[Split]:
        """One split, or ``num_splits`` ``_id`` ranges cut at quantiles of a ``$sample`` (one query)."""
        bounds: list[Any] = []
        if self.num_splits > 1:
            client = make_client(self.uri, self.client_options)
            try:
                coll = client[self.database][self.collection]
                size = self.num_splits * self.samples_per_split
                ids = [
                    d["_id"] for d in coll.aggregate([{"$sample": {"size": size}}, {"$project": {"_id": 1}}])
                ]
            except Exception:
                ids = []  # no $sample on this server: one split (documented)
            finally:
                client.close()
            if ids and len({type(i) for i in ids}) == 1:
                ids.sort()
                cuts = [ids[len(ids) * k // self.num_splits] for k in range(1, self.num_splits)]
                for c in cuts:
                    if not bounds or c != bounds[-1]:
                        bounds.append(c)
        edges: list[Any] = [None, *bounds, None]
        return [
            Split(
                split_id=f"mongodb-{k}",
                params={
                    "lo": None if edges[k] is None else extjson(edges[k]),
                    "hi": None if edges[k + 1] is None else extjson(edges[k + 1]),
                },
            )
            for k in range(len(edges) - 1)
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        return _MongoReader(self, split, position)


class _MongoReader(SplitReader):
    """Pages through one ``_id`` range in ``_id`` order; position = last ``_id`` (extended JSON)."""

    def __init__(self, source: MongoSource, split: Split, position: Position) -> None:
        super().__init__(split, position)
        self.source = source
        self._last: str | None = position
        self._done = False
        #: Which decoder made the last batch: "kernel" (``arrowflow._ext.bson_decode``), "python"
        #: (``bson.decode_all`` + :func:`decode_documents`); ``None`` before one.
        self.decoded_by: str | None = None
        #: Why the kernel declined the last page (its reason text), when it did.
        self.kernel_declined: str | None = None
        self._client = make_client(source.uri, source.client_options)
        self._coll = self._client[source.database][source.collection]

    def _query(self) -> dict[str, Any]:
        cond: dict[str, Any] = {}
        lo, hi = self.split.params.get("lo"), self.split.params.get("hi")
        if lo is not None:
            cond["$gte"] = from_extjson(lo)
        if hi is not None:
            cond["$lt"] = from_extjson(hi)
        if self._last is not None:
            cond["$gt"] = from_extjson(self._last)
        parts = [p for p in (self.source.filter, {"_id": cond} if cond else {}) if p]
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        """Runs one ``find`` (blocks while the server answers); an empty page finishes the split."""
        if self._done:
            return None
        import bson

        src = self.source
        projection = src.projection
        if projection is not None and not projection.get("_id", 1):
            raise ConfigurationError(
                "the projection must keep _id (positions are _id values)", option="projection"
            )
        try:
            raw = b"".join(
                self._coll.find_raw_batches(self._query(), projection, sort=[("_id", 1)], limit=max_rows)
            )
        except Exception as exc:
            raise wrap(exc, f"reading {src.database}.{src.collection}") from None
        if not raw:
            self._done = True
            return None
        from ..._ext import bson_decode

        batch, self.decoded_by, self.kernel_declined = decode_page(raw, src.schema)
        offsets = bson_decode.document_offsets(raw)
        last_doc = bson.decode(raw[int(offsets[-2]) :])
        self._last = extjson(last_doc["_id"])
        if batch.num_rows < max_rows:
            self._done = True
        return batch

    @property
    def finished(self) -> bool:
        return self._done

    def snapshot(self) -> Position:
        return self._last

    def close(self) -> None:
        self._client.close()
