"""FAULT-INJECTING PROTOCOL TEST SERVERS, NOT APACHE FLUME, and the suite's own copy of Flume's protocol.

The Flume suite runs against a real Apache Flume 1.11 agent (``tests/services/flume.sh``). These two
loopback servers exist only for what that agent cannot be made to do on demand: answer a request
with a *transient* failure and then succeed (HTTP 503/429/500, Avro ``FAILED``/``UNKNOWN``), or
with a *fatal* one (HTTP 400, an Avro error response), and show how many events each request held.

Nothing here comes from arrowflow: the protocol, the handshake records and the framing are written
from Flume's sources and the Avro specification, so a mistake in arrowflow's encoder is not
mirrored here.

* :data:`AVRO_SOURCE_PROTOCOL` -- ``flume-ng-sdk/src/main/avro/flume.avdl`` (Flume 1.11.0)::

      @namespace("org.apache.flume.source.avro")
      protocol AvroSourceProtocol {
        enum Status { OK, FAILED, UNKNOWN }
        record AvroFlumeEvent { map<string> headers; bytes body; }
        Status append( AvroFlumeEvent event );
        Status appendBatch( array<AvroFlumeEvent> events );
      }

  as Avro protocol JSON (the real agent declares exactly this, plus the license text as ``doc``:
  ``test_flume.py`` checks it against the agent's own handshake answer).
* :class:`FlumeHttpTestServer` -- ``HTTPSource`` with ``JSONHandler``: a POST body is a JSON array
  of ``{"headers": {string: string}, "body": string}``, parsed as Gson parses it into
  ``List<JSONEvent>`` (:func:`parse_json_events`; ``test_flume.py`` posts the same bodies to the real
  agent and to this server and compares the answers).
* :class:`FlumeAvroTestServer` -- ``AvroSource``: Avro IPC over Netty framing (a frame is
  ``serial:int32, count:int32`` then ``count`` times ``length:int32 + bytes``, big-endian; the answer
  frame carries the request's serial). The first call of a connection starts with a
  ``HandshakeRequest``; the server answers ``BOTH`` / ``CLIENT`` / ``NONE`` by the Avro
  specification's rules, reads the call's parameters with the *client's* declared message schema
  resolved to its own (as Avro's Java ``Responder`` does), and answers in several small buffers
  (the Java server may split an answer anywhere; a client must join the buffers).
"""

from __future__ import annotations

import hashlib
import http.client
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

from arrowflow.testing import TcpServer

NAMESPACE = "org.apache.flume.source.avro"
#: Flume's ``AvroSourceProtocol`` (``flume.avdl``, see the module docstring) as Avro protocol JSON.
AVRO_SOURCE_PROTOCOL: dict[str, Any] = {
    "protocol": "AvroSourceProtocol",
    "namespace": NAMESPACE,
    "types": [
        {"type": "enum", "name": "Status", "symbols": ["OK", "FAILED", "UNKNOWN"]},
        {
            "type": "record",
            "name": "AvroFlumeEvent",
            "fields": [
                {"name": "headers", "type": {"type": "map", "values": "string"}},
                {"name": "body", "type": "bytes"},
            ],
        },
    ],
    "messages": {
        "append": {"request": [{"name": "event", "type": "AvroFlumeEvent"}], "response": "Status"},
        "appendBatch": {
            "request": [{"name": "events", "type": {"type": "array", "items": "AvroFlumeEvent"}}],
            "response": "Status",
        },
    },
}
#: ``AvroFlumeEvent`` as a standalone schema (for fastavro).
EVENT_SCHEMA: dict[str, Any] = {"namespace": NAMESPACE, **AVRO_SOURCE_PROTOCOL["types"][1]}

