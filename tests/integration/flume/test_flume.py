"""FlumeSink against a real Apache Flume 1.11 agent (``tests/services/flume.sh``), over both transports:
what the agent's file_roll sinks wrote is compared with what was sent, row by row (headers and body
bytes), including after a SIGKILL of the agent mid-run. See flume_agent.py for how a test finds its
own events in the shared agent's output.

What the agent cannot be made to do on demand (fail a request once and then accept it, answer 400
or an Avro error) is in test_flume_faults.py, against the fault-injecting test servers."""

from __future__ import annotations

import base64
import http.client
import io
import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pytest
from flume_agent import FAST, PROTOCOLS, RUN, FlumeAgent, Stored, new_run
from flume_test_server import (
    AVRO_SOURCE_PROTOCOL,
    HANDSHAKE_REQUEST,
    HANDSHAKE_RESPONSE,
    FlumeHttpTestServer,
    frame,
    read_frame,
)

import arrowflow.connectors.flume as flume_module
from arrowflow.connectors import MemorySink
from arrowflow.connectors.flume import FlumeSink
from arrowflow.errors import ConfigurationError
from arrowflow.writer import BatchingConfig


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _sink(agent: FlumeAgent, protocol: str, run: str, **options: Any) -> FlumeSink:
    """A sink to the agent whose events all carry ``run`` (the agent is shared by the tests)."""
    options.setdefault("batching", FAST)
    options["static_headers"] = {RUN: run, **options.get("static_headers", {})}
    return FlumeSink(protocol=protocol, address=agent.address(protocol), **options)


def _sample(n: int, seed: int = 3) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    words = np.array(
        ["plain", 'quo"te', "ünï", "tab\tnew\nline", "", "emoji 🚀", "nul\x00", "back\\slash"], object
    )
    body = [f"{words[i % len(words)]}-{i}" for i in range(n)]
    host = pa.array([f"h{i % 3}" if i % 5 else None for i in range(n)], pa.string())
    level = pa.array(rng.integers(-5, 5, n), pa.int32())
    maps = pa.array(
        [
            [("k", str(i)), ("null", None), ('ü/"', "v\u2028")]
            if i % 4 == 0
            else ([] if i % 4 == 1 else None)
            for i in range(n)
        ],
        pa.map_(pa.string(), pa.string()),
    )
    return pa.record_batch({"id": np.arange(n), "body": body, "host": host, "level": level, "extra": maps})


def _expected(batch: pa.RecordBatch, static: dict[str, str]) -> list[Stored]:
    """The events the sink's documented mapping makes of ``_sample`` rows (static headers first)."""
    out = []
    for row in batch.to_pylist():
        headers = dict(static)
        if row["host"] is not None:
            headers["hostname"] = row["host"]
        headers["level"] = str(row["level"])
        for k, v in row["extra"] or []:
            if v is not None:
                headers[k] = v
        out.append(Stored(headers, row["body"].encode()))
    return out


def test_rows_equal_what_the_agent_wrote(agent: FlumeAgent, protocol: str) -> None:
    batch = _sample(2_000)
    run = new_run()
    with _sink(
        agent,
        protocol,
        run,
        body_column="body",
        header_columns={"hostname": "host", "level": "level"},
        headers_column="extra",
        static_headers={"source": "test"},
    ) as sink:
        for part in pa.Table.from_batches([batch]).to_batches(max_chunksize=333):
            sink.write(part)
        sink.flush()
        m = sink.metrics()
    assert m["rows_written"] == 2_000 and m["rows_failed"] == 0
    # One request in flight, one channel and one sink per source: the agent keeps write order.
    assert agent.run_events(protocol, run) == _expected(batch, {"source": "test"})


