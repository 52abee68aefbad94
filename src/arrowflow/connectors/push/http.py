"""The HTTP push source: :class:`HttpPushSource` (see :mod:`arrowflow.connectors.push`)."""

from __future__ import annotations

import hmac
import io
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyarrow as pa

from ...config import Secret, resolve_config, reveal
from ...errors import ArrowflowError, ConnectorError, SerializationError
from ..queue.buffer import to_batch
from ._server import PushSource
from .config import HttpPushSourceConfig, server_tls_context

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


class HttpPushSource(PushSource):
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
        config: HttpPushSourceConfig | None = None,
    ) -> None:
        self.config = c = resolve_config(HttpPushSourceConfig, config, locals())
        super().__init__(c)
        self.path = c.path
        self._schema = c.schema
        self.max_body_bytes = c.max_body_bytes
        self.token: Secret | None = c.token  # type: ignore[assignment]  # a str became a Secret
        self.accept_timeout = c.accept_timeout
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
