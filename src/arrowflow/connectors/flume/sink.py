"""Flume sink (Apache Bahir's Flume connector): rows -> Flume events over HTTP/JSON or Avro RPC.

A row becomes one Flume event: a ``body`` (bytes) and ``headers`` (a string -> string map).

* Body: ``body_column`` (string or binary). With ``body_column=None`` the body is a JSON object of
  the row's other columns (those not used as headers), encoded by the compiled JSON kernel. A null
  body is an error for that row (it goes to the error policy); an empty body is a valid event.
* Headers: ``static_headers`` (the same on every event), ``header_columns`` (any column castable
  to string; a null value omits the header on that row) and ``headers_column`` (a
  ``map<string, string>`` column; entries with a null value are omitted). On one event the
  headers are listed in that order. A key that the map column repeats (a second entry of the same
  key, or a name of ``static_headers``/``header_columns``) is sent once, with its last value, at the
  place of that last occurrence: the map's entry wins, as it would in the ``HashMap`` Flume builds.
  (Sending the key twice is not an option: ``JSONHandler``'s Gson refuses a JSON object with a
  repeated key, so the whole request would be answered 400.)

Two wire protocols (``protocol``):

``"http"`` -- Flume's ``HTTPSource`` with its default ``JSONHandler``: one POST per request whose
body is a JSON array of events ``[{"headers": {...}, "body": "..."}, ...]`` (UTF-8). Each row's
event object is encoded by :func:`arrowflow._ext.json_encode.encode_rows` over a batch shaped
``{headers: map, body: string}``; a request joins its events with commas inside ``[ ]`` in numpy
(no Python object per row). ``JSONHandler`` reads ``body`` as a *string* and turns it into bytes
with the request charset, so a binary body must be text: with ``body_encoding="utf8"`` (default) a
binary body is sent as is and a row whose body is not valid UTF-8 goes to the error policy; with
``body_encoding="base64"`` it is sent base64-encoded (the receiver must decode it, e.g. with an
interceptor). Answers: 2xx = written; 503 (the channel is full: ``ChannelException``), 429, other
5xx and network errors = retried with backoff; 400 (``HTTPBadRequestException``: malformed events)
and any other status = fatal for the rows of that request (error policy).

``"avro"`` -- Flume's ``AvroSource``: Avro IPC over Netty framing, protocol ``AvroSourceProtocol``,
message ``appendBatch(array<AvroFlumeEvent>) -> Status``. Each request is one frame
``serial:int32, nbuffers:int32, (length:int32, bytes)*`` (big-endian) holding the call: on the first
call of a connection the Avro IPC handshake (``HandshakeRequest`` with the MD5 of the protocol JSON
and the protocol text itself, so the server never has to answer ``NONE``), then empty call metadata,
the message name and the events array. The events are Avro-encoded per row with numpy varints and
pyarrow string joins (equal, byte for byte, to ``fastavro.schemaless_writer``; the tests check it);
the handshake and the response are read and written with fastavro. Answers: ``OK`` = written;
``FAILED`` / ``UNKNOWN`` (the source could not put the events on its channel) and network errors =
retried with backoff on a fresh connection (and handshake); an Avro error response = fatal for the
rows of that request. Compression (``compression-type=deflate``) and SSL are not supported.

Batching, retries and backpressure are :class:`~arrowflow.writer.AsyncBatchWriter`'s: by default
100 events per request (Flume's ``batchSize``), one request in flight (events arrive in write
order), a partial request after 1 s, backoff 100 ms -> 5 s for up to 10 attempts; rows whose
retries run out follow the error policy (``"fail"``, ``"skip"`` or a dead-letter sink).

Guarantee: at-least-once. A request whose answer was lost is sent again, and Flume (like Bahir's
sink) has no de-duplication, so events may be duplicated after a retry.
"""

from __future__ import annotations

import http.client
import io
import struct
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..._arrays import dedupe_last
from ..._ext import load
from ...config import REQUIRED, ConfigAttributes, resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError, SerializationError
from ...writer import AsyncBatchWriter, BatchingConfig, Encoded, Entries, SubmitResult, batch_column
from ._client import (
    HANDSHAKE_REQUEST,
    HANDSHAKE_RESPONSE,
    META_SCHEMA,
    PROTOCOL_HASH,
    PROTOCOL_TEXT,
    STATUS,
    AvroConnection,
    contiguous,
    encode_avro_events,
    json_array,
    read_long,
    zigzag_varints,
)
from .config import FLUME_BATCHING, FlumeSinkConfig, split_host_port

