"""MongoDB change-stream source: :class:`MongoChangeStreamSource`.

**MongoChangeStreamSource** watches a collection (or database) change stream; one unbounded split.
Each change is one row: ``_operation`` (insert, update, replace, delete, ...), ``_document_key``
(extended JSON of the document key), ``_cluster_time`` and the fields of ``fullDocument`` decoded with
``schema`` (null for deletes). The stream is opened with ``document_class=RawBSONDocument``: pymongo
hands over one raw change per event (the per-change Python object, at the client boundary), whose top
level gives the three metadata columns and the raw ``fullDocument``; the ``fullDocument`` s of a batch
are decoded together, by the ``bson_decode`` kernel under the same conditions as ``MongoSource``'s
pages, else by ``bson.decode_all`` + :func:`decode_documents` (the reader's ``decoded_by`` says which),
with the same result. **Position**: the resume token after the last change returned (a JSON object);
reopening resumes after it (``resume_after``). ``read_batch`` waits at most ``timeout``.

Server errors are handled as by :class:`~.source.MongoSource` (see :mod:`.source`).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ...config import NO_OPTIONS, REQUIRED, ConfigAttributes, Secret, resolve_config
from ...source import Position, Source, Split, SplitReader
from ._client import decode_documents, decode_page, extjson, make_client, wrap
from .config import MongoChangeStreamSourceConfig


class MongoChangeStreamSource(ConfigAttributes, Source):
    """Changes of a collection (or a whole database when ``collection`` is None) as batches."""

    name = "mongodb-changes"
    replayable = True

    def __init__(
        self,
        uri: str | Secret = REQUIRED,
        database: str = REQUIRED,
        collection: str | None = None,
        *,
        schema: pa.Schema | None = None,
        pipeline: Sequence[Mapping[str, Any]] | None = None,
        full_document: str | None = "updateLookup",
        client_options: Mapping[str, Any] = NO_OPTIONS,
        config: MongoChangeStreamSourceConfig | None = None,
    ) -> None:
        self.config = resolve_config(MongoChangeStreamSourceConfig, config, locals())

    @property
    def document_schema(self) -> pa.Schema | None:
        """The schema of ``fullDocument`` (the ``schema`` option)."""
        return self.config.schema  # type: ignore[no-any-return]

    @property
    def bounded(self) -> bool:
        return False

    @property
    def schema(self) -> pa.Schema | None:
        if self.document_schema is None:
            return None
        return pa.schema([*_CHANGE_META, *self.document_schema])

    def plan(self) -> list[Split]:
        return [Split(split_id="mongodb-changes", bounded=False)]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        return _ChangeReader(self, split, position)


_CHANGE_META = pa.schema(
    [
        ("_operation", pa.string()),
        ("_document_key", pa.string()),
        ("_cluster_time", pa.timestamp("s", "UTC")),
    ]
)


class _ChangeReader(SplitReader):
    """Drains the change stream with ``try_next``; position = the resume token after the last change.

    The stream is opened with ``document_class=RawBSONDocument`` (the client's other codec options
    kept), so each change arrives as its raw BSON bytes. Per change, only the top level is read (by
    pymongo's C decoder; embedded documents stay raw): ``operationType``, ``clusterTime``,
    ``documentKey`` (decoded with the client's codec options, then extended JSON) and the raw bytes
    of ``fullDocument`` (an empty document when it is missing or null). The ``fullDocument`` s of the
    batch, concatenated, are decoded in one call by the ``bson_decode`` kernel when ``schema`` and the
    values fit it (see :class:`_MongoReader`); otherwise by ``bson.decode_all`` (client codec options)
    + :func:`decode_documents`, the general path, with the same result. A client whose codec options
    hold custom type decoders has its changes decoded whole with them (the general path), as before.
    """

    def __init__(self, source: MongoChangeStreamSource, split: Split, position: Position) -> None:
        from bson.codec_options import TypeDecoder
        from bson.raw_bson import RawBSONDocument

        super().__init__(split, position)
        self.source = source
        self._token: Any = position
        #: Which decoder made the last batch's document columns: "kernel"
        #: (``arrowflow._ext.bson_decode``), "python" (``bson.decode_all`` + :func:`decode_documents`);
        #: ``None`` before one.
        self.decoded_by: str | None = None
        #: Why the kernel declined the last batch (its reason text), when it did.
        self.kernel_declined: str | None = None
        self._client = make_client(source.uri, source.client_options)
        db = self._client[source.database]
        target = db[source.collection] if source.collection else db
        #: The client's codec options: the general path and the metadata decode with them, as before.
        self._codec = target.codec_options
        #: Custom type decoders (``type_registry``) may change any decoded value: such a client's
        #: changes are decoded whole with its codec options, as before (the general path).
        self._custom = any(isinstance(c, TypeDecoder) for c in self._codec.type_registry.codecs)
        target = target.with_options(codec_options=self._codec.with_options(document_class=RawBSONDocument))
        kwargs: dict[str, Any] = {"max_await_time_ms": 100}
        if source.full_document:
            kwargs["full_document"] = source.full_document
        if position is not None:
            kwargs["resume_after"] = position
        try:
            self._stream = target.watch(source.pipeline, **kwargs)
        except Exception as exc:
            self._client.close()
            raise wrap(exc, "opening the change stream") from None

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        from bson.raw_bson import RawBSONDocument

        changes: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while len(changes) < max_rows:
                change = self._stream.try_next()
                if change is None:
                    if changes or time.monotonic() >= deadline:
                        break
                    continue
                changes.append(change)
                # pymongo's cached token, not the ``resume_token`` property: that deep-copies it, which
                # for a RawBSONDocument costs more than the rest of the change. Tokens are replaced, not
                # mutated, so the reference stays the token after this change; ``snapshot`` decodes it.
                self._token = getattr(self._stream, "_resume_token", _NO_TOKEN)
                if self._token is _NO_TOKEN:  # another pymongo: the public (copying) property
                    self._token = self._stream.resume_token
        except Exception as exc:
            raise wrap(exc, "reading the change stream") from None
        if not changes:
            return None
        if not isinstance(changes[0], RawBSONDocument):  # defensive: pymongo decoded them itself
            return self._decode_dicts(changes, "pymongo returned decoded changes")
        why = "custom type decoders in the client's codec options"
        if not self._custom:
            batch = self._decode_raw(changes)
            if batch is not None:
                return batch
            why = "a fullDocument that is neither a document nor null"
        import bson

        return self._decode_dicts([bson.decode(c.raw, self._codec) for c in changes], why)

    def _decode_raw(self, changes: list[Any]) -> pa.RecordBatch | None:
        """Raw changes -> a batch, ``fullDocument`` columns decoded for the whole batch at once.

        ``None`` when a change's ``fullDocument`` is neither a document nor null (a pipeline may make
        it anything): the caller then decodes the changes as dicts, exactly as before.
        """
        from bson.raw_bson import RawBSONDocument

        ops: list[Any] = []
        keys: list[str | None] = []
        seconds: list[int | None] = []
        bodies: list[bytes | memoryview] = []
        for c in changes:
            # The first access decodes the change's top level once; embedded documents stay raw.
            full = c.get("fullDocument")
            if full is None:
                bodies.append(_EMPTY_DOCUMENT)
            elif isinstance(full, RawBSONDocument):
                bodies.append(full.raw)
            else:
                return None
            ops.append(c.get("operationType"))
            # json_util walks a RawBSONDocument as the mapping it is: the same text as for a dict.
            keys.append(extjson(c["documentKey"]) if "documentKey" in c else None)
            ts = c.get("clusterTime")
            seconds.append(None if ts is None else ts.time)
        raw = b"".join(bodies)
        schema = self.source.document_schema
        body, self.decoded_by, self.kernel_declined = decode_page(raw, schema, self._codec)
        meta = [
            pa.array(ops, pa.string()),
            pa.array(keys, pa.string()),
            pa.array(seconds, pa.timestamp("s", "UTC")),
        ]
        names = [*_CHANGE_META.names, *body.schema.names]
        return pa.RecordBatch.from_arrays([*meta, *body.columns], names=names)

    def _decode_dicts(self, changes: list[Mapping[str, Any]], why: str) -> pa.RecordBatch:
        """Decoded changes (dicts) -> a batch: the general path, value by value (``why``: the reason
        the kernel was not tried, kept in ``kernel_declined``)."""
        meta = [
            pa.array([c.get("operationType") for c in changes], pa.string()),
            pa.array(
                [extjson(c["documentKey"]) if "documentKey" in c else None for c in changes], pa.string()
            ),
            pa.array([_cluster_time(c.get("clusterTime")) for c in changes], pa.timestamp("s", "UTC")),
        ]
        docs = [c.get("fullDocument") or {} for c in changes]
        body = decode_documents(docs, self.source.document_schema)
        self.decoded_by = "python"
        self.kernel_declined = why
        names = [*_CHANGE_META.names, *body.schema.names]
        return pa.RecordBatch.from_arrays([*meta, *body.columns], names=names)

    @property
    def finished(self) -> bool:
        return False

    def snapshot(self) -> Position:
        token = self._token
        if token is None:
            return None
        if hasattr(token, "raw"):  # a RawBSONDocument: decoded as pymongo would have with dicts
            import bson

            token = bson.decode(token.raw, self._codec)
        return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in dict(token).items()}

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._client.close()


#: Marks a ChangeStream without the ``_resume_token`` attribute (see ``_ChangeReader.read_batch``).
_NO_TOKEN = object()
#: An empty BSON document: the ``fullDocument`` of a change without one (all columns null).
_EMPTY_DOCUMENT = b"\x05\x00\x00\x00\x00"


def _cluster_time(ts: Any) -> _dt.datetime | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts.time, tz=_dt.timezone.utc)
