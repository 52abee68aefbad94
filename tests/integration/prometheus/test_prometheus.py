"""PrometheusSink: round trip through a real Prometheus 2.42, and the response classification
(400 / 429 / 5xx / 403 / 404) against a local HTTP server that answers scripted statuses."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cramjam
import numpy as np
import pyarrow as pa
import pytest

from arrowflow._reference.remote_write import write_request_class
from arrowflow.connectors import MemorySink
from arrowflow.connectors.prometheus import BasicAuth, BearerToken, PrometheusSink, default_batching
from arrowflow.errors import ConfigurationError, ConnectorError
from arrowflow.writer import BatchingConfig

WriteRequest = write_request_class()


def query(base: str, promql: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{base}/api/v1/query?{q}", timeout=10) as r:
        data = json.load(r)
    assert data["status"] == "success"
    return data["data"]["result"]


def wait_series(base: str, promql: str, expect: int) -> list[dict]:
    deadline = time.monotonic() + 30
    while True:
        result = query(base, promql)
        if sum(len(s.get("values", [])) for s in result) >= expect or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_round_trip_values_and_timestamps(prometheus_url: str) -> None:
    metric = "af_rt_" + uuid.uuid4().hex[:10]
    now = int(time.time() * 1000) - 60_000
    n = 600
    rng = np.random.default_rng(7)
    hosts = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    # Unsorted timestamps inside the batch: the sink orders them per series.
    ts = now - rng.permutation(n).astype(np.int64) * 1000
    values = rng.normal(size=n).round(6)
    zones = pa.array(
        [[("zone", "eu")] if h == "a" else [("zone", "us"), ("tier", "")] for h in hosts],
        pa.map_(pa.string(), pa.string()),
    )
    batch = pa.record_batch(
        {
            "host": hosts,
            "labels": zones,
            "value": values,
            "timestamp": pa.array(ts * 1000, pa.timestamp("us")),
        }
    )
    with PrometheusSink(
        url=f"{prometheus_url}/api/v1/write",
        metric_name=metric,
        label_columns=["host"],
        labels_column="labels",
        static_labels={"job": "arrowflow-test"},
    ) as sink:
        sink.write(batch)
        sink.flush()
        m = sink.metrics()
    assert m["rows_written"] == n and m["samples_rejected"] == 0 and m["requests"] >= 2
    result = wait_series(prometheus_url, f"{metric}[1h]", n)
    got = {}
    for series in result:
        labels = series["metric"]
        assert labels["job"] == "arrowflow-test"
        assert "tier" not in labels  # empty values are dropped
        assert labels["zone"] == ("eu" if labels["host"] == "a" else "us")
        for t, v in series["values"]:
            got[(labels["host"], round(float(t) * 1000))] = float(v)
    want = {(h, int(t)): float(v) for h, t, v in zip(hosts, ts, values, strict=True)}
    assert got == want


def test_metric_column_and_integer_ms(prometheus_url: str) -> None:
    a, b = ("af_mc_" + uuid.uuid4().hex[:8] for _ in range(2))
    now = int(time.time() * 1000) - 30_000
    batch = pa.record_batch(
        {
            "name": [a, b, a, None],
            "value": pa.array([1, 2, 3, 4], pa.int32()),
            "ts": pa.array([now, now, now + 5, now + 9], pa.int64()),
        }
    )
    dead = MemorySink()
    with PrometheusSink(
        url=f"{prometheus_url}/api/v1/write",
        metric_column="name",
        timestamp_column="ts",
        error_policy=dead,
    ) as sink:
        sink.write(batch)
    # The row without a metric name went to the dead-letter sink with the reason.
    bad = dead.table()
    assert bad.num_rows == 1 and "no metric name" in bad.column("error")[0].as_py()
    ra = wait_series(prometheus_url, f"{a}[1h]", 2)
    rb = wait_series(prometheus_url, f"{b}[1h]", 1)
    assert [[round(float(t) * 1000), v] for t, v in ra[0]["values"]] == [[now, "1"], [now + 5, "3"]]
    assert [[round(float(t) * 1000), v] for t, v in rb[0]["values"]] == [[now, "2"]]


# ---------------------------------------------------------------- classification (local server)


class Scripted:
    """An HTTP server answering POSTs with scripted statuses (the last one repeats)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    owner.requests.append((dict(self.headers), body))
                    status = owner.statuses.pop(0) if len(owner.statuses) > 1 else owner.statuses[0]
                text = b"scripted"
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that hung up its keep-alive connection: not the test's business

        lock = threading.Lock()
        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/write"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def decoded(self, i: int) -> WriteRequest:
        msg = WriteRequest()
        msg.ParseFromString(cramjam.snappy.decompress_raw(self.requests[i][1]).read())
        return msg

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[type[Scripted]]:
    servers: list[Scripted] = []

    def make(statuses: list[int]) -> Scripted:
        s = Scripted(statuses)
        servers.append(s)
        return s

    yield make  # type: ignore[misc]
    for s in servers:
        s.close()