#: The constructor's default of a mapping option (read-only: one object serves every sink).
_NONE: Mapping[str, str] = MappingProxyType({})


class FlumeSink(ConfigAttributes, AsyncBatchWriter):
    """Sends rows as Flume events over HTTP/JSON or Avro RPC. See the module docstring.

    Construct with a :class:`FlumeSinkConfig` or its fields as keyword arguments::

        FlumeSink(protocol="avro", address="127.0.0.1:41414", body_column="line")
    """

    name = "flume"

    def __init__(
        self,
        config: FlumeSinkConfig | None = None,
        *,
        protocol: str = "http",
        address: str = REQUIRED,
        body_column: str | None = "body",
        body_encoding: str = "utf8",
        header_columns: Sequence[str] | Mapping[str, str] = (),
        headers_column: str | None = None,
        static_headers: Mapping[str, str] = _NONE,
        batching: BatchingConfig = FLUME_BATCHING,
        request_timeout: float = 20.0,
        connect_timeout: float = 20.0,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        config = resolve_config(FlumeSinkConfig, config, locals())
        super().__init__(config.batching, error_policy=error_policy, name=f"flume-{config.protocol}")
        self.config = config
        self._json = load("json_encode")
        self._local = threading.local()
        self._open: list[Any] = []
        self._open_lock = threading.Lock()
        if config.protocol == "http":
            parsed = urllib.parse.urlsplit(config.address)
            self._https = parsed.scheme == "https"
            self._host = parsed.hostname or ""
            self._port: int | None = parsed.port
            self._path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        else:
            import fastavro

            self._fastavro = fastavro
            self._host, self._port = split_host_port(config.address)
            self._handshake_request = self._write_avro(
                HANDSHAKE_REQUEST,
                {
                    "clientHash": PROTOCOL_HASH,
                    "clientProtocol": PROTOCOL_TEXT,
                    "serverHash": PROTOCOL_HASH,
                    "meta": None,
                },
            )
            self._handshake_response = fastavro.parse_schema(HANDSHAKE_RESPONSE)
            self._meta_schema = fastavro.parse_schema(META_SCHEMA)
        self._static = [(k, v) for k, v in config.static_headers.items()]

    @property
    def settings(self) -> FlumeSinkConfig:
        """0.1.0's name of :attr:`config`."""
        return self.config  # type: ignore[no-any-return]

    def _write_avro(self, schema: dict[str, Any], record: Any) -> bytes:
        out = io.BytesIO()
        self._fastavro.schemaless_writer(out, self._fastavro.parse_schema(schema), record)
        return out.getvalue()

    # ------------------------------------------------------------------ encode (writing thread)

    @staticmethod
    def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
        return batch_column(batch, name, who="flume")

    def _body(self, batch: pa.RecordBatch) -> pa.Array:
        """The body column as string (http) or binary (avro); may hold nulls (= bad rows)."""
        cfg = self.config
        if cfg.body_column is None:
            used = set(cfg.header_map.values()) | {cfg.headers_column}
            columns = [c for c in batch.schema.names if c not in used]
            try:
                docs = self._json.encode_rows(batch, columns=columns, nulls="omit")
            except (TypeError, ValueError) as exc:
                raise SerializationError(f"flume: cannot encode the rows as JSON bodies: {exc}") from exc
            return docs.view(pa.string()) if cfg.protocol == "http" else docs
        body = self._column(batch, cfg.body_column)
        t = body.type
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            body = body.cast(pa.string())
        elif pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
            body = body.cast(pa.binary())
        elif not (pa.types.is_string(t) or pa.types.is_binary(t)):
            raise SerializationError(
                f"flume: body column {cfg.body_column!r} must be string or binary, got {t}"
            )
        if cfg.protocol == "avro":
            return body.cast(pa.binary()) if pa.types.is_string(body.type) else body
        return body

    def _headers(self, batch: pa.RecordBatch) -> tuple[np.ndarray, pa.Array, pa.Array]:
        """``(count per row, keys, values)``: every row's headers, row after row (no nulls)."""
        n = batch.num_rows
        rows: list[np.ndarray] = []
        keys: list[pa.Array] = []
        values: list[pa.Array] = []
        arange = np.arange(n, dtype=np.int64)
        names = [k for k, _ in self._static] + list(self.config.header_map)
        name_array = pa.array(names, pa.string())
        for j, (_, value) in enumerate(self._static):
            rows.append(arange)
            keys.append(name_array.take(pa.array(np.full(n, j, dtype=np.int32))))
            values.append(pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int32))))
        for j, column in enumerate(self.config.header_map.values(), start=len(self._static)):
            col = self._column(batch, column)
            try:
                text = col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SerializationError(
                    f"flume: header column {column!r} of type {col.type} cannot be cast to string"
                ) from exc
            if text.null_count:
                valid = np.asarray(text.is_valid())
                rows.append(arange[valid])
                text = text.filter(pa.array(valid))
            else:
                rows.append(arange)
            keys.append(name_array.take(pa.array(np.full(len(text), j, dtype=np.int32))))
            values.append(text)
        if self.config.headers_column is not None:
            col = self._column(batch, self.config.headers_column)
            if not pa.types.is_map(col.type):
                raise SerializationError(
                    f"flume: headers_column {self.config.headers_column!r} must be a map, got {col.type}"
                )
            offsets = np.asarray(col.offsets, dtype=np.int64)
            counts = np.diff(offsets)
            if col.null_count:
                counts = np.where(np.asarray(col.is_valid()), counts, 0)
            # Entries of null map slots are skipped by taking only the entries the offsets cover.
            start = offsets[:-1]
            entry = np.repeat(start - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
            entry += np.arange(int(counts.sum()), dtype=np.int64)
            mkeys = col.keys.cast(pa.string()).take(pa.array(entry)) if len(entry) else col.keys.slice(0, 0)
            mvals = col.items.cast(pa.string()).take(pa.array(entry)) if len(entry) else col.items.slice(0, 0)
            mrows = np.repeat(arange, counts)
            if mvals.null_count:
                valid = np.asarray(mvals.is_valid())
                mrows, mkeys, mvals = (
                    mrows[valid],
                    mkeys.filter(pa.array(valid)),
                    mvals.filter(pa.array(valid)),
                )
            rows.append(mrows)
            keys.append(mkeys.cast(pa.string()))
            values.append(mvals.cast(pa.string()))
        if not rows:
            empty = pa.array([], pa.string())
            return np.zeros(n, dtype=np.int64), empty, empty
        all_rows = np.concatenate(rows)
        order = np.argsort(all_rows, kind="stable")
        pairs = pa.table(
            {
                "row": all_rows[order],
                "key": pa.concat_arrays([k.cast(pa.string()) for k in keys]).take(pa.array(order)),
                "value": pa.concat_arrays(values).take(pa.array(order)),
            }
        )
        if self.config.headers_column is not None:
            # Only the map column can repeat a key on a row (static and column names are distinct).
            # HTTPSource's JSONHandler (Gson) rejects a JSON object with a repeated key: the whole
            # request would come back 400. Send each key once, with its last value, as the
            # AvroSource's HashMap would keep it.
            pairs = dedupe_last(pairs, ("row", "key"))
        counts = np.bincount(pairs.column("row").to_numpy(), minlength=n).astype(np.int64)
        return counts, pairs.column("key").combine_chunks(), pairs.column("value").combine_chunks()

    def encode(self, batch: pa.RecordBatch) -> Entries | Encoded:
        """One event per row: a JSON object (http) or an Avro ``AvroFlumeEvent`` (avro)."""
        body = self._body(batch)
        bad = np.zeros(batch.num_rows, dtype=bool)
        reasons: dict[int, str] = {}
        if body.null_count:
            bad |= ~np.asarray(body.is_valid())
        # With body_encoding="base64" the JSON kernel writes a binary column as base64 text itself.
        http_text = self.config.protocol == "http" and self.config.body_encoding == "utf8"
        if http_text and pa.types.is_binary(body.type):
            body, invalid = self._utf8(body)
            for i in np.flatnonzero(invalid & ~bad).tolist():  # error path only
                reasons[i] = "body is not valid UTF-8 (use body_encoding='base64')"
            bad |= invalid
        if bad.any():
            failed = np.flatnonzero(bad)
            errors = [reasons.get(i, "null body") for i in failed.tolist()]
            keep = pa.array(~bad)
            good = batch.filter(keep)
            entries = self._events(good, body.filter(keep)) if good.num_rows else pa.array([], pa.binary())
            return Encoded(entries, failed, errors)
        return self._events(batch, body)

    def _events(self, batch: pa.RecordBatch, body: pa.Array) -> pa.Array:
        counts, keys, values = self._headers(batch)
        if self.config.protocol == "avro":
            return encode_avro_events(counts, keys, values, body)
        offsets = np.zeros(len(counts) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        headers = pa.MapArray.from_arrays(pa.array(offsets), keys, values)
        shaped = pa.RecordBatch.from_arrays([headers, body], names=["headers", "body"])
        return self._json.encode_rows(shaped)

    @staticmethod
    def _utf8(body: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """``body`` as string plus a mask of rows that are not valid UTF-8 (nulled in the result)."""
        try:
            return body.cast(pa.string()), np.zeros(len(body), dtype=bool)
        except pa.ArrowInvalid:
            pass
        # Error path: find the offending rows one by one (only when the batch has some).
        invalid = np.zeros(len(body), dtype=bool)
        for i, value in enumerate(body.to_pylist()):
            if value is not None:
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    invalid[i] = True
        cleaned = pc.if_else(pa.array(invalid), pa.scalar(None, pa.binary()), body)
        return cleaned.cast(pa.string()), invalid

    # ------------------------------------------------------------------ submit (worker threads)

    def submit(self, entries: Entries) -> SubmitResult | None:
        """Send one request (one POST, or one ``appendBatch`` call) and classify the answer."""
        if self.config.protocol == "http":
            self._submit_http(entries)
        else:
            self._submit_avro(entries)
        return None

    def _track(self, conn: Any) -> None:
        with self._open_lock:
            self._open.append(conn)

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _submit_http(self, entries: pa.Array) -> None:
        body = json_array(entries)
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.config.request_timeout)
            self._local.conn = conn
            self._track(conn)
        try:
            conn.request(
                "POST",
                self._path,
                body=body,
                headers={"Content-Type": "application/json; charset=UTF-8", "User-Agent": "arrowflow-flume"},
            )
            response = conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise ConnectorError(f"flume-http: {type(exc).__name__}: {exc}", retryable=True) from exc
        if response.will_close:
            self._drop()
        status = response.status
        if 200 <= status < 300:
            return None
        text = answer[:300].decode("utf-8", "replace").strip()
        retryable = status == 503 or status == 429 or status >= 500
        what = "channel full" if status == 503 else "bad request" if status == 400 else "rejected"
        raise ConnectorError(f"flume-http: HTTP {status} ({what}): {text}", retryable=retryable)

    def _submit_avro(self, entries: pa.Array) -> None:
        conn: AvroConnection | None = getattr(self._local, "conn", None)
        try:
            if conn is None:
                assert self._port is not None
                conn = AvroConnection(
                    self._host, self._port, self.config.connect_timeout, self.config.request_timeout
                )
                self._local.conn = conn
                self._track(conn)
            data, _ = contiguous(entries)
            handshake = b"" if conn.handshaken else self._handshake_request
            # Empty call metadata, the message name, then the array: one block of all events.
            payload = b"".join(
                (
                    handshake,
                    b"\x00\x16appendBatch",
                    zigzag_varints(np.array([len(entries)])).to_pylist()[0],
                    data.tobytes(),
                    b"\x00",
                )
            )
            answer = io.BytesIO(conn.call(payload))
            if not conn.handshaken:
                shake = self._fastavro.schemaless_reader(answer, self._handshake_response)
                assert isinstance(shake, dict)
                if shake["match"] == "NONE":
                    raise ConnectorError(
                        "flume-avro: the server did not accept the AvroSourceProtocol handshake",
                        retryable=True,
                    )
                conn.handshaken = True
            self._fastavro.schemaless_reader(answer, self._meta_schema)
            flag = answer.read(1)
            if flag == b"\x00":
                status = STATUS[read_long(answer)]
            elif flag == b"\x01":
                read_long(answer)  # union branch: the declared errors, or the string of a system error
                message = answer.read(read_long(answer)).decode("utf-8", "replace")
                raise ConnectorError(f"flume-avro: the server answered an error: {message}", retryable=False)
            else:
                raise ConnectionError("truncated Avro call response")
        except ConnectorError as exc:
            if exc.retryable:
                self._drop()
            raise
        except (OSError, EOFError, ValueError, IndexError, struct.error) as exc:
            self._drop()
            raise ConnectorError(f"flume-avro: {type(exc).__name__}: {exc}", retryable=True) from exc
        if status != "OK":
            raise ConnectorError(
                f"flume-avro: appendBatch returned {status} (the source could not store the events)",
                retryable=True,
            )
        return None

    def _close(self) -> None:
        super()._close()
        with self._open_lock:
            for conn in self._open:
                try:
                    conn.close()
                except OSError:
                    pass
            self._open.clear()
