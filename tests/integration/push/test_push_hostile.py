"""HttpPushSource / TcpPushSource against hostile clients on loopback (issue 19): slow clients
(slowloris headers, a dribbled body or frame, idle connections), a flood of connections past
``max_connections``, TLS clients that do and do not trust the certificate, and bad configuration.

Nothing here times anything: a slow client keeps dribbling until the server closes it (bounded only
by a generous cap that fails the test), and every check waits on a condition.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from arrowflow.connectors.push import HttpPushSource, TcpPushSource
from arrowflow.errors import ConfigurationError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "formats"))
from test_format_raw_ipc import _hostile_ipc

SCHEMA = pa.schema([("client", pa.int64()), ("seq", pa.int64())])
# How long a misbehaving client is allowed to keep a connection before the test fails: far above
# every limit the tests configure (1-2 s), so a loaded machine never fails a correct server.
CAP = 90.0
LOCAL = "127.0.0.1"


def wait_for(condition: Callable[[], bool], what: str, cap: float = CAP) -> None:
    end = time.monotonic() + cap
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def dribble_until_closed(sock: socket.socket, chunks: bytes | None, every: float = 0.2) -> bytes:
    """Send ``chunks`` one byte at a time (forever ``b"x"`` when None) until the server closes the
    connection; returns what the server sent. Fails when the server keeps it open for CAP."""
    sock.settimeout(every)
    received = b""
    end = time.monotonic() + CAP
    i = 0
    while time.monotonic() < end:
        try:
            data = sock.recv(1 << 16)
            if not data:
                return received  # closed by the server
            received += data
            continue
        except TimeoutError:
            pass
        except ConnectionResetError:
            return received
        byte = b"x" if chunks is None else chunks[i % len(chunks) : i % len(chunks) + 1]
        i += 1
        try:
            sock.sendall(byte)
        except (BrokenPipeError, ConnectionResetError):
            return received
    raise AssertionError(f"the server kept a slow client's connection open for {CAP} s")


def post(addr: tuple[str, int], body: bytes, context: ssl.SSLContext | None = None) -> tuple[int, dict]:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(*addr, timeout=30)
    else:
        conn = http.client.HTTPSConnection(*addr, timeout=30, context=context)
    try:
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def rows(source: HttpPushSource | TcpPushSource, expect: int) -> list[dict]:
    reader = source.open(source.plan()[0])
    got: list[dict] = []
    wait_for(
        lambda: got.extend((reader.read_batch(1000, 0.1) or pa.table({})).to_pylist()) or len(got) >= expect,
        f"{expect} rows",
    )
    return got


# ---------------------------------------------------------------------------------------------- HTTP


def test_http_slowloris_headers_are_cut_by_header_timeout() -> None:
    src = HttpPushSource(schema=SCHEMA, header_timeout=1.0)
    addr = src.start()
    try:
        with socket.create_connection(addr) as slow:
            slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
            # One header byte at a time, never the blank line: each read gets a byte well within any
            # per-read timeout, so only a deadline for the whole header cuts it.
            dribble_until_closed(slow, b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        wait_for(lambda: src.metrics().get("connections_timed_out", 0) == 1, "the timeout to be counted")
        # the endpoint still serves others
        assert post(addr, json.dumps({"client": 1, "seq": 1}).encode())[0] == 200
    finally:
        src.close()


def test_http_slow_body_gets_408_and_is_closed() -> None:
    src = HttpPushSource(schema=SCHEMA, header_timeout=5.0, body_timeout=1.0)
    addr = src.start()
    try:
        with socket.create_connection(addr) as slow:
            body = json.dumps([{"client": 2, "seq": s} for s in range(50)]).encode()
            slow.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            answer = dribble_until_closed(slow, body)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert src.metrics()["connections_timed_out"] == 1
        assert src.buffer.rows == 0  # nothing of the partial body was accepted
    finally:
        src.close()


def test_http_idle_keep_alive_connection_is_closed() -> None:
    src = HttpPushSource(schema=SCHEMA, header_timeout=1.0)
    addr = src.start()
    try:
        conn = http.client.HTTPConnection(*addr, timeout=30)
        conn.request(
            "POST", "/", body=b'{"client": 3, "seq": 0}', headers={"Content-Type": "application/json"}
        )
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Connection") != "close"
        r.read()
        sock = conn.sock
        assert sock is not None
        sock.settimeout(CAP)
        assert sock.recv(1) == b""  # the server closed the idle keep-alive connection
        conn.close()
        wait_for(lambda: src.metrics().get("connections_timed_out", 0) == 1, "the timeout to be counted")
    finally:
        src.close()


def test_http_flood_past_max_connections_gets_503_then_recovers() -> None:
    src = HttpPushSource(schema=SCHEMA, max_connections=4, header_timeout=CAP)
    addr = src.start()
    held: list[socket.socket] = []
    try:
        for _ in range(4):
            s = socket.create_connection(addr)
            s.sendall(b"POST / HTTP/1.1\r\n")  # a request that never finishes: holds a slot
            held.append(s)
        wait_for(lambda: src._active == 4, "4 connections to be served")
        answers = []
        for _ in range(20):  # the flood
            with socket.create_connection(addr) as extra:
                extra.settimeout(CAP)
                extra.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
                answer = b""
                while chunk := extra.recv(1 << 16):
                    answer += chunk
                answers.append(answer)
        assert all(a.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in a for a in answers), answers[0]
        assert src.metrics()["connections_refused"] == 20
        for s in held:
            s.close()
        # slots come back: a normal client is served again
        wait_for(lambda: src._active == 0, "the held connections to end")
        assert post(addr, b'{"client": 4, "seq": 1}')[0] == 200
    finally:
        for s in held:
            s.close()
        src.close()


# ----------------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_trusted_client_is_served_untrusted_client_fails(cert: tuple[Path, Path]) -> None:
    src = HttpPushSource(schema=SCHEMA, tls_cert=cert[0], tls_key=cert[1])
    addr = src.start()
    try:
        assert src.url.startswith("https://")
        with pytest.raises(ssl.SSLCertVerificationError):
            post(addr, b'{"client": 5, "seq": 0}', ssl.create_default_context())
        wait_for(lambda: src.metrics().get("tls_handshake_failures", 0) == 1, "the failed handshake")
        # plain HTTP to the TLS port: no answer, the handshake fails
        with socket.create_connection(addr) as plain:
            plain.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            plain.settimeout(CAP)
            try:
                assert not plain.recv(1 << 16).startswith(b"HTTP/")
            except ConnectionResetError:
                pass
        wait_for(lambda: src.metrics().get("tls_handshake_failures", 0) == 2, "the second failed handshake")
        trusting = ssl.create_default_context(cafile=str(cert[0]))
        body = json.dumps([{"client": 5, "seq": s} for s in range(10)]).encode()
        assert post(addr, body, trusting) == (200, {"accepted": 10})
        assert sorted(r["seq"] for r in rows(src, 10)) == list(range(10))
    finally:
        src.close()


def test_tcp_tls_trusted_client_delivers_untrusted_fails(cert: tuple[Path, Path]) -> None:
    src = TcpPushSource(tls_cert=str(cert[0]), tls_key=str(cert[1]))
    addr = src.start()
    try:
        with socket.create_connection(addr) as raw, pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
        wait_for(lambda: src.metrics().get("tls_handshake_failures", 0) == 1, "the failed handshake")
        trusting = ssl.create_default_context(cafile=str(cert[0]))
        with (
            socket.create_connection(addr) as raw,
            trusting.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"".join(b"frame-%d\n" % i for i in range(100)))
        got = rows(src, 100)
        assert sorted(r["value"] for r in got) == sorted(b"frame-%d" % i for i in range(100))
    finally:
        src.close()


# ----------------------------------------------------------------------------------------------- TCP


def test_tcp_slow_frame_is_cut_by_body_timeout() -> None:
    src = TcpPushSource(header_timeout=CAP, body_timeout=1.0)
    addr = src.start()
    try:
        with socket.create_connection(addr) as slow:
            slow.sendall(b"complete\npartial-")
            dribble_until_closed(slow, None)  # never a newline
        wait_for(lambda: src.metrics().get("connections_timed_out", 0) == 1, "the timeout to be counted")
        assert [r["value"] for r in rows(src, 1)] == [b"complete"]  # the complete frame is kept
    finally:
        src.close()


def test_tcp_slow_length_prefixed_frame_is_cut() -> None:
    src = TcpPushSource(framing="length", header_timeout=CAP, body_timeout=1.0)
    addr = src.start()
    try:
        with socket.create_connection(addr) as slow:
            slow.sendall(struct.pack(">I", 1000))
            dribble_until_closed(slow, None)
        wait_for(lambda: src.metrics().get("connections_timed_out", 0) == 1, "the timeout to be counted")
    finally:
        src.close()


def test_tcp_idle_connection_is_closed_by_header_timeout() -> None:
    src = TcpPushSource(header_timeout=1.0)
    addr = src.start()
    try:
        with socket.create_connection(addr) as idle:
            idle.sendall(b"one\n")
            idle.settimeout(CAP)
            assert idle.recv(1) == b""  # closed after a second of silence
        wait_for(lambda: src.metrics().get("connections_timed_out", 0) == 1, "the timeout to be counted")
        assert [r["value"] for r in rows(src, 1)] == [b"one"]
    finally:
        src.close()


def test_tcp_flood_past_max_connections_is_refused() -> None:
    src = TcpPushSource(max_connections=3)
    addr = src.start()
    held = [socket.create_connection(addr) for _ in range(3)]
    try:
        wait_for(lambda: src._active == 3, "3 connections to be served")
        for _ in range(10):
            with socket.create_connection(addr) as extra:
                extra.settimeout(CAP)
                try:
                    assert extra.recv(1) == b""  # closed at once
                except ConnectionResetError:
                    pass
        assert src.metrics()["connections_refused"] == 10
        for s in held:
            s.sendall(b"still-served\n")
        assert len(rows(src, 3)) == 3
        held[0].close()
        wait_for(lambda: src._active == 2, "a slot to be freed")
        with socket.create_connection(addr) as again:
            again.sendall(b"after\n")
        assert [r["value"] for r in rows(src, 1)] == [b"after"]
    finally:
        for s in held:
            s.close()
        src.close()


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("cls", [HttpPushSource, TcpPushSource])
@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"header_timeout": 0}, "header_timeout"),
        ({"header_timeout": -1.0}, "header_timeout"),
        ({"header_timeout": "10"}, "header_timeout"),
        ({"body_timeout": 0.0}, "body_timeout"),
        ({"body_timeout": True}, "body_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": 2.5}, "max_connections"),
        ({"tls_cert": "/nonexistent/cert.pem"}, "tls_key"),
        ({"tls_key": "/nonexistent/key.pem"}, "tls_cert"),
        ({"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem"}, "tls_cert"),
    ],
)
def test_bad_limits_fail_at_construction(cls: type, options: dict, option: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        cls(**options)
    assert err.value.option == option


@pytest.mark.parametrize("cls", [HttpPushSource, TcpPushSource])
def test_tls_files_that_do_not_load_fail_at_construction(
    cls: type, cert: tuple[Path, Path], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="do not load") as err:
        cls(tls_cert=junk, tls_key=cert[1])
    assert err.value.option == "tls_cert"
    with pytest.raises(ConfigurationError, match="do not load"):
        cls(tls_cert=cert[0], tls_key=junk)
    # no limit at all is allowed explicitly
    cls(header_timeout=None, body_timeout=None).close()


def test_many_honest_clients_are_not_cut(cert: tuple[Path, Path]) -> None:
    """The limits do not hurt normal traffic: 8 clients x 20 requests over TLS, all accepted. (A
    client's next connection may arrive before the server thread of its last one has returned its
    slot: room for 16.)"""
    src = HttpPushSource(
        schema=SCHEMA, max_connections=16, tls_cert=cert[0], tls_key=cert[1], capacity=10_000
    )
    addr = src.start()
    context = ssl.create_default_context(cafile=str(cert[0]))
    accepted = [0] * 8

    def client(c: int) -> None:
        for i in range(20):
            body = json.dumps([{"client": c, "seq": i * 10 + k} for k in range(10)]).encode()
            while True:
                status, doc = post(addr, body, context)
                if status == 200:
                    accepted[c] += doc["accepted"]
                    break
                assert status in (429, 503)  # backpressure or a momentarily full slot table: retry

    try:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = rows(src, 1600)
        assert sum(accepted) == 1600 and len(got) == 1600
        assert {(r["client"], r["seq"]) for r in got} == {(c, s) for c in range(8) for s in range(200)}
    finally:
        src.close()


def test_http_arrow_body_with_invalid_data_is_400() -> None:
    src = HttpPushSource()
    addr = src.start()
    try:
        conn = http.client.HTTPConnection(*addr, timeout=30)
        conn.request(
            "POST", "/", body=_hostile_ipc(), headers={"Content-Type": "application/vnd.apache.arrow.stream"}
        )
        r = conn.getresponse()
        assert r.status == 400 and b"offset" in r.read().lower()
        conn.close()
        assert src.buffer.rows == 0
    finally:
        src.close()


def test_http_body_that_is_not_an_arrow_stream_is_400() -> None:
    # Found by the push_framing fuzz target: pyarrow reports some malformed streams as OSError,
    # which escaped the handler (the connection dropped without an answer) instead of a 400.
    src = HttpPushSource()
    addr = src.start()
    try:
        body = struct.pack("<i", -5) + b"x" * 20  # "negative continuation token": an OSError
        conn = http.client.HTTPConnection(*addr, timeout=30)
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/vnd.apache.arrow.stream"})
        r = conn.getresponse()
        assert r.status == 400, (r.status, r.read())
        r.read()
        conn.close()
        assert src.metrics().get("http_connection_errors", 0) == 0
    finally:
        src.close()