# Avro specification, "Protocol Wire Format" / "Handshake".
_MD5: dict[str, Any] = {"type": "fixed", "name": "MD5", "namespace": "org.apache.avro.ipc", "size": 16}
HANDSHAKE_REQUEST = fastavro.parse_schema(
    {
        "type": "record",
        "name": "HandshakeRequest",
        "namespace": "org.apache.avro.ipc",
        "fields": [
            {"name": "clientHash", "type": _MD5},
            {"name": "clientProtocol", "type": ["null", "string"]},
            {"name": "serverHash", "type": "MD5"},
            {"name": "meta", "type": ["null", {"type": "map", "values": "bytes"}]},
        ],
    }
)
HANDSHAKE_RESPONSE = fastavro.parse_schema(
    {
        "type": "record",
        "name": "HandshakeResponse",
        "namespace": "org.apache.avro.ipc",
        "fields": [
            {
                "name": "match",
                "type": {"type": "enum", "name": "HandshakeMatch", "symbols": ["BOTH", "CLIENT", "NONE"]},
            },
            {"name": "serverProtocol", "type": ["null", "string"]},
            {"name": "serverHash", "type": ["null", _MD5]},
            {"name": "meta", "type": ["null", {"type": "map", "values": "bytes"}]},
        ],
    }
)
CALL_META = fastavro.parse_schema({"type": "map", "values": "bytes"})


@dataclass
class Event:
    """One received Flume event."""

    headers: dict[str, Any]
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

    def __init__(self, *, port: int = 0) -> None:
        self.recorder = Recorder()
        self.script: deque[int] = deque()
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
                    with server.recorder.lock:
                        server.recorder.rejected += 1
                    self._answer(forced, "scripted answer")
                    return
                try:
                    events = parse_json_events(raw)
                except (ValueError, ServerError) as exc:
                    # JSONHandler throws HTTPBadRequestException -> HTTPSource answers 400; any other
                    # exception -> 500.
                    with server.recorder.lock:
                        server.recorder.rejected += 1
                    self._answer(500 if isinstance(exc, ServerError) else 400, f"{exc}")
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


class _Object:
    """A JSON object as its ``(key, value)`` pairs in document order (repeats kept)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


class ServerError(Exception):
    """What HTTPSource answers 500 to (JSONHandler fails with a NullPointerException)."""


def _text(value: Any, what: str) -> str | None:
    """Gson's String adapter: a string, or the literal text of a number or boolean; null stays null."""
    if value is None or isinstance(value, str):  # numbers arrive as their literal text (parse_*=str)
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    raise ValueError(f"{what} must be a string")


def parse_json_events(raw: bytes) -> list[Event]:
    """The events JSONHandler (Gson into ``List<JSONEvent>``) makes of a UTF-8 request body.

    ValueError = ``JsonSyntaxException`` (HTTPSource answers 400): not an array, an element that is
    not an object, a header or body that is an array or object, a key repeated inside ``headers``
    (a ``Map``; a repeated field of the event object itself just overwrites, as Gson's reflective
    adapter does), trailing text. :class:`ServerError` (500): an empty body or a ``null`` element.
    """
    if not raw.strip():
        raise ServerError("empty request body")
    doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_Object, parse_int=str, parse_float=str)
    if not isinstance(doc, list):
        raise ValueError("the request body is not a JSON array")
    events = []
    for item in doc:
        if item is None:
            raise ServerError("null event")
        if not isinstance(item, _Object):
            raise ValueError(f"not an event object: {item!r:.80}")
        fields = dict(item.pairs)
        headers: dict[str, Any] = {}
        if isinstance(fields.get("headers"), _Object):
            for key, value in fields["headers"].pairs:
                if key in headers:
                    raise ValueError(f"duplicate key: {key}")
                headers[key] = _text(value, f"header {key!r}")
        elif fields.get("headers") is not None:
            raise ValueError("headers must be an object")
        body = _text(fields.get("body"), "body") or ""
        events.append(Event(headers, body.encode("utf-8")))
    return events


# -- Avro IPC over Netty framing ---------------------------------------------------------------------

_PROTOCOL_TEXT = json.dumps(AVRO_SOURCE_PROTOCOL)
_SERVER_HASH = hashlib.md5(_PROTOCOL_TEXT.encode()).digest()
_STATUS = {"OK": 0, "FAILED": 1, "UNKNOWN": 2}