def test_repeated_header_keys_are_sent_once_with_the_last_value(agent: FlumeAgent, protocol: str) -> None:
    """A map column may repeat a key, or a static/column header's name. HTTPSource's Gson refuses a
    JSON object with a repeated key (400 for the whole request), so the sink sends each key once,
    with the last value (the one Flume's HashMap keeps from an Avro map)."""
    run = new_run()
    batch = pa.record_batch(
        {
            "body": ["a", "b", "c", "d"],
            "host": ["h0", "h1", None, "h3"],
            "extra": pa.array(
                [[("k", "1"), ("k", "2")], [("source", "map"), ("host", "m")], [], [("k", None), ("k", "x")]],
                pa.map_(pa.string(), pa.string()),
            ),
        }
    )
    with _sink(
        agent, protocol, run, header_columns=["host"], headers_column="extra", static_headers={"source": "s"}
    ) as sink:
        sink.write(batch)
        sink.flush()
        assert sink.metrics()["rows_failed"] == 0
    assert agent.run_events(protocol, run) == [
        Stored({"source": "s", "host": "h0", "k": "2"}, b"a"),
        Stored({"source": "map", "host": "m"}, b"b"),
        Stored({"source": "s"}, b"c"),
        Stored({"source": "s", "host": "h3", "k": "x"}, b"d"),
    ]


def test_many_rows_in_big_requests(agent: FlumeAgent, protocol: str) -> None:
    n = 30_000
    run = new_run()
    batch = pa.record_batch(
        {"body": pa.array([f"line {i} " + "x" * (i % 50) for i in range(n)]), "seq": np.arange(n)}
    )
    batching = BatchingConfig(max_request_rows=2_000, max_in_flight=1, max_time_in_buffer=0.2)
    with _sink(agent, protocol, run, header_columns=["seq"], batching=batching) as sink:
        for part in pa.Table.from_batches([batch]).to_batches(max_chunksize=1234):
            sink.write(part)
    stored = agent.run_events(protocol, run)
    assert stored == [Stored({"seq": str(i)}, f"line {i} ".encode() + b"x" * (i % 50)) for i in range(n)]


def test_null_and_invalid_bodies_go_to_error_policy(agent: FlumeAgent, protocol: str) -> None:
    run = new_run()
    dead = MemorySink()
    body = pa.array([b"ok", None, b"\xff\xfe", b"", b"\x00bin"], pa.binary())
    with _sink(agent, protocol, run, error_policy=dead) as sink:
        sink.write(pa.record_batch({"body": body, "n": [0, 1, 2, 3, 4]}))
        sink.flush()
    letters = dead.table()
    stored = agent.run_events(protocol, run)
    if protocol == "http":
        # JSONHandler reads the body as a string: bytes that are not UTF-8 can't be sent as is.
        assert letters.column("n").to_pylist() == [1, 2]
        assert "UTF-8" in letters.column("error")[1].as_py()
        assert stored == [Stored({}, b"ok"), Stored({}, b""), Stored({}, b"\x00bin")]
    else:
        assert letters.column("n").to_pylist() == [1]
        assert stored == [Stored({}, b"ok"), Stored({}, b"\xff\xfe"), Stored({}, b""), Stored({}, b"\x00bin")]
    assert "null body" in letters.column("error")[0].as_py()


def test_http_binary_body_base64(agent: FlumeAgent) -> None:
    run = new_run()
    payload = [b"\x00\xffbinary", b"", bytes(range(256))]
    with _sink(agent, "http", run, body_encoding="base64") as sink:
        sink.write(pa.record_batch({"body": pa.array(payload, pa.binary())}))
    stored = agent.run_events("http", run)
    assert [base64.b64decode(e.body, validate=True) for e in stored] == payload


def test_json_body_from_the_other_columns(agent: FlumeAgent, protocol: str) -> None:
    run = new_run()
    batch = pa.record_batch(
        {"id": [1, 2, 3], "name": ["a", None, "ü\n"], "host": ["x", "y", None], "f": [0.5, None, -1e300]}
    )
    with _sink(agent, protocol, run, body_column=None, header_columns=["host"]) as sink:
        sink.write(batch)
    stored = agent.run_events(protocol, run)
    assert [json.loads(e.body) for e in stored] == [
        {"id": 1, "name": "a", "f": 0.5},
        {"id": 2},
        {"id": 3, "name": "ü\n", "f": -1e300},
    ]
    assert [e.headers for e in stored] == [{"host": "x"}, {"host": "y"}, {}]


