"""Netty-style push sources (Bahir's Netty connector): clients connect to arrowflow and push data.

* :class:`TcpPushSource`: a listening TCP socket; each client sends newline-delimited frames or
  frames with a 4-byte big-endian length prefix. Frames are decoded with a format (``Raw`` by
  default: one ``value`` column; ``Json``, ``Csv``, ...) per received chunk, in the connection's
  thread. When the buffer is full the connection thread stops reading, so TCP flow control pushes
  back on the client. A frame longer than ``max_frame_bytes`` closes that connection (counted in
  ``connections_dropped``; frames already complete are kept).
* :class:`HttpPushSource`: an HTTP endpoint (stdlib ``ThreadingHTTPServer``) that accepts POSTed
  bodies: ``application/json`` (an array of objects, or one object), ``application/x-ndjson``
  (also ``application/jsonl``), ``text/csv`` (with a header row), ``application/vnd.apache.arrow.stream``.
  Answers: ``200 {"accepted": n}`` only after the rows are in the buffer; ``429`` (with
  ``Retry-After``) when the buffer stays full for ``accept_timeout`` seconds (backpressure: retry
  later); ``503`` once the source is closed; ``400`` for a body that does not parse or does not fit
  ``schema``; ``401`` for a missing or wrong bearer token (when ``token`` is set); ``404`` for another
  path; ``405`` for other methods; ``411`` without ``Content-Length`` (chunked bodies are refused);
  ``413`` for a body over ``max_body_bytes`` (not read); ``415`` for another content type.

Both listen on ``host:port`` (``port=0`` picks a free port; :attr:`address` tells which) from the
first :meth:`start` / ``open()`` until :meth:`close`; one split, ``"push"``.

Hostile clients (both sources; every option is checked at construction, naming the option):

* ``header_timeout`` / ``body_timeout`` (seconds, ``None`` = no limit) bound the time a client may
  take, as a deadline for the whole part, not per read, so a client sending a byte now and then
  (slowloris) cannot hold a connection. HTTP: the request line and headers must arrive within
  ``header_timeout`` of the connection being ready for a request (the TLS handshake included, and
  an idle keep-alive connection is closed after it), the body within ``body_timeout`` of the
  headers (else ``408`` and the connection is closed); a response the client does not read within
  ``body_timeout`` closes it. TCP: ``header_timeout`` is how long a connection may stay idle between
  frames (and the TLS handshake's limit), ``body_timeout`` how long a frame may take from its first
  byte to its last; time the source itself spends blocked on a full buffer does not count. Expired
  connections are closed and counted (``connections_timed_out``).
* ``max_connections`` bounds the connections served at once (each holds a thread). HTTP answers an
  excess connection ``503`` with ``Retry-After`` and closes it (without TLS; with TLS it is closed,
  since a 503 would cost the handshake the limit saves); TCP closes it at once. Counted in
  ``connections_refused``.
* ``tls_cert`` / ``tls_key`` (PEM file paths, both or neither) serve TLS 1.2+ (HTTPS; TLS on the TCP
  socket). The handshake runs on the connection's thread under ``header_timeout``; a client that
  does not trust the certificate fails it (counted in ``tls_handshake_failures``).

Guarantee: at-most-once, by nature. A client's data is acknowledged (HTTP 200, or TCP ACK) when it is
in arrowflow's memory, not when a checkpoint holds it: rows buffered when the process dies are lost,
and nothing is replayed after a restart. Rows that were answered 200 are never dropped while the
process lives (tests check that no accepted row is lost).
"""

from __future__ import annotations

import hmac
import io
import json
import os
import queue
import socket
import ssl
import struct
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import Secret, check_choice, check_positive, check_type, reveal
from ..error_policy import ErrorPolicy, ErrorPolicyLike
from ..errors import ArrowflowError, ConfigurationError, ConnectorError, SerializationError
from ..formats import Raw
from ..formats.base import Format, decode_with_policy
from ..source import Position, Source, Split, SplitReader
from .queue.buffer import BufferReader, PushBuffer, to_batch

__all__ = ["HttpPushSource", "TcpPushSource"]