def request_schemas(protocol: dict[str, Any]) -> dict[str, Any]:
    """``{message name: parsed record schema of its parameters}`` of an Avro protocol (JSON)."""
    named: dict[str, Any] = {}
    namespace = protocol.get("namespace")
    for declared in protocol.get("types", []):
        fastavro.parse_schema({"namespace": namespace, **declared}, named_schemas=named)
    return {
        name: fastavro.parse_schema(
            {"type": "record", "name": f"{name}_request", "namespace": namespace, "fields": m["request"]},
            named_schemas=named,
        )
        for name, m in protocol["messages"].items()
    }


_SERVER_REQUESTS = request_schemas(AVRO_SOURCE_PROTOCOL)


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


def read_frame(conn: socket.socket) -> tuple[int, list[bytes]] | None:
    """``(serial, buffers)`` of one Netty-framed Avro message, or None at a clean end of stream."""
    header = _read_exact(conn, 8)
    if header is None:
        return None
    serial, count = struct.unpack(">ii", header)
    buffers = []
    for _ in range(count):
        length_bytes = _read_exact(conn, 4)
        assert length_bytes is not None, "connection closed inside a frame"
        (length,) = struct.unpack(">i", length_bytes)
        data = _read_exact(conn, length)
        assert data is not None, "connection closed inside a frame"
        buffers.append(data)
    return serial, buffers


def frame(serial: int, buffers: list[bytes]) -> bytes:
    """One Netty-framed Avro message holding ``buffers``."""
    return struct.pack(">ii", serial, len(buffers)) + b"".join(struct.pack(">i", len(b)) + b for b in buffers)


class FlumeAvroTestServer:
    """Protocol test server for Flume's AvroSource (Avro IPC over Netty framing; not Apache Flume).

    ``script`` is a queue of answers for the next calls: ``"OK"``, ``"FAILED"``, ``"UNKNOWN"``
    (statuses; only ``OK`` stores the events) or ``"ERROR"`` (an Avro error response).
    ``handshakes`` lists the ``(clientHash, clientProtocol is not None, match)`` of each handshake;
    ``frames`` the number of buffers of each received frame. Answers are cut into buffers of at most
    ``answer_buffer`` bytes, and the handshake, the call metadata and the response each start a new one.
    """

    def __init__(self, *, port: int = 0, answer_buffer: int = 3) -> None:
        self.recorder = Recorder()
        self.script: deque[str] = deque()
        self.handshakes: list[tuple[bytes, bool, str]] = []
        self.known_protocols: dict[bytes, dict[str, Any]] = {}
        self.frames: list[int] = []
        self.answer_buffer = answer_buffer
        self._server = TcpServer(self._serve, port=port)
        self.port = self._server.port
        self.address = f"127.0.0.1:{self.port}"

    @property
    def errors(self) -> list[BaseException]:
        return self._server.errors

    def stop(self) -> None:
        self._server.stop()

    def _serve(self, conn: socket.socket) -> None:
        remote: dict[str, Any] | None = None  # the client's message schemas once handshaken
        try:
            while (received := read_frame(conn)) is not None:
                serial, buffers = received
                with self.recorder.lock:
                    self.frames.append(len(buffers))
                parts, remote = self._respond(io.BytesIO(b"".join(buffers)), remote)
                cut = [
                    p[i : i + self.answer_buffer] for p in parts for i in range(0, len(p), self.answer_buffer)
                ]
                conn.sendall(frame(serial, cut))
        finally:
            conn.close()

    def _handshake(self, request: io.BytesIO) -> tuple[bytes, dict[str, Any] | None]:
        shake = fastavro.schemaless_reader(request, HANDSHAKE_REQUEST)
        assert isinstance(shake, dict)
        client_hash = shake["clientHash"]
        if shake["clientProtocol"] is not None:
            protocol = json.loads(shake["clientProtocol"])
            assert hashlib.md5(shake["clientProtocol"].encode()).digest() == client_hash, (
                "clientHash is not the MD5 of clientProtocol"
            )
            self.known_protocols[client_hash] = request_schemas(protocol)
        if client_hash not in self.known_protocols:
            match = "NONE"
        elif shake["serverHash"] == _SERVER_HASH:
            match = "BOTH"
        else:
            match = "CLIENT"
        self.handshakes.append((client_hash, shake["clientProtocol"] is not None, match))
        both = match == "BOTH"
        answer = _write(
            HANDSHAKE_RESPONSE,
            {
                "match": match,
                "serverProtocol": None if both else _PROTOCOL_TEXT,
                "serverHash": None if both else _SERVER_HASH,
                "meta": None,
            },
        )
        return answer, self.known_protocols.get(client_hash)

    def _respond(
        self, request: io.BytesIO, remote: dict[str, Any] | None
    ) -> tuple[list[bytes], dict[str, Any] | None]:
        parts = []
        if remote is None:
            shake, remote = self._handshake(request)
            parts.append(shake)
            if remote is None:
                return parts, None  # NONE: no call answer; the client must resend with its protocol
        fastavro.schemaless_reader(request, CALL_META)
        name = request.read(_read_long(request)).decode()
        assert name in remote and name in _SERVER_REQUESTS, f"unknown message {name!r}"
        # The client's declared parameters as the writer schema, resolved to the server's own.
        params = fastavro.schemaless_reader(request, remote[name], _SERVER_REQUESTS[name])
        assert request.read() == b"", "trailing bytes after the call parameters"
        assert isinstance(params, dict)
        events = params["events"] if name == "appendBatch" else [params["event"]]
        with self.recorder.lock:
            answer = self.script.popleft() if self.script else "OK"
            if answer == "OK":
                self.recorder.requests.append([Event(dict(e["headers"]), bytes(e["body"])) for e in events])
            else:
                self.recorder.rejected += 1
        parts.append(_write(CALL_META, {}))
        if answer == "ERROR":
            # Error flag, then the union ["string"] (AvroSourceProtocol declares no errors).
            text = b"scripted error"
            parts.append(b"\x01\x00" + _long(len(text)) + text)
        else:
            parts.append(b"\x00" + _long(_STATUS[answer]))
        return parts, remote


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


