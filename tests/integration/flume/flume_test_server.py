"""PROTOCOL TEST SERVERS, NOT APACHE FLUME.

No Flume agent can be installed here, so these two loopback servers speak the two wire protocols of
a Flume agent's sources, written from the Flume User Guide and the Avro specification. They are
independent of arrowflow's encoder (events are decoded with ``json`` and ``fastavro``) and they
record what they received, so tests can compare it with what was written:

* :class:`FlumeHttpTestServer` -- Flume's ``HTTPSource`` with the default ``JSONHandler``: a POST
  body is a JSON array of ``{"headers": {string: string}, "body": string}`` objects. Answers 200
  when the events were stored, 400 when the body is not such an array (``HTTPBadRequestException``)
  and, on command (:attr:`script`), 503 (channel full, ``ChannelException``) or any other status.
* :class:`FlumeAvroTestServer` -- Flume's ``AvroSource``: Avro IPC over Netty framing (each frame is
  ``serial:int32, count:int32`` then ``count`` times ``length:int32 + bytes``, big-endian; the
  answer frame carries the request's serial). The first call on a connection starts with a
  ``HandshakeRequest``; the server answers ``BOTH`` when it knows the client's protocol hash and the
  client guessed the server's, ``CLIENT`` when it knows the client's protocol but the guess was
  wrong, and ``NONE`` (with its own protocol, and no call answer) when it does not know the client's
  protocol -- the Avro specification's rules. It decodes ``appendBatch`` / ``append`` calls and
  answers ``OK``, or on command ``FAILED`` / ``UNKNOWN`` / an Avro error response.

When ``ARROWFLOW_FLUME_HTTP`` / ``ARROWFLOW_FLUME_AVRO`` is set, the test suite also runs against a
real agent at that address; these servers are only stand-ins for it.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fastavro

from arrowflow.connectors.flume import AVRO_SOURCE_PROTOCOL, HANDSHAKE_REQUEST, HANDSHAKE_RESPONSE
from arrowflow.testing import TcpServer


@dataclass
class Event:
    """One received Flume event."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """What a protocol test server received: the stored events of each accepted request."""

    requests: list[list[Event]] = field(default_factory=list)
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def events(self) -> list[Event]:
        with self.lock:
            return [e for r in self.requests for e in r]

    def request_sizes(self) -> list[int]:
        with self.lock:
            return [len(r) for r in self.requests]


# -- HTTP ------------------------------------------------------------------------------------------


class FlumeHttpTestServer:
    """Protocol test server for Flume's HTTPSource + JSONHandler (not Apache Flume).

    ``script`` is a queue of HTTP statuses to answer the next requests with instead of storing
    them (e.g. ``[503, 503]``: channel full twice). ``port=0`` picks a free port.
    """

    def __init__(self, *, port: int = 0, charset: str = "utf-8") -> None:
        self.recorder = Recorder()
        self.script: deque[int] = deque()
        self.charset = charset
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, text: str = "") -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server.recorder.lock:
                    forced = server.script.popleft() if server.script else None
                if forced is not None:
                    server.recorder.rejected += 1
                    self._answer(forced, "scripted answer")
                    return
                try:
                    events = _parse_json_events(raw, server.charset)
                except (ValueError, TypeError) as exc:
                    # JSONHandler throws HTTPBadRequestException -> HTTPSource answers 400.
                    with server.recorder.lock:
                        server.recorder.rejected += 1
                    self._answer(400, f"bad request: {exc}")
                    return
                with server.recorder.lock:
                    server.recorder.requests.append(events)
                self._answer(200)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def _parse_json_events(raw: bytes, charset: str) -> list[Event]:
    """What JSONHandler accepts: a JSON array of {"headers": {str: str}, "body": str} objects."""
    doc = json.loads(raw.decode(charset))
    if not isinstance(doc, list):
        raise ValueError("the request body is not a JSON array")
    events = []
    for item in doc:
        if not isinstance(item, dict) or not isinstance(item.get("body", ""), str):
            raise ValueError(f"not an event object: {item!r:.80}")
        headers = item.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ValueError(f"headers must map strings to strings: {headers!r:.80}")
        events.append(Event(headers, item.get("body", "").encode(charset)))
    return events


# -- Avro IPC over Netty framing ---------------------------------------------------------------------

_PROTOCOL_TEXT = json.dumps(AVRO_SOURCE_PROTOCOL)
_SERVER_HASH = hashlib.md5(_PROTOCOL_TEXT.encode()).digest()
_EVENT = fastavro.parse_schema(
    {"namespace": "org.apache.flume.source.avro", **AVRO_SOURCE_PROTOCOL["types"][1]}
)
_EVENTS = fastavro.parse_schema({"type": "array", "items": _EVENT})
_REQ = fastavro.parse_schema(HANDSHAKE_REQUEST)
_RESP = fastavro.parse_schema(HANDSHAKE_RESPONSE)
_META = fastavro.parse_schema({"type": "map", "values": "bytes"})
_STATUS = {"OK": 0, "FAILED": 1, "UNKNOWN": 2}


def _write(schema: Any, value: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, value)
    return out.getvalue()


def _read_exact(conn: socket.socket, n: int) -> bytes | None:
    parts = []
    while n:
        chunk = conn.recv(n)
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


class FlumeAvroTestServer:
    """Protocol test server for Flume's AvroSource (Avro IPC over Netty framing; not Apache Flume).

    ``script`` is a queue of answers for the next calls: ``"OK"``, ``"FAILED"``, ``"UNKNOWN"``
    (statuses; only ``OK`` stores the events) or ``"ERROR"`` (an Avro error response).
    ``handshakes`` lists the ``(clientHash, clientProtocol is not None, match)`` of each handshake.
    """

    def __init__(self, *, port: int = 0) -> None:
        self.recorder = Recorder()
        self.script: deque[str] = deque()
        self.handshakes: list[tuple[bytes, bool, str]] = []
        self.known_protocols: dict[bytes, str] = {}
        self.frames: list[int] = []  # buffers per received frame
        self._server = TcpServer(self._serve, port=port)
        self.port = self._server.port
        self.address = f"127.0.0.1:{self.port}"

    @property
    def errors(self) -> list[BaseException]:
        return self._server.errors

    def stop(self) -> None:
        self._server.stop()

    def _serve(self, conn: socket.socket) -> None:
        connected = False
        try:
            while True:
                header = _read_exact(conn, 8)
                if header is None:
                    return
                serial, count = struct.unpack(">ii", header)
                buffers = []
                for _ in range(count):
                    length_bytes = _read_exact(conn, 4)
                    assert length_bytes is not None, "connection closed inside a frame"
                    (length,) = struct.unpack(">i", length_bytes)
                    data = _read_exact(conn, length)
                    assert data is not None, "connection closed inside a frame"
                    buffers.append(data)
                with self.recorder.lock:
                    self.frames.append(count)
                answer, connected = self._respond(io.BytesIO(b"".join(buffers)), connected)
                conn.sendall(struct.pack(">ii", serial, 1) + struct.pack(">i", len(answer)) + answer)
        finally:
            conn.close()

    def _respond(self, request: io.BytesIO, connected: bool) -> tuple[bytes, bool]:
        out = b""
        if not connected:
            shake = fastavro.schemaless_reader(request, _REQ)
            assert isinstance(shake, dict)
            client_hash = shake["clientHash"]
            if shake["clientProtocol"] is not None:
                self.known_protocols[client_hash] = shake["clientProtocol"]
            if client_hash not in self.known_protocols:
                match = "NONE"
            elif shake["serverHash"] == _SERVER_HASH:
                match = "BOTH"
            else:
                match = "CLIENT"
            self.handshakes.append((client_hash, shake["clientProtocol"] is not None, match))
            both = match == "BOTH"
            out += _write(
                _RESP,
                {
                    "match": match,
                    "serverProtocol": None if both else _PROTOCOL_TEXT,
                    "serverHash": None if both else _SERVER_HASH,
                    "meta": None,
                },
            )
            if match == "NONE":
                return out, False  # no call answer: the client must resend with its protocol
            connected = True
        fastavro.schemaless_reader(request, _META)
        name = request.read(_read_long(request)).decode()
        if name == "appendBatch":
            events = fastavro.schemaless_reader(request, _EVENTS)
        elif name == "append":
            events = [fastavro.schemaless_reader(request, _EVENT)]
        else:
            raise AssertionError(f"unknown message {name!r}")
        assert request.read() == b"", "trailing bytes after the call parameters"
        assert isinstance(events, list)
        with self.recorder.lock:
            answer = self.script.popleft() if self.script else "OK"
            if answer == "OK":
                self.recorder.requests.append([Event(dict(e["headers"]), bytes(e["body"])) for e in events])
            else:
                self.recorder.rejected += 1
        out += _write(_META, {})
        if answer == "ERROR":
            # Error flag, then the union ["string"] (AvroSourceProtocol declares no errors).
            text = b"scripted error"
            return out + b"\x01\x00" + _long(len(text)) + text, connected
        return out + b"\x00" + _long(_STATUS[answer]), connected


def _long(value: int) -> bytes:
    z = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def _read_long(stream: io.BytesIO) -> int:
    shift = value = 0
    while True:
        b = stream.read(1)[0]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1)
        shift += 7


@contextmanager
def protocol_test_server(
    protocol: str, *, port: int = 0
) -> Iterator[FlumeHttpTestServer | FlumeAvroTestServer]:
    """A running protocol test server (not Apache Flume) for ``"http"`` or ``"avro"``; stopped after."""
    server: FlumeHttpTestServer | FlumeAvroTestServer = (
        FlumeHttpTestServer(port=port) if protocol == "http" else FlumeAvroTestServer(port=port)
    )
    try:
        yield server
    finally:
        server.stop()


def address_of(server: FlumeHttpTestServer | FlumeAvroTestServer) -> str:
    return server.url if isinstance(server, FlumeHttpTestServer) else server.address