_NL = 10


def _check_timeout(option: str, value: float | None) -> float | None:
    """A timeout option: a positive number of seconds, or None for no limit."""
    check_positive(option, value, allow_none=True)
    return None if value is None else float(value)


def server_tls_context(
    tls_cert: str | os.PathLike[str] | None, tls_key: str | os.PathLike[str] | None
) -> ssl.SSLContext | None:
    """The server-side TLS context of a certificate chain and its key (PEM paths), or None for
    neither; raises :class:`ConfigurationError` naming the option when only one is given, a file is
    missing, or they do not load as a certificate and its key."""
    if tls_cert is None and tls_key is None:
        return None
    if tls_cert is None or tls_key is None:
        missing = "tls_cert" if tls_cert is None else "tls_key"
        raise ConfigurationError("tls_cert and tls_key go together: give both or neither", option=missing)
    for option, value in (("tls_cert", tls_cert), ("tls_key", tls_key)):
        check_type(option, value, (str, os.PathLike))
        if not os.path.isfile(value):
            raise ConfigurationError(f"{option}: no such file {os.fspath(value)!r}", option=option)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(os.fspath(tls_cert), os.fspath(tls_key))  # type: ignore[arg-type]
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigurationError(
            f"tls_cert/tls_key do not load as a PEM certificate chain and its private key: {exc}",
            option="tls_cert",
        ) from None
    return ctx


class _PushSource(Source):
    """Shared parts: the buffer, the split, start/close, counters, the limits on clients."""

    def __init__(
        self,
        host: str,
        port: int,
        capacity: int,
        *,
        header_timeout: float | None,
        body_timeout: float | None,
        max_connections: int,
        tls_cert: str | os.PathLike[str] | None,
        tls_key: str | os.PathLike[str] | None,
    ) -> None:
        check_type("host", host, str)
        check_type("port", port, int)
        if not 0 <= port <= 65535:
            raise ConfigurationError(f"port must be in 0..65535, got {port}", option="port")
        check_type("capacity", capacity, int)
        check_positive("capacity", capacity)
        self.header_timeout = _check_timeout("header_timeout", header_timeout)
        self.body_timeout = _check_timeout("body_timeout", body_timeout)
        check_type("max_connections", max_connections, int)
        check_positive("max_connections", max_connections)
        # Loaded once here so a bad path or key fails at construction; the context itself is made
        # again when listening (an SSLContext does not pickle).
        server_tls_context(tls_cert, tls_key)
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.buffer = PushBuffer(capacity, "block")
        self._lock = threading.Lock()
        self._started = False
        self._counters: dict[str, int] = {}
        self._active = 0

    @property
    def tls(self) -> bool:
        """Whether the endpoint serves TLS."""
        return self.tls_cert is not None

    def _take_slot(self) -> bool:
        """Reserve one of ``max_connections`` (False, counted, when all are taken)."""
        with self._lock:
            if self._active >= self.max_connections:
                self._counters["connections_refused"] = self._counters.get("connections_refused", 0) + 1
                return False
            self._active += 1
            return True

    def _free_slot(self) -> None:
        with self._lock:
            self._active -= 1

    def _handshake(self, sock: socket.socket, ctx: ssl.SSLContext | None) -> socket.socket:
        """``sock`` with TLS set up (server side) when ``ctx`` is given, within ``header_timeout``.

        Runs on the connection's own thread, so a client that stalls the handshake holds only its
        own slot. Raises ``OSError`` (counted in ``tls_handshake_failures``) when it fails.
        """
        if ctx is None:
            return sock
        sock.settimeout(self.header_timeout)
        try:
            tls = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            tls.do_handshake()
        except (OSError, ValueError):
            self._count("tls_handshake_failures")
            sock.close()
            raise OSError("TLS handshake failed") from None
        return tls

    @property
    def bounded(self) -> bool:
        return False

    def plan(self) -> list[Split]:
        return [Split(split_id="push", bounded=False)]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        self.start()
        return BufferReader(split, self.buffer, position)

    def start(self) -> tuple[str, int]:
        """Start listening (idempotent); returns the bound address."""
        with self._lock:
            if not self._started:
                self._listen()
                self._started = True
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        raise NotImplementedError

    def _listen(self) -> None:
        raise NotImplementedError

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def metrics(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._counters)
        out.update(self.buffer.metrics())
        return out


