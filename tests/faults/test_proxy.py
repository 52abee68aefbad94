"""The fault-injecting proxy itself, against a local echo server: each fault does what it says, and
healing brings the connection back. No test measures time: a fault that delays is shown by a client
timeout far shorter than the delay, a fault that hangs by a read that times out on a connection
that is still open."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest
from proxy import FaultProxy

CAP = 60.0  # the longest any wait here may take before the test fails


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: EchoServer = self.server  # type: ignore[assignment]
        while True:
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                self.request.shutdown(socket.SHUT_WR)
                return
            with server.lock:
                server.received += len(data)
            self.request.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.lock = threading.Lock()
        self.received = 0


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(echo.server_address[:2]) as p:  # type: ignore[index]
        yield p


def roundtrip(sock: socket.socket, data: bytes, timeout: float = CAP) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + CAP
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_transparent_by_default(proxy: FaultProxy, echo: EchoServer) -> None:
    payload = bytes(range(256)) * 400
    with socket.create_connection(proxy.address) as s:
        assert roundtrip(s, payload) == payload
    # the proxy counts after each write: the client may read the last bytes first
    wait_for(lambda: proxy.stats()["bytes_down"] == len(payload), "the count of the reply")
    stats = proxy.stats()
    assert stats["connections"] == 1 and stats["bytes_up"] == len(payload)
    assert echo.received == len(payload)


def test_latency_delays_each_chunk(proxy: FaultProxy) -> None:
    proxy.set(latency=5.0)
    with socket.create_connection(proxy.address) as s, pytest.raises(TimeoutError):
        roundtrip(s, b"ping", timeout=0.2)  # the reply cannot come before 5 s (twice)
    proxy.heal()
    with socket.create_connection(proxy.address) as s:
        assert roundtrip(s, b"pong") == b"pong"


def received_within(sock: socket.socket, nbytes: int, seconds: float) -> int:
    """How many of ``nbytes`` arrive before ``seconds`` have passed (a lower bound on a delay:
    a loaded machine only makes it smaller)."""
    got = 0
    end = time.monotonic() + seconds
    while got < nbytes and (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        got += len(chunk)
    return got


def test_bandwidth_cap_slows_but_keeps_every_byte(proxy: FaultProxy) -> None:
    proxy.set(bandwidth=2000)
    with socket.create_connection(proxy.address) as s:
        s.sendall(b"x" * 40_000)  # 40 kB at 2 kB/s: 20 s each way
        assert received_within(s, 40_000, 1.0) < 40_000
    payload = bytes(range(256)) * 12
    with socket.create_connection(proxy.address) as s:
        assert roundtrip(s, payload) == payload  # slow, complete, in order


def test_reset_in_the_middle_of_a_request(proxy: FaultProxy, echo: EchoServer) -> None:
    proxy.reset_after(4096, direction="up")
    with socket.create_connection(proxy.address) as s:
        s.settimeout(CAP)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            s.sendall(b"y" * 100_000)
            while s.recv(65536):
                pass
    wait_for(lambda: echo.received == 4096, "the 4096 bytes before the reset")
    assert proxy.stats()["resets"] == 1
    with socket.create_connection(proxy.address) as s:  # one connection only (times=1)
        assert roundtrip(s, b"after") == b"after"


def test_reset_of_a_reply(proxy: FaultProxy) -> None:
    proxy.reset_after(10, direction="down")
    with socket.create_connection(proxy.address) as s:
        s.settimeout(CAP)
        s.sendall(b"z" * 1000)
        got = b""
        with pytest.raises(ConnectionResetError):
            while chunk := s.recv(65536):
                got += chunk
        assert got == b"z" * 10


def test_blackhole_hangs_without_closing_then_heals(proxy: FaultProxy) -> None:
    with socket.create_connection(proxy.address) as s:
        assert roundtrip(s, b"before") == b"before"
        proxy.blackhole()
        s.sendall(b"during")  # accepted by the proxy's kernel: no error for the writer
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(1)  # no reply, and no FIN (b"") or RST either
        proxy.heal()
        s.settimeout(CAP)
        assert s.recv(6) == b"during"  # what waited in the buffers flows on
    assert proxy.stats()["resets"] == 0


def test_new_connection_to_a_blackhole_hangs_too(proxy: FaultProxy) -> None:
    proxy.blackhole()
    with socket.create_connection(proxy.address) as s:  # the TCP handshake is the kernel's
        s.sendall(b"hello")
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(1)
        proxy.heal()
        s.settimeout(CAP)
        assert s.recv(5) == b"hello"


def test_stall_resumes_by_itself(proxy: FaultProxy) -> None:
    with socket.create_connection(proxy.address) as s:
        proxy.stall(1.0)
        with pytest.raises(TimeoutError):
            roundtrip(s, b"a", timeout=0.2)
        s.settimeout(CAP)
        assert s.recv(1) == b"a"  # no heal(): the stall ends on its own


def test_refuse_closes_new_connections_only(proxy: FaultProxy) -> None:
    with socket.create_connection(proxy.address) as open_one:
        wait_for(lambda: proxy.stats()["connections"] == 1, "the proxy to take the first connection")
        proxy.refuse()
        with socket.create_connection(proxy.address) as s:
            s.settimeout(CAP)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
        assert roundtrip(open_one, b"still") == b"still"
        proxy.refuse(False)
    assert proxy.stats()["refused"] == 1


def test_reset_all_and_orderly_close(proxy: FaultProxy) -> None:
    with socket.create_connection(proxy.address) as s:
        assert roundtrip(s, b"x") == b"x"
        proxy.reset_all()
        s.settimeout(CAP)
        with pytest.raises(ConnectionResetError):
            s.recv(1)
    with socket.create_connection(proxy.address) as s:
        s.shutdown(socket.SHUT_WR)  # FIN travels through, the echo server closes, FIN comes back
        s.settimeout(CAP)
        assert s.recv(1) == b""
    wait_for(lambda: proxy.stats()["open"] == 0, "the closed connections to be dropped")
