"""SocketSource / SocketSink over real loopback TCP connections."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from arrowflow.connectors import MemorySink, SocketSink, SocketSource
from arrowflow.errors import ConfigurationError, ConnectorError, SerializationError
from arrowflow.formats import Json
from arrowflow.testing import CollectingServer, TcpServer, make_table, serve_bytes

SLACK = 2.0  # generous: only proves read_batch does not hang, never measures speed


def scripted(steps: list[bytes | float], *, port: int = 0, hold: bool = False) -> TcpServer:
    """A server sending ``steps`` to each connection: bytes are sent, floats are pauses (seconds)."""

    def handler(conn: socket.socket) -> None:
        with conn:
            for step in steps:
                if isinstance(step, float):
                    time.sleep(step)
                else:
                    conn.sendall(step)
            if hold:
                while conn.recv(65536):
                    pass

    return TcpServer(handler, port=port)


@pytest.fixture
def servers() -> Iterator[list[TcpServer]]:
    started: list[TcpServer] = []
    yield started
    for s in started:
        s.stop()


def read_lines(source: SocketSource, *, want: int | None = None, limit: float = 20.0) -> list[str]:
    """Read one reader to its end (bounded) or until ``want`` lines arrived."""
    (split,) = source.plan()
    out: list[str] = []
    deadline = time.monotonic() + limit
    with source.open(split) as reader:
        while not reader.finished and (want is None or len(out) < want):
            assert time.monotonic() < deadline, f"only {out!r} arrived"
            batch = reader.read_batch(1000, 0.2)
            if batch is not None:
                out.extend(batch.column(0).to_pylist())
    return out


# -- source -------------------------------------------------------------------------------------


def test_lines_split_across_reads(servers: list[TcpServer]) -> None:
    steps: list[bytes | float] = [b"hel", 0.05, b"lo\nwo", 0.05, b"rld\n\n", 0.05, "é".encode()[:1], 0.05]
    steps += ["é".encode()[1:] + b"t\xc3\xa9\nend"]
    servers.append(server := scripted(steps))
    source = SocketSource("127.0.0.1", server.port, bounded=True, linger=0.0, recv_size=3)
    assert read_lines(source) == ["hello", "world", "", "été", "end"]


def test_multibyte_delimiter_split_across_reads(servers: list[TcpServer]) -> None:
    servers.append(server := scripted([b"a\r", 0.05, b"\nbb\r\n\r", 0.05, b"\nc"]))
    source = SocketSource("127.0.0.1", server.port, bounded=True, delimiter=b"\r\n", linger=0.0)
    assert read_lines(source) == ["a", "bb", "", "c"]


def test_max_rows_and_linger(servers: list[TcpServer]) -> None:
    payload = b"".join(b"%d\n" % i for i in range(1000))
    servers.append(server := serve_bytes(payload))
    source = SocketSource("127.0.0.1", server.port, bounded=True, max_rows=64)
    (split,) = source.plan()
    sizes = []
    values: list[str] = []
    with source.open(split) as reader:
        while not reader.finished:
            batch = reader.read_batch(100, 1.0)
            if batch is not None:
                sizes.append(batch.num_rows)
                values.extend(batch.column("line").to_pylist())
        assert reader.snapshot() == 1000
    assert max(sizes) <= 64
    assert values == [str(i) for i in range(1000)]


def test_timeout_honored_when_nothing_arrives(servers: list[TcpServer]) -> None:
    servers.append(server := scripted([], hold=True))
    source = SocketSource("127.0.0.1", server.port)
    (split,) = source.plan()
    with source.open(split) as reader:
        for timeout in (0.0, 0.05, 0.3):
            started = time.monotonic()
            assert reader.read_batch(10, timeout) is None
            assert time.monotonic() - started < timeout + SLACK
        assert not reader.finished
        assert reader.snapshot() == 0


def test_timeout_honored_while_the_server_is_down() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    # Nobody listens on ``port`` now: every attempt is refused and retried later.
    source = SocketSource("127.0.0.1", port, reconnect_retries=1000, reconnect_delay=0.05)
    (split,) = source.plan()
    with source.open(split) as reader:
        started = time.monotonic()
        assert reader.read_batch(10, 0.3) is None
        assert time.monotonic() - started < 0.3 + SLACK


def test_retries_exhausted_raise_connector_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    source = SocketSource("127.0.0.1", port, reconnect_retries=2, reconnect_delay=0.01)
    (split,) = source.plan()
    with source.open(split) as reader, pytest.raises(ConnectorError) as info:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reader.read_batch(10, 0.1)
    assert info.value.retryable
    assert "2 retries" in str(info.value)


def test_bounded_finishes_when_peer_closes(servers: list[TcpServer]) -> None:
    servers.append(server := serve_bytes(b"one\ntwo\nthree-without-newline"))
    source = SocketSource("127.0.0.1", server.port, bounded=True)
    table = source.read_all()
    assert table.column("line").to_pylist() == ["one", "two", "three-without-newline"]
    assert table.schema == source.schema


def test_invalid_utf8_skip(servers: list[TcpServer]) -> None:
    servers.append(server := serve_bytes(b"ok\n\xff\xfebad\nfine \xc3\xa9\n\xc3\nlast\n"))
    source = SocketSource("127.0.0.1", server.port, bounded=True, error_policy="skip")
    (split,) = source.plan()
    with source.open(split) as reader:
        lines: list[str] = []
        while not reader.finished:
            batch = reader.read_batch(100, 1.0)
            if batch is not None:
                lines.extend(batch.column("line").to_pylist())
        assert reader.snapshot() == 3  # delivered lines only
    assert lines == ["ok", "fine é", "last"]
    assert source.error_policy.skipped == 2


def test_invalid_utf8_fail(servers: list[TcpServer]) -> None:
    servers.append(server := serve_bytes(b"ok\n\xff\n"))
    source = SocketSource("127.0.0.1", server.port, bounded=True)
    with pytest.raises(SerializationError, match="invalid UTF-8"):
        source.read_all()


def test_invalid_utf8_dead_letter(servers: list[TcpServer]) -> None:
    servers.append(server := serve_bytes(b"ok\n\xff\xfe\nyes\n"))
    dead = MemorySink()
    source = SocketSource("127.0.0.1", server.port, bounded=True, error_policy=dead)
    assert source.read_all().column("line").to_pylist() == ["ok", "yes"]
    letters = dead.table()
    assert letters.column("payload").to_pylist() == [b"\xff\xfe"]
    assert letters.column("error").to_pylist() == ["invalid UTF-8"]


def test_binary_lines_skip_validation(servers: list[TcpServer]) -> None:
    servers.append(server := serve_bytes(b"\xff\n\x00\x01\n"))
    source = SocketSource("127.0.0.1", server.port, bounded=True, encoding=None, column="raw")
    table = source.read_all()
    assert table.schema == pa.schema([("raw", pa.binary())])
    assert table.column("raw").to_pylist() == [b"\xff", b"\x00\x01"]


def test_long_lines_follow_policy_and_memory_stays_bounded(servers: list[TcpServer]) -> None:
    long_line = b"x" * 5000
    steps: list[bytes | float] = [b"short\n", long_line[:2500], 0.05, long_line[2500:], b"\nafter\n"]
    steps += [b"y" * 150 + b"\n"]  # over the limit but complete within one read
    servers.append(server := scripted(steps))
    dead = MemorySink()
    source = SocketSource(
        "127.0.0.1", server.port, bounded=True, max_line_bytes=100, recv_size=1024, error_policy=dead
    )
    assert read_lines(source) == ["short", "after"]
    letters = dead.table()
    assert letters.num_rows == 2
    assert [len(p) for p in letters.column("payload").to_pylist()] == [100, 150]
    assert all("max_line_bytes=100" in e for e in letters.column("error").to_pylist())


def test_reconnects_after_server_restart(servers: list[TcpServer]) -> None:
    servers.append(first := serve_bytes(b"a\nb\n", close=False))
    source = SocketSource("127.0.0.1", first.port, reconnect_delay=0.05, reconnect_retries=200)
    (split,) = source.plan()
    got: list[str] = []
    with source.open(split) as reader:
        deadline = time.monotonic() + 20
        while len(got) < 2:
            assert time.monotonic() < deadline
            batch = reader.read_batch(10, 0.2)
            if batch is not None:
                got.extend(batch.column("line").to_pylist())
        first.stop()
        # While the server is down, reads return nothing (and do not raise: retries remain).
        assert reader.read_batch(10, 0.2) is None
        servers.append(serve_bytes(b"c\nd\n", close=False, port=first.port))
        while len(got) < 4:
            assert time.monotonic() < deadline, f"got {got}"
            batch = reader.read_batch(10, 0.2)
            if batch is not None:
                got.extend(batch.column("line").to_pylist())
        assert reader.snapshot() == 4
    assert got == ["a", "b", "c", "d"]


def test_position_continues_after_reopen(servers: list[TcpServer]) -> None:
    servers.append(server := serve_bytes(b"p\nq\n"))
    source = SocketSource("127.0.0.1", server.port, bounded=True)
    (split,) = source.plan()
    with source.open(split, 40) as reader:
        assert reader.snapshot() == 40
        while not reader.finished:
            reader.read_batch(10, 0.5)
        assert reader.snapshot() == 42


def test_format_decodes_lines(servers: list[TcpServer]) -> None:
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    payload = b"".join(json.dumps(r).encode() + b"\n" for r in rows) + b"{not json\n"
    servers.append(server := serve_bytes(payload))
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    dead = MemorySink()
    source = SocketSource("127.0.0.1", server.port, bounded=True, format=Json(schema), error_policy=dead)
    table = source.read_all()
    assert table.to_pylist() == rows
    assert dead.table().column("payload").to_pylist() == [b"{not json"]
    assert source.schema == schema


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        SocketSource("127.0.0.1", 0)
    assert info.value.option == "port"
    with pytest.raises(ConfigurationError) as info:
        SocketSource("127.0.0.1", 9, delimiter=b"")
    assert info.value.option == "delimiter"
    with pytest.raises(ConfigurationError) as info:
        SocketSource("127.0.0.1", 9, encoding="latin-1")
    assert info.value.option == "encoding"
    with pytest.raises(ConfigurationError) as info:
        SocketSink("127.0.0.1", 9, format="xml")
    assert info.value.option == "format"


# -- sink ---------------------------------------------------------------------------------------


def wait_for(predicate, limit: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_sink_ndjson_round_trip(servers: list[TcpServer]) -> None:
    servers.append(server := CollectingServer())
    data = make_table(300)
    with SocketSink("127.0.0.1", server.port) as sink:
        sink.write_table(data)
        assert sink.metrics()["rows"] == 300
    wait_for(lambda: server.received().count(b"\n") == 300)
    lines = server.received().decode().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert [r["id"] for r in parsed] == data.column("id").to_pylist()
    assert [r["name"] for r in parsed] == data.column("name").to_pylist()
    assert [r["count"] for r in parsed] == data.column("count").to_pylist()


def test_sink_lines_of_binary_column(servers: list[TcpServer]) -> None:
    servers.append(server := CollectingServer())
    batch = pa.record_batch({"k": [1, 2, 3], "v": pa.array([b"x", None, b"\xff"], pa.binary())})
    with SocketSink("127.0.0.1", server.port, format="lines", column="v") as sink:
        sink.write(batch)
    wait_for(lambda: server.received() == b"x\n\n\xff\n")


def test_sink_csv_header_once_per_connection(servers: list[TcpServer]) -> None:
    servers.append(server := CollectingServer())
    data = pa.table({"a": [1, 2, 3, 4], "b": ["w", "x", "y", "z"]})
    with SocketSink("127.0.0.1", server.port, format="csv") as sink:
        sink.write_table(data.slice(0, 2))
        sink.write_table(data.slice(2))
    wait_for(lambda: server.received().count(b"\n") == 5)
    assert pacsv.read_csv(pa.BufferReader(server.received())).equals(data)


def test_sink_reconnects_after_server_restart(servers: list[TcpServer]) -> None:
    servers.append(first := CollectingServer())
    batch1 = pa.record_batch({"line": ["a", "b"]})
    batch2 = pa.record_batch({"line": ["c"]})
    sink = SocketSink("127.0.0.1", first.port, format="lines", reconnect_delay=0.05, reconnect_retries=20)
    try:
        sink.write(batch1)
        sink.flush()
        wait_for(lambda: first.received() == b"a\nb\n")
        first.stop()
        servers.append(second := CollectingServer(port=first.port))
        sink.write(batch2)
        sink.flush()
        wait_for(lambda: second.received() == b"c\n")
        assert sink.metrics()["reconnects"] >= 1
    finally:
        sink.close()


def test_sink_unreachable_goes_to_policy() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    dead = MemorySink()
    sink = SocketSink(
        "127.0.0.1", port, format="lines", reconnect_retries=1, reconnect_delay=0.01, error_policy=dead
    )
    sink.write(pa.record_batch({"line": ["lost", "too"]}))
    sink.close()
    letters = dead.table()
    assert letters.column("line").to_pylist() == ["lost", "too"]
    assert "after 1 retries" in letters.column("error")[0].as_py()
    with pytest.raises(ConnectorError):
        strict = SocketSink("127.0.0.1", port, format="lines", reconnect_retries=0)
        strict.write(pa.record_batch({"line": ["x"]}))


def test_sink_with_format_object(servers: list[TcpServer]) -> None:
    servers.append(server := CollectingServer())
    schema = pa.schema([("id", pa.int64()), ("v", pa.float64())])
    batch = pa.record_batch({"id": [1, 2, 3], "v": [0.5, float("nan"), 2.0]}, schema=schema)
    sink = SocketSink("127.0.0.1", server.port, format=Json(schema), error_policy="skip")
    sink.write(batch)
    sink.close()
    wait_for(lambda: server.received().count(b"\n") == 2)
    assert [json.loads(x) for x in server.received().splitlines()] == [
        {"id": 1, "v": 0.5},
        {"id": 3, "v": 2.0},
    ]
    assert sink.error_policy.skipped == 1


def test_concurrent_writers_do_not_interleave_batches(servers: list[TcpServer]) -> None:
    servers.append(server := CollectingServer())
    sink = SocketSink("127.0.0.1", server.port, format="lines")
    lines_per_thread = 200

    def writer(tag: str) -> None:
        for i in range(20):
            sink.write(pa.record_batch({"line": [f"{tag}{i}-{j}" for j in range(lines_per_thread // 20)]}))

    threads = [threading.Thread(target=writer, args=(t,)) for t in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    wait_for(lambda: server.received().count(b"\n") == 3 * lines_per_thread)
    lines = server.received().decode().splitlines()
    assert sorted(lines) == sorted(f"{t}{i}-{j}" for t in "abc" for i in range(20) for j in range(10))