class TcpPushSource(_PushSource):
    """Listens for TCP clients that push frames. See the module docstring."""

    name = "tcp-push"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        framing: str = "newline",
        format: Format | None = None,
        max_frame_bytes: int = 1 << 20,
        capacity: int = 100_000,
        error_policy: ErrorPolicyLike = "skip",
        header_timeout: float | None = 300.0,
        body_timeout: float | None = 30.0,
        max_connections: int = 256,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(
            host,
            port,
            capacity,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            max_connections=max_connections,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
        check_choice("framing", framing, ("newline", "length"))
        check_type("max_frame_bytes", max_frame_bytes, int)
        check_positive("max_frame_bytes", max_frame_bytes)
        self.framing = framing
        self.format = format if format is not None else Raw()
        check_type("format", self.format, Format)
        self.max_frame_bytes = max_frame_bytes
        # Bad frames of one client must not stop the others: "skip" (counted) by default.
        self.error_policy = ErrorPolicy.resolve(error_policy, name=self.name)
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._stopping = False

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            raise ArrowflowError("TcpPushSource is not started")
        host, port = self._sock.getsockname()[:2]
        return host, port

    def _listen(self) -> None:
        ctx = server_tls_context(self.tls_cert, self.tls_key)
        sock = socket.create_server((self.host, self.port), backlog=128)
        self._sock = sock
        threading.Thread(target=self._accept_loop, args=(ctx,), name="tcp-push-accept", daemon=True).start()

    def _accept_loop(self, ctx: ssl.SSLContext | None) -> None:
        assert self._sock is not None
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if not self._take_slot():
                conn.close()  # over max_connections: refused at once
                continue
            with self._lock:
                self._conns.add(conn)
                self._counters["connections"] = self._counters.get("connections", 0) + 1
            threading.Thread(target=self._serve, args=(conn, ctx), name="tcp-push-conn", daemon=True).start()

    def _serve(self, raw: socket.socket, ctx: ssl.SSLContext | None) -> None:
        pending = b""
        conn = raw
        try:
            conn = self._handshake(raw, ctx)
            if conn is not raw:
                with self._lock:
                    self._conns.discard(raw)
                    self._conns.add(conn)
            # Deadlines: idle (no partial frame) since `idle_since`, a partial frame since `frame_since`.
            idle_since = frame_since = time.monotonic()
            while not self._stopping:
                limit = self.body_timeout if pending else self.header_timeout
                if limit is not None:
                    left = (frame_since if pending else idle_since) + limit - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    conn.settimeout(left)
                else:
                    conn.settimeout(None)
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                data = pending + chunk
                had_partial = bool(pending)
                frames, pending = (
                    self._split_lines(data) if self.framing == "newline" else self._split_lengths(data)
                )
                delivered = frames is not None and len(frames) > 0
                if delivered:
                    self._deliver(frames)
                if len(pending) > self.max_frame_bytes + 4:
                    self._count("connections_dropped")
                    return
                now = time.monotonic()
                # A partial frame that began in this chunk starts its clock now (after _deliver:
                # time blocked on a full buffer is the source's backpressure, not the client's).
                if pending and (delivered or not had_partial):
                    frame_since = now
                idle_since = now
        except TimeoutError:
            self._count("connections_timed_out")
        except OSError:
            pass
        except ArrowflowError:
            self._count("connections_dropped")  # decoding failed under "fail", or closed
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._conns.discard(raw)
            conn.close()
            self._free_slot()

    def _split_lines(self, data: bytes) -> tuple[pa.Array | None, bytes]:
        """Complete lines of ``data`` as a binary array (newlines removed), vectorized; the rest."""
        arr = np.frombuffer(data, dtype=np.uint8)
        nl = np.flatnonzero(arr == _NL)
        if not len(nl):
            return None, data
        last = int(nl[-1])
        head = arr[: last + 1]
        body = head[head != _NL]
        ends = nl - np.arange(len(nl))  # each newline's position once earlier newlines are gone
        offsets = np.concatenate((np.zeros(1, dtype=np.int64), ends)).astype(np.int32)
        lengths = np.diff(offsets)
        if (lengths > self.max_frame_bytes).any():
            self._count("frames_too_large", int((lengths > self.max_frame_bytes).sum()))
            keep = np.flatnonzero(lengths <= self.max_frame_bytes)
            frames = pa.Array.from_buffers(
                pa.binary(), len(nl), [None, pa.py_buffer(offsets), pa.py_buffer(body.tobytes())]
            ).take(pa.array(keep))
            return frames, data[last + 1 :]
        frames = pa.Array.from_buffers(
            pa.binary(), len(nl), [None, pa.py_buffer(offsets), pa.py_buffer(body.tobytes())]
        )
        return frames, data[last + 1 :]

    def _split_lengths(self, data: bytes) -> tuple[pa.Array | None, bytes]:
        """Complete length-prefixed frames; the loop reads only the 4-byte headers."""
        starts: list[int] = []
        pos = 0
        n = len(data)
        while pos + 4 <= n:
            (size,) = struct.unpack_from(">I", data, pos)
            if size > self.max_frame_bytes:
                self._count("frames_too_large")
                return (self._frames(data, starts) if starts else None), b"\0" * (self.max_frame_bytes + 5)
            if pos + 4 + size > n:
                break
            starts.append(pos)
            pos += 4 + size
        if not starts:
            return None, data
        return self._frames(data, starts), data[pos:]

    @staticmethod
    def _frames(data: bytes, starts: list[int]) -> pa.Array:
        arr = np.frombuffer(data, dtype=np.uint8)
        st = np.asarray(starts, dtype=np.int64)
        sizes = np.array([struct.unpack_from(">I", data, s)[0] for s in starts], dtype=np.int64)
        # Gather the payload bytes (headers skipped) with one fancy index.
        idx = np.repeat(st + 4 - np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes) + np.arange(
            int(sizes.sum())
        )
        offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int32)
        return pa.Array.from_buffers(
            pa.binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(arr[idx].tobytes())]
        )

    def _deliver(self, frames: pa.Array) -> None:
        try:
            batch, _ = decode_with_policy(self.format, frames, self.error_policy)
        except SerializationError:
            self._count("frames_failed", len(frames))
            raise
        self._count("frames", len(frames))
        if batch.num_rows:
            self.buffer.offer(batch)  # blocks: TCP flow control pushes back on the client

    def close(self) -> None:
        """Stop listening, drop the connections, end the stream (buffered rows are still read)."""
        self._stopping = True
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.buffer.close()