# -- reference clients (the suite's own, independent of arrowflow) ------------------------------------


def post_json_events(port: int, events: list[Event]) -> int:
    """POST ``events`` to an HTTPSource (JSONHandler) on ``port``; the HTTP status."""
    body = json.dumps([{"headers": e.headers, "body": e.body.decode("utf-8")} for e in events])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(
            "POST", "/", body=body.encode(), headers={"Content-Type": "application/json; charset=UTF-8"}
        )
        return conn.getresponse().status
    finally:
        conn.close()


def append_batch(port: int, events: list[Event]) -> str:
    """Call ``appendBatch(events)`` on an AvroSource on ``port`` (handshake with this module's copy
    of the protocol); the returned ``Status``."""
    shake = {
        "clientHash": _SERVER_HASH,
        "clientProtocol": _PROTOCOL_TEXT,
        "serverHash": _SERVER_HASH,
        "meta": None,
    }
    call = _write(CALL_META, {}) + _long(len("appendBatch")) + b"appendBatch"
    params = {"events": [{"headers": e.headers, "body": e.body} for e in events]}
    payload = _write(HANDSHAKE_REQUEST, shake) + call + _write(_SERVER_REQUESTS["appendBatch"], params)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(frame(1, [payload]))
        received = read_frame(conn)
    assert received is not None, "the AvroSource closed the connection"
    answer = io.BytesIO(b"".join(received[1]))
    match = fastavro.schemaless_reader(answer, HANDSHAKE_RESPONSE)
    assert isinstance(match, dict) and match["match"] != "NONE", match
    fastavro.schemaless_reader(answer, CALL_META)
    assert answer.read(1) == b"\x00", "an error response"
    return ["OK", "FAILED", "UNKNOWN"][_read_long(answer)]


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
