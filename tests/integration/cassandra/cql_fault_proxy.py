"""A fault-injecting TCP proxy in front of the real Cassandra, for the sink's retry path.

Cassandra cannot be made to answer a chosen write with ``WriteTimeout`` or ``Overloaded`` on demand,
so the retry tests put this proxy between the driver and the real server. It forwards every CQL frame
both ways unchanged, counts the request opcodes it forwarded, and answers an EXECUTE or BATCH request
that binds one of the armed ``bigint`` keys with the armed error frame itself (the request never
reaches Cassandra), a number of times or forever. Everything else, the data the tests read back
included, is the real server's.

Clients must speak native protocol v4 without compression (``protocol_version=4,
compression=False``): v5 wraps frames in checksummed segments and compression hides the bound values,
and v4 is all the retry path needs. The key match looks for the serialized value (``[int 8][long
key]``) in the request body, so armed keys should be values no other bound column holds.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CqlFaultProxy"]

_HEADER = struct.Struct(">BBhBI")  # version, flags, stream, opcode, body length
OPCODES = {0x01: "startup", 0x05: "options", 0x07: "query", 0x09: "prepare", 0x0A: "execute"}
OPCODES.update({0x0B: "register", 0x0D: "batch"})
_EXECUTE, _BATCH = 0x0A, 0x0D
_ERROR = 0x00
# Error codes of native_protocol_v4.spec section 9.
_CODES = {"server_error": 0x0000, "overloaded": 0x1001, "write_timeout": 0x1100, "invalid": 0x2200}


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def _error_body(kind: str) -> bytes:
    body = struct.pack(">i", _CODES[kind]) + _string(f"injected {kind} by the test proxy")
    if kind == "write_timeout":
        # <consistency ONE><received 0><blockfor 1><writeType SIMPLE>
        body += struct.pack(">Hii", 0x0001, 0, 1) + _string("SIMPLE")
    return body


@dataclass
class _Fault:
    needle: bytes
    kind: str
    times: int | None  # None: forever
    hits: int = 0


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(sock: socket.socket) -> tuple[bytes, bytes] | None:
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    length = _HEADER.unpack(header)[4]
    body = _recv_exact(sock, length) if length else b""
    return None if body is None else (header, body)


class CqlFaultProxy:
    """Listens on 127.0.0.1 (a free port: :attr:`port`) and forwards to ``upstream`` (host, port)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.requests: Counter[str] = Counter()
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = False
        #: Why the proxy dropped a connection it cannot read (a client not on v4 without compression).
        self.error: str | None = None
        threading.Thread(target=self._accept, name="cql-proxy-accept", daemon=True).start()

    def inject(self, keys: Iterable[int], kind: str, *, times: int | None = None) -> None:
        """Answer writes binding any of the ``bigint`` ``keys`` with ``kind`` (``write_timeout``,
        ``overloaded``, ``invalid``, ``server_error``), ``times`` times per key or forever."""
        if kind not in _CODES:
            raise ValueError(f"unknown fault {kind!r}; known: {sorted(_CODES)}")
        with self._lock:
            for k in keys:
                self._faults.append(_Fault(struct.pack(">iq", 8, k), kind, times))

    def injected(self) -> int:
        """How many requests the proxy answered with an injected error."""
        with self._lock:
            return sum(f.hits for f in self._faults)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    # -------------------------------------------------------------------------------- forwarding

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            write_lock = threading.Lock()  # whole frames only on the client socket (two writers)
            threading.Thread(target=self._requests, args=(client, server, write_lock), daemon=True).start()
            threading.Thread(target=self._responses, args=(server, client, write_lock), daemon=True).start()

    def _fault_for(self, opcode: int, body: bytes) -> str | None:
        if opcode not in (_EXECUTE, _BATCH):
            return None
        with self._lock:
            for f in self._faults:
                if (f.times is None or f.hits < f.times) and f.needle in body:
                    f.hits += 1
                    return f.kind
        return None

    def _requests(self, client: socket.socket, server: socket.socket, write_lock: threading.Lock) -> None:
        try:
            while (frame := _read_frame(client)) is not None:
                header, body = frame
                version, flags, stream, opcode, _ = _HEADER.unpack(header)
                if version != 0x04 or flags & 0x01:
                    self.error = (
                        "the fault proxy needs protocol_version=4 and compression=False, "
                        f"got version {version:#x} flags {flags:#x}"
                    )
                    return
                kind = self._fault_for(opcode, body)
                if kind is not None:
                    err = _error_body(kind)
                    with write_lock:
                        client.sendall(_HEADER.pack(0x84, 0, stream, _ERROR, len(err)) + err)
                    continue
                with self._lock:
                    self.requests[OPCODES.get(opcode, hex(opcode))] += 1
                server.sendall(header + body)
        except OSError:
            pass
        finally:
            for s in (client, server):
                s.close()

    def _responses(self, server: socket.socket, client: socket.socket, write_lock: threading.Lock) -> None:
        try:
            while (frame := _read_frame(server)) is not None:
                with write_lock:
                    client.sendall(frame[0] + frame[1])
        except OSError:
            pass
        finally:
            for s in (client, server):
                s.close()