def test_channel_full_answers_exhaust_retries_then_the_sink_goes_on(agent: FlumeAgent, protocol: str) -> None:
    """The agent's reject sources put into a channel of transactionCapacity 10: a request of 20
    events fails every time (AvroSource answers FAILED, HTTPSource 503). The sink retries, then
    hands the rows to the error policy, and keeps working: a request of 5 events is accepted."""
    dead = MemorySink()
    batching = BatchingConfig(max_request_rows=100, initial_backoff=0.01, max_backoff=0.05, max_attempts=3)
    with FlumeSink(
        protocol=protocol, address=agent.address(protocol, reject=True), batching=batching, error_policy=dead
    ) as sink:
        sink.write(pa.record_batch({"body": [f"r{i}" for i in range(20)]}))
        sink.flush()
        m = sink.metrics()
        assert (m["retries"], m["rows_failed"], m["rows_written"]) == (2, 20, 0)
        sink.write(pa.record_batch({"body": [f"s{i}" for i in range(5)]}))
        sink.flush()
        assert sink.metrics()["rows_written"] == 5
    letters = dead.table()
    assert letters.column("body").to_pylist() == [f"r{i}" for i in range(20)]
    answer = "HTTP 503" if protocol == "http" else "appendBatch returned FAILED"
    assert all("retries exhausted after 3" in e and answer in e for e in letters.column("error").to_pylist())


# -- the protocol itself ---------------------------------------------------------------------------------