def samples(n: int = 10) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "value": np.arange(n, dtype=np.float64),
            "timestamp": pa.array(np.arange(n, dtype=np.int64) + 1_700_000_000_000, pa.timestamp("ms")),
        }
    )


def fast(**kw: object) -> BatchingConfig:
    base = {"max_in_flight": 1, "initial_backoff": 0.001, "max_backoff": 0.01, "max_attempts": 5}
    base.update(kw)
    return BatchingConfig(**base)  # type: ignore[arg-type]


def test_headers_and_body(scripted) -> None:  # type: ignore[no-untyped-def]
    srv = scripted([204])
    with PrometheusSink(url=srv.url, metric_name="m", signer=BearerToken("s3cret")) as sink:
        sink.write(samples(3))
    headers, _ = srv.requests[0]
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert headers["Authorization"] == "Bearer s3cret"
    msg = srv.decoded(0)
    assert [s.value for s in msg.timeseries[0].samples] == [0.0, 1.0, 2.0]


def test_basic_auth_and_keep_alive(scripted) -> None:  # type: ignore[no-untyped-def]
    srv = scripted([200])
    cfg = fast(max_request_rows=2)
    with PrometheusSink(url=srv.url, metric_name="m", batching=cfg, signer=BasicAuth("u", "p")) as sink:
        sink.write(samples(6))
    assert len(srv.requests) == 3
    assert {h["Authorization"] for h, _ in srv.requests} == {"Basic " + base64.b64encode(b"u:p").decode()}


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_retryable_statuses_are_retried(scripted, status: int) -> None:  # type: ignore[no-untyped-def]
    srv = scripted([status, status, 204])
    with PrometheusSink(url=srv.url, metric_name="m", batching=fast()) as sink:
        sink.write(samples(10))
        sink.flush()
        m = sink.metrics()
    assert len(srv.requests) == 3
    assert m["retries"] == 2 and m["rows_written"] == 10 and m["rows_failed"] == 0
    assert srv.requests[0][1] == srv.requests[2][1]  # the same request resent


def test_400_is_discarded_and_counted(scripted) -> None:  # type: ignore[no-untyped-def]
    srv = scripted([400, 204])
    with PrometheusSink(url=srv.url, metric_name="m", batching=fast(max_request_rows=5)) as sink:
        sink.write(samples(10))
        sink.flush()
        m = sink.metrics()
    assert len(srv.requests) == 2  # not retried
    assert m["requests_rejected"] == 1 and m["samples_rejected"] == 5
    assert m["retries"] == 0 and m["rows_failed"] == 0


@pytest.mark.parametrize("status", [403, 404])
def test_403_404_are_fatal_whatever_the_policy(scripted, status: int) -> None:  # type: ignore[no-untyped-def]
    srv = scripted([status])
    sink = PrometheusSink(url=srv.url, metric_name="m", batching=fast(), error_policy="skip")
    sink.write(samples(4))
    with pytest.raises(ConnectorError, match=f"HTTP {status}"):
        sink.flush()
    assert len(srv.requests) == 1
    with pytest.raises(ConnectorError):
        sink.write(samples(1))
    with pytest.raises(ConnectorError):
        sink.close()


def test_retries_exhausted_skip_and_fail(scripted) -> None:  # type: ignore[no-untyped-def]
    srv = scripted([503])
    with PrometheusSink(
        url=srv.url, metric_name="m", batching=fast(max_attempts=3), error_policy="skip"
    ) as sink:
        sink.write(samples(7))
        sink.flush()
        m = sink.metrics()
    assert len(srv.requests) == 3 and m["rows_failed"] == 7 and sink.error_policy.skipped == 7
    srv2 = scripted([503])
    sink2 = PrometheusSink(url=srv2.url, metric_name="m", batching=fast(max_attempts=2))
    sink2.write(samples(2))
    with pytest.raises(ConnectorError, match="retries exhausted"):
        sink2.flush()
    with pytest.raises(ConnectorError):
        sink2.close()


def test_connection_refused_is_retried_then_fails() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sink = PrometheusSink(
        url=f"http://127.0.0.1:{port}/api/v1/write", metric_name="m", batching=fast(max_attempts=2)
    )
    sink.write(samples(1))
    with pytest.raises(ConnectorError):
        sink.flush()
    assert sink.metrics()["retries"] == 1
    with pytest.raises(ConnectorError):
        sink.close()


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        PrometheusSink(url="http://x/api/v1/write")
    with pytest.raises(ConfigurationError) as e:
        PrometheusSink(url="http://x/api/v1/write", metric_name="m", label_columns=["bad-label"])
    assert e.value.option == "label_columns"
    with pytest.raises(ConfigurationError) as e:
        PrometheusSink(url="ftp://x", metric_name="m")
    assert e.value.option == "url"
    assert default_batching().max_request_rows == 500
    assert default_batching().initial_backoff == 0.03 and default_batching().max_backoff == 5.0