_CONTENT_TYPES = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/json-seq": "ndjson",
    "text/csv": "csv",
    "application/vnd.apache.arrow.stream": "arrow",
}


def parse_body(kind: str, body: bytes, schema: pa.Schema | None) -> pa.RecordBatch:
    """One batch from a request body of ``kind`` (json, ndjson, csv, arrow); raises on bad input."""
    if kind == "json":
        doc = json.loads(body)
        rows = doc if isinstance(doc, list) else [doc]
        if not all(isinstance(r, dict) for r in rows):
            raise ValueError("a JSON body must be an object or an array of objects")
        return to_batch(rows, schema)
    if kind == "ndjson":
        import pyarrow.json as pajson

        opts = pajson.ParseOptions(explicit_schema=schema) if schema is not None else None
        table = pajson.read_json(io.BytesIO(body), parse_options=opts)
    elif kind == "csv":
        import pyarrow.csv as pacsv

        conv = pacsv.ConvertOptions(column_types=schema) if schema is not None else None
        table = pacsv.read_csv(io.BytesIO(body), convert_options=conv)
    else:
        import pyarrow.ipc as ipc

        try:
            table = ipc.open_stream(body).read_all()
        except OSError as exc:  # pyarrow reports a malformed stream as an I/O error: a bad body
            raise ValueError(f"not an Arrow IPC stream: {exc}") from None
        # The IPC reader checks buffer sizes only: offsets, dictionary indices and UTF-8 of an
        # untrusted body are checked before anything reads them (ArrowInvalid: a 400).
        table.validate(full=True)
    return to_batch(table, schema)