def _avro_call(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(frame(7, [payload]))
        received = read_frame(conn)
    assert received is not None and received[0] == 7
    return b"".join(received[1])


def _without_doc(protocol: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in protocol.items() if k != "doc"}


def test_protocols_equal_the_agents_own(agent: FlumeAgent) -> None:
    """The AvroSourceProtocol the agent declares (its answer to a handshake from an unknown client)
    is the one arrowflow sends and the one the test servers carry."""
    out = io.BytesIO()
    unknown = {"clientHash": b"\x01" * 16, "clientProtocol": None, "serverHash": b"\x01" * 16, "meta": None}
    fastavro.schemaless_writer(out, HANDSHAKE_REQUEST, unknown)
    answer = fastavro.schemaless_reader(
        io.BytesIO(_avro_call(agent.avro_port, out.getvalue())), HANDSHAKE_RESPONSE
    )
    assert isinstance(answer, dict) and answer["match"] == "NONE"
    declared = _without_doc(json.loads(answer["serverProtocol"]))
    assert declared == AVRO_SOURCE_PROTOCOL
    assert declared == flume_module.AVRO_SOURCE_PROTOCOL


RAW_BODIES = [
    b'[{"headers":{"a":"1"},"body":"x"}]',
    b'[{"headers":{"a":"1","a":"2"},"body":"x"}]',
    b'{"not":"an array"}',
    b'[{"headers":{"a":5,"b":true,"c":1.50},"body":7}]',
    b'[{"headers":{"a":{"b":"1"}},"body":"x"}]',
    b'[{"body":"x","body":"y"}]',
    b'[{"body":["x"]}]',
    b'[{"headers":null,"body":null}]',
    b"[1]",
    b"[null]",
    b"[]",
    b"",
    b'[{"body":"x"}] trailing',
]


def test_http_test_server_answers_like_the_agent(agent: FlumeAgent) -> None:
    """The fault-injecting HTTP test server parses a request as the agent's JSONHandler does: the
    same raw bodies get the same status from both (posted to the agent's reject source, whose
    null sink discards what it accepts; none of these holds more than 10 events)."""

    def status(port: int, body: bytes) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", "/", body=body, headers={"Content-Type": "application/json; charset=UTF-8"})
            return conn.getresponse().status
        finally:
            conn.close()

    server = FlumeHttpTestServer()
    try:
        got = [(body, status(server.port, body)) for body in RAW_BODIES]
    finally:
        server.stop()
    assert got == [(body, status(agent.reject_http_port, body)) for body in RAW_BODIES]
    assert {s for _, s in got} == {200, 400, 500}


# -- a SIGKILLed agent -------------------------------------------------------------------------------


def _wait(what: str, condition: Callable[[], bool], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def test_agent_sigkill_mid_run_loses_nothing(agent: FlumeAgent) -> None:
    """Both transports write at once; once a quarter of the rows are acknowledged the agent is
    frozen (SIGSTOP), the last batch is handed to each sink (it cannot be acknowledged now), and
    the agent is SIGKILLed: exactly one kill, landing while each sink holds rows the agent has not
    acknowledged and has a request outstanding. The agent is started again on the same file channels.

    At-least-once here means: when ``flush()`` returns with no failed rows, every row written to
    the sink is in the agent's output with exactly the headers and body sent, and nothing else is
    there; a row may be there more than once (a request whose answer the kill swallowed is sent
    again; the file channel redelivers what the file_roll sink wrote but had not committed)."""
    n = 20_000
    per_batch = 500
    run = new_run()
    batching = BatchingConfig(
        max_request_rows=200,
        max_in_flight=1,
        max_buffered_rows=n + per_batch,  # writes never wait on the frozen agent
        max_time_in_buffer=0.2,
        initial_backoff=0.05,
        max_backoff=1.0,
        max_attempts=100_000,  # the agent is down for as long as its restart takes
    )
    batch = pa.record_batch({"body": pa.array([f"event {i} ü" for i in range(n)]), "id": np.arange(n)})
    parts = pa.Table.from_batches([batch]).to_batches(max_chunksize=per_batch)
    sinks = {
        p: _sink(
            agent,
            p,
            run,
            header_columns=["id"],
            batching=batching,
            connect_timeout=5.0,
            request_timeout=120.0,
        )
        for p in PROTOCOLS
    }
    frozen = threading.Event()
    handed = {p: threading.Event() for p in PROTOCOLS}
    errors: list[BaseException] = []

    def writer(protocol: str) -> None:
        sink = sinks[protocol]
        try:
            for part in parts[:-1]:
                sink.write(part)
            frozen.wait(600)
            sink.write(parts[-1])
            handed[protocol].set()
            sink.flush()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,), daemon=True) for p in PROTOCOLS]
    for t in threads:
        t.start()
    kills = 0
    try:
        _wait(
            "a quarter of the rows are acknowledged",
            lambda: all(s.metrics()["rows_written"] >= n // 4 for s in sinks.values()),
        )
        agent.signal(signal.SIGSTOP)
        frozen.set()
        _wait("the last batch is handed to each sink", lambda: all(e.is_set() for e in handed.values()), 120)
        _wait(
            "each sink has a request outstanding",
            lambda: all(s.metrics()["in_flight"] >= 1 for s in sinks.values()),
            120,
        )
        before = {p: s.metrics() for p, s in sinks.items()}
        agent.kill()
        kills += 1
        # The frozen agent can have answered at most the request it was reading (200 rows): the last
        # batch (500 rows) was handed over after the freeze, so part of it was unacknowledged.
        for p, m in before.items():
            assert m["rows_written"] < n, (p, m)
        agent.start(keep_data=True)
        for t in threads:
            t.join(600)
        assert not errors, errors
        after = {p: s.metrics() for p, s in sinks.items()}
    finally:
        frozen.set()
        for s in sinks.values():
            s.close()
        if kills and not _answers(agent.avro_port):
            agent.start(keep_data=True)  # leave the agent up for the rest of the suite
    assert kills == 1
    expected = {i: Stored({"id": str(i)}, f"event {i} ü".encode()) for i in range(n)}
    for p in PROTOCOLS:
        m = after[p]
        assert m["rows_failed"] == 0 and m["rows_written"] == n, (p, m)
        assert m["retries"] >= 1, (p, m)  # what was outstanding at the kill was sent again
        stored = agent.run_events(p, run)
        ids = [int(e.headers["id"]) for e in stored]
        assert set(ids) == set(expected), (p, sorted(set(expected) - set(ids))[:10])
        assert all(e == expected[i] for i, e in zip(ids, stored, strict=True)), p
        print(
            f"{p}: {len(ids)} events stored for {n} rows ({len(ids) - n} duplicates), {m['retries']} retries"
        )


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="protocol"):
        FlumeSink(protocol="thrift", address="127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="address"):
        FlumeSink(protocol="http", address="127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="address"):
        FlumeSink(protocol="avro", address="http://x")
    with pytest.raises(ConfigurationError, match="body_encoding"):
        FlumeSink(protocol="http", address="http://x:1/", body_encoding="hex")
    with pytest.raises(ConfigurationError, match="static_headers"):
        FlumeSink(protocol="avro", address="x:1", header_columns=["a"], static_headers={"a": "b"})
