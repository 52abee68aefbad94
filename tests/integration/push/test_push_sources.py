"""TcpPushSource / HttpPushSource with many concurrent real clients on loopback; oversized,
malformed and unauthorized input; backpressure; nothing lost of the accepted rows."""

from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import threading
import time

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from arrowflow.connectors.push import HttpPushSource, TcpPushSource
from arrowflow.formats import Json

SCHEMA = pa.schema([("client", pa.int64()), ("seq", pa.int64())])


def post(
    url_host: tuple[str, int], path: str, body: bytes, ctype: str, headers: dict | None = None
) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(*url_host, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": ctype, **(headers or {})})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def drain(source, expect: int, deadline: float = 30.0) -> pa.Table:  # type: ignore[no-untyped-def]
    reader = source.open(source.plan()[0])
    got = []
    n = 0
    end = time.monotonic() + deadline
    while n < expect and time.monotonic() < end:
        b = reader.read_batch(10_000, 0.2)
        if b is not None:
            got.append(b)
            n += b.num_rows
    return pa.Table.from_batches(got) if got else pa.table({})


def body_for(kind: str, client: int, seqs: range) -> tuple[bytes, str]:
    rows = [{"client": client, "seq": s} for s in seqs]
    if kind == "json":
        return json.dumps(rows).encode(), "application/json"
    if kind == "ndjson":
        return "".join(json.dumps(r) + "\n" for r in rows).encode(), "application/x-ndjson"
    if kind == "csv":
        return ("client,seq\n" + "".join(f"{client},{s}\n" for s in seqs)).encode(), "text/csv"
    sink = io.BytesIO()
    with ipc.new_stream(sink, SCHEMA) as w:
        w.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
    return sink.getvalue(), "application/vnd.apache.arrow.stream"


def test_http_8_concurrent_clients_all_formats_nothing_lost() -> None:
    src = HttpPushSource(schema=SCHEMA, token="t0ken", capacity=5_000)
    addr = src.start()
    accepted = [0] * 8
    statuses: list[int] = []
    kinds = ["json", "ndjson", "csv", "arrow"]

    def client(c: int) -> None:
        for i in range(10):
            seqs = range(i * 100, (i + 1) * 100)
            body, ctype = body_for(kinds[(c + i) % 4], c, seqs)
            while True:
                status, doc = post(addr, "/", body, ctype, {"Authorization": "Bearer t0ken"})
                statuses.append(status)
                if status == 200:
                    accepted[c] += doc["accepted"]
                    break
                assert status == 429  # backpressure only: retry
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    table = drain(src, 8000)
    for t in threads:
        t.join()
    src.close()
    assert sum(accepted) == 8000
    assert table.num_rows == 8000
    pairs = set(zip(table["client"].to_pylist(), table["seq"].to_pylist(), strict=True))
    assert pairs == {(c, s) for c in range(8) for s in range(1000)}
    assert set(statuses) <= {200, 429}


def test_http_rejections_are_clear_4xx() -> None:
    src = HttpPushSource(path="/ingest", schema=SCHEMA, token="tok", max_body_bytes=1000, capacity=10_000)
    addr = src.start()
    auth = {"Authorization": "Bearer tok"}
    ok, _ = body_for("json", 1, range(3))
    assert post(addr, "/ingest", ok, "application/json")[0] == 401
    assert post(addr, "/ingest", ok, "application/json", {"Authorization": "Bearer nope"})[0] == 401
    assert post(addr, "/other", ok, "application/json", auth)[0] == 404
    big, _ = body_for("ndjson", 1, range(200))
    status, doc = post(addr, "/ingest", big, "application/x-ndjson", auth)
    assert status == 413 and "max_body_bytes" in doc["error"]
    status, doc = post(addr, "/ingest", b'[{"client": 1, "seq": ', "application/json", auth)
    assert status == 400 and doc["error"]
    status, doc = post(addr, "/ingest", b'[{"client": "x", "seq": 1}]', "application/json", auth)
    assert status == 400
    assert post(addr, "/ingest", b"a,b\n1,2\n", "text/csv", auth)[0] == 400  # wrong columns
    assert post(addr, "/ingest", b"\x00\x01", "application/vnd.apache.arrow.stream", auth)[0] == 400
    assert post(addr, "/ingest", ok, "application/xml", auth)[0] == 415
    # Chunked transfer (no Content-Length) is refused.
    conn = http.client.HTTPConnection(*addr, timeout=10)
    conn.putrequest("POST", "/ingest")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Authorization", "Bearer tok")
    conn.endheaders()
    conn.send(b"3\r\nabc\r\n0\r\n\r\n")
    assert conn.getresponse().status == 411
    conn.close()
    # None of the rejected bodies left rows behind; the good one is accepted.
    assert post(addr, "/ingest", ok, "application/json", auth) == (200, {"accepted": 3})
    assert drain(src, 3).num_rows == 3
    m = src.metrics()
    assert m["accepted_rows"] == 3 and m["bodies_rejected"] == 4
    src.close()
    with pytest.raises(OSError):
        post(addr, "/ingest", ok, "application/json", auth)


def test_http_backpressure_429_then_accepts() -> None:
    src = HttpPushSource(capacity=100, accept_timeout=0.05)
    addr = src.start()
    body, ctype = body_for("json", 1, range(100))
    assert post(addr, "/", body, ctype)[0] == 200
    status, doc = post(addr, "/", body, ctype)
    assert status == 429 and "retry" in doc["error"]
    assert drain(src, 100).num_rows == 100
    assert post(addr, "/", body, ctype)[0] == 200
    assert src.metrics()["rows_refused"] == 100
    src.close()


def test_tcp_newline_json_many_clients() -> None:
    src = TcpPushSource(format=Json(schema=SCHEMA), capacity=2_000)
    addr = src.start()

    def client(c: int) -> None:
        with socket.create_connection(addr) as s:
            payload = "".join(json.dumps({"client": c, "seq": i}) + "\n" for i in range(500)).encode()
            # Uneven writes: frames split across packets must be reassembled.
            for k in range(0, len(payload), 777):
                s.sendall(payload[k : k + 777])

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    table = drain(src, 4000)
    for t in threads:
        t.join()
    src.close()
    assert table.num_rows == 4000
    for c in range(8):
        seqs = [
            s for cc, s in zip(table["client"].to_pylist(), table["seq"].to_pylist(), strict=True) if cc == c
        ]
        assert seqs == list(range(500))  # per connection, in order


def test_tcp_length_prefixed_raw_and_oversized_frame() -> None:
    src = TcpPushSource(framing="length", max_frame_bytes=64)
    addr = src.start()
    frames = [f"frame-{i}".encode() * (i % 3 + 1) for i in range(50)]
    with socket.create_connection(addr) as s:
        s.sendall(b"".join(struct.pack(">I", len(f)) + f for f in frames))
    got = drain(src, 50)
    assert got.column(0).to_pylist() == frames
    with socket.create_connection(addr) as s:
        s.sendall(struct.pack(">I", 3) + b"ok!" + struct.pack(">I", 10_000) + b"x" * 100)
        s.settimeout(10)
        assert s.recv(10) == b""  # the server hung up on the oversized frame
    assert drain(src, 1).column(0).to_pylist() == [b"ok!"]
    deadline = time.monotonic() + 10
    while src.metrics().get("connections_dropped", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    m = src.metrics()
    assert m["frames_too_large"] == 1 and m["connections_dropped"] == 1
    src.close()


def test_tcp_malformed_frames_are_skipped_and_counted() -> None:
    src = TcpPushSource(format=Json(schema=SCHEMA))
    addr = src.start()
    with socket.create_connection(addr) as s:
        s.sendall(b'{"client": 1, "seq": 1}\nnot json\n{"client": 1, "seq": 2}\n')
    got = drain(src, 2)
    assert got["seq"].to_pylist() == [1, 2]
    assert src.error_policy.skipped == 1
    src.close()