class HttpPushSource(_PushSource):
    """An HTTP endpoint that accepts POSTed rows. See the module docstring."""

    name = "http-push"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/",
        schema: pa.Schema | None = None,
        max_body_bytes: int = 16 << 20,
        token: Secret | str | None = None,
        capacity: int = 100_000,
        accept_timeout: float = 0.5,
        header_timeout: float | None = 10.0,
        body_timeout: float | None = 30.0,
        max_connections: int = 64,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(
            host,
            port,
            capacity,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            max_connections=max_connections,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
        check_type("path", path, str)
        check_type("schema", schema, pa.Schema, allow_none=True)
        check_type("max_body_bytes", max_body_bytes, int)
        check_positive("max_body_bytes", max_body_bytes)
        check_type("token", token, (Secret, str), allow_none=True)
        check_type("accept_timeout", accept_timeout, (int, float))
        self.path = path
        self._schema = schema
        self.max_body_bytes = max_body_bytes
        self.token = Secret(token) if isinstance(token, str) else token
        self.accept_timeout = float(accept_timeout)
        self._server: ThreadingHTTPServer | None = None
        self._closed = False
        self._rejects: queue.Queue[socket.socket | None] = queue.Queue(maxsize=256)

    @property
    def schema(self) -> pa.Schema | None:
        return self._schema

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise ArrowflowError("HttpPushSource is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"{'https' if self.tls else 'http'}://{host}:{port}{self.path}"

    def _listen(self) -> None:
        source = self
        ctx = server_tls_context(self.tls_cert, self.tls_key)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: with Nagle on, a keep-alive client waits for
            # the delayed ACK (~40 ms) on every request.
            disable_nagle_algorithm = True

            def setup(self) -> None:
                # StreamRequestHandler.setup, with TLS first and a reader whose reads share one
                # deadline per part of the request (socket timeouts alone bound each read only).
                if self.disable_nagle_algorithm:
                    self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
                self.connection = source._handshake(self.request, ctx)
                self.reader = _DeadlineReader(self.connection)
                self.rfile = io.BufferedReader(self.reader)
                self.wfile = _SocketWriter(self.connection)

            def finish(self) -> None:
                self.rfile.close()
                if self.connection is not self.request:
                    self.connection.close()  # the TLS socket (the server closes the plain one)

            def handle_one_request(self) -> None:
                self.reader.deadline = _deadline(source.header_timeout)
                super().handle_one_request()
                if self.reader.expired:
                    source._count("connections_timed_out")  # closed by the base class

            def parse_request(self) -> bool:
                ok = super().parse_request()
                self.reader.deadline = _deadline(source.body_timeout)
                return ok

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, doc: Mapping[str, Any], headers: Mapping[str, str] = {}) -> None:
                body = json.dumps(doc).encode()
                # A client that does not read its answer holds the thread at most this long.
                self.connection.settimeout(source.body_timeout)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)
                source._count(f"http_{status}")

            def do_GET(self) -> None:
                self._answer(405, {"error": "use POST"}, {"Allow": "POST"})

            do_PUT = do_DELETE = do_GET

            def do_POST(self) -> None:
                try:
                    status, doc, headers = source._handle(self)
                except TimeoutError:  # counted by handle_one_request (the reader expired)
                    status, doc, headers = 408, {"error": "the body did not arrive within body_timeout"}, {}
                if status in (408, 411, 413):
                    self.close_connection = True  # the body was not (all) read
                    headers = {**headers, "Connection": "close"}
                self._answer(status, doc, headers)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

            def process_request(self, request: Any, client_address: Any) -> None:
                if not source._take_slot():
                    source._reject(request)  # over max_connections: 503, off this thread
                    return
                try:
                    super().process_request(request, client_address)
                except BaseException:
                    source._free_slot()
                    raise

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    source._free_slot()

            def handle_error(self, request: Any, client_address: Any) -> None:
                source._count("http_connection_errors")

        self._server = Server((self.host, self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="http-push", daemon=True).start()
        threading.Thread(target=self._reject_loop, name="http-push-503", daemon=True).start()

    def _reject(self, sock: socket.socket) -> None:
        """Hand an excess connection to the thread that answers 503 (closed at once when its queue
        is full, or with TLS, where an answer would need the handshake)."""
        if not self.tls:
            try:
                self._rejects.put_nowait(sock)
                return
            except queue.Full:
                pass
        sock.close()

    def _reject_loop(self) -> None:
        """Answer each excess connection ``503`` and close it: one thread, a short deadline each."""
        while True:
            sock = self._rejects.get()
            if sock is None:
                return
            try:
                sock.settimeout(1.0)
                sock.sendall(_BUSY)
                sock.shutdown(socket.SHUT_WR)
                # Read what the client sent (up to the deadline): closing with unread bytes would
                # reset the connection before the client reads the 503.
                end = time.monotonic() + 1.0
                while time.monotonic() < end and sock.recv(1 << 16):
                    pass
            except OSError:
                pass
            finally:
                sock.close()

    def _handle(self, req: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Decide the answer to one POST; reads the body only when it may be accepted."""
        if req.path.split("?", 1)[0] != self.path:
            return 404, {"error": f"no such path; POST to {self.path}"}, {}
        if self.token is not None:
            given = req.headers.get("Authorization", "")
            expected = f"Bearer {reveal(self.token)}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return 401, {"error": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"}
        if self._closed:
            return 503, {"error": "the source is closed"}, {}
        length = req.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return 411, {"error": "Content-Length required (chunked bodies are not accepted)"}, {}
        size = int(length)
        if size > self.max_body_bytes:
            return 413, {"error": f"body of {size} bytes exceeds max_body_bytes={self.max_body_bytes}"}, {}
        ctype = (req.headers.get("Content-Type") or "application/json").split(";", 1)[0].strip().lower()
        kind = _CONTENT_TYPES.get(ctype)
        body = req.rfile.read(size)
        if kind is None:
            return (
                415,
                {"error": f"unsupported Content-Type {ctype!r}; use one of {sorted(_CONTENT_TYPES)}"},
                {},
            )
        try:
            batch = parse_body(kind, body, self._schema)
        except (ValueError, TypeError, pa.ArrowException, SerializationError) as exc:
            self._count("bodies_rejected")
            return 400, {"error": f"{type(exc).__name__}: {exc}"[:1000]}, {}
        try:
            accepted = self.buffer.offer(batch, self.accept_timeout)
        except ConnectorError:
            return 503, {"error": "the source is closed"}, {}
        if not accepted:
            self._count("rows_refused", batch.num_rows)
            return 429, {"error": "backpressure: the pipeline is behind, retry later"}, {"Retry-After": "1"}
        return 200, {"accepted": batch.num_rows}, {}

    def close(self) -> None:
        """Stop accepting (new requests get 503 until the server stops), end the stream."""
        self._closed = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            try:
                self._rejects.put_nowait(None)
            except queue.Full:
                pass
        self.buffer.close()


_BUSY_BODY = b'{"error": "too many connections (max_connections), retry later"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


class _DeadlineReader(io.RawIOBase):
    """A socket's reads under one deadline (``time.monotonic()`` value, None = no limit) for a whole
    part of a request: each read may wait only for what is left of it, so dribbling bytes in does
    not extend it. ``expired`` tells whether a read ran out of time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline: float | None = None
        self.expired = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.deadline is None:
            self.sock.settimeout(None)
        else:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.expired = True
                raise TimeoutError("read deadline passed")
            self.sock.settimeout(left)
        try:
            return self.sock.recv_into(b)
        except TimeoutError:
            self.expired = True
            raise


class _SocketWriter(io.BufferedIOBase):
    """Unbuffered writes to a socket (what ``StreamRequestHandler`` uses with ``wbufsize=0``)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._sock.sendall(b)
        with memoryview(b) as view:
            return view.nbytes
