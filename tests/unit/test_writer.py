"""AsyncBatchWriter: batching limits, retries, partial failures, error policies, concurrency.

Two test connectors: ``MemoryWriter`` (``submit`` appends to an in-memory target, optionally gated by
an Event, to observe concurrency and backpressure deterministically) and ``HttpWriter`` (``submit``
POSTs NDJSON to a real ``http.server`` on loopback that answers 200 / 429 / 500 / 400 or per-item
failures, like a bulk API). Nothing is timed: waits poll a condition under a generous deadline.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow import ArrowflowError, ConfigurationError, ConnectorError, DeadLetter, SerializationError, Sink
from arrowflow.retry import ExponentialBackoff, default_classify
from arrowflow.writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult

DEADLINE = 20.0


def wait_until(pred: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not pred():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def cfg(**kw: Any) -> BatchingConfig:
    kw.setdefault("initial_backoff", 0.001)
    kw.setdefault("max_backoff", 0.004)
    kw.setdefault("max_time_in_buffer", None)
    return BatchingConfig(**kw)


def payload(i: int, pad: int | None = None) -> bytes:
    return f"{i}:".encode() + b"x" * (i % 7 if pad is None else pad)


def make_batch(ids: range | list[int], pads: list[int] | None = None) -> pa.RecordBatch:
    ids = list(ids)
    pl = [payload(i, None if pads is None else pads[k]) for k, i in enumerate(ids)]
    return pa.record_batch({"id": pa.array(ids, pa.int64()), "payload": pa.array(pl, pa.binary())})


def ids_of(items: list[bytes]) -> list[int]:
    return [int(p.split(b":", 1)[0]) for p in items]


class ListSink(Sink):
    """A dead-letter target that keeps what it receives."""

    name = "list"

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.flushes = 0
        self._lock = threading.Lock()

    def write(self, batch: pa.RecordBatch) -> None:
        with self._lock:
            self.batches.append(batch)

    def flush(self) -> None:
        self.flushes += 1

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.batches)


class MemoryWriter(AsyncBatchWriter):
    """``submit`` appends the entries of each request to ``self.requests``."""

    name = "memory-writer"

    def __init__(
        self,
        config: BatchingConfig,
        *,
        error_policy: Any = "fail",
        gate: threading.Event | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(config, error_policy=error_policy, name=name)
        self.requests: list[list[bytes]] = []
        self.gate = gate
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def encode(self, batch: pa.RecordBatch) -> Any:
        return batch.column("payload")

    def submit(self, entries: Any) -> SubmitResult:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                assert self.gate.wait(DEADLINE), "gate never opened"
            with self.lock:
                self.requests.append(entries.to_pylist())
        finally:
            with self.lock:
                self.active -= 1
        return SubmitResult.ok()

    def delivered(self) -> list[int]:
        with self.lock:
            return [i for r in self.requests for i in ids_of(r)]


# ---------------------------------------------------------------- loopback HTTP target

Respond = Callable[[list[bytes], int, Counter[bytes]], tuple[int, list[tuple[int, str, bool]]]]


class ItemServer:
    """POST NDJSON; ``respond(items, request_no, seen)`` -> (status, [(index, error, retryable)]).

    With status 200 every item not listed as failed is accepted (recorded in ``accepted``).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[list[bytes]] = []
        self.accepted: list[bytes] = []
        self.seen: Counter[bytes] = Counter()
        self.respond: Respond = lambda items, no, seen: (200, [])
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                items = body.split(b"\n")
                with server.lock:
                    no = len(server.requests)
                    server.requests.append(items)
                    server.seen.update(items)
                    status, failures = server.respond(items, no, server.seen)
                    if status == 200:
                        bad = {f[0] for f in failures}
                        server.accepted.extend(it for k, it in enumerate(items) if k not in bad)
                if status == 200:
                    out = json.dumps(
                        {"failures": [{"index": i, "error": e, "retryable": r} for i, e, r in failures]}
                    ).encode()
                else:
                    out = f"status {status}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/items"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    def accepted_ids(self) -> list[int]:
        with self.lock:
            return ids_of(self.accepted)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HttpWriter(AsyncBatchWriter):
    """One NDJSON POST per request; 429/5xx are retryable, other HTTP errors fatal."""

    name = "http-writer"

    def __init__(self, url: str, config: BatchingConfig, *, error_policy: Any = "fail") -> None:
        super().__init__(config, error_policy=error_policy)
        self.url = url

    def encode(self, batch: pa.RecordBatch) -> Any:
        return batch.column("payload")

    def submit(self, entries: Any) -> SubmitResult:
        body = b"\n".join(entries.to_pylist())
        request = urllib.request.Request(self.url, data=body, method="POST")
        try:
            with _OPENER.open(request, timeout=DEADLINE) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode()
            exc.close()
            raise ConnectorError(
                f"HTTP {exc.code}: {text}", retryable=exc.code == 429 or exc.code >= 500
            ) from None
        failures = answer["failures"]
        if not failures:
            return SubmitResult.ok()
        return SubmitResult(
            failed=np.array([f["index"] for f in failures], dtype=np.int64),
            errors=[f["error"] for f in failures],
            retryable=np.array([f["retryable"] for f in failures], dtype=bool),
        )


@pytest.fixture
def server() -> Iterator[ItemServer]:
    s = ItemServer()
    yield s
    s.stop()


@pytest.fixture
def closing() -> Iterator[Callable[[AsyncBatchWriter], AsyncBatchWriter]]:
    """Registers writers so their threads stop even when a test fails."""
    writers: list[AsyncBatchWriter] = []

    def register(w: AsyncBatchWriter) -> AsyncBatchWriter:
        writers.append(w)
        return w

    yield register
    for w in writers:
        try:
            w.close()
        except ArrowflowError:
            pass


# ---------------------------------------------------------------- configuration and helpers


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"max_request_rows": 0}, "max_request_rows"),
        ({"max_request_rows": 1.5}, "max_request_rows"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_buffered_rows": -1}, "max_buffered_rows"),
        ({"max_request_bytes": 0}, "max_request_bytes"),
        ({"max_request_bytes": 100, "max_record_bytes": 101}, "max_record_bytes"),
        ({"max_time_in_buffer": 0}, "max_time_in_buffer"),
        ({"initial_backoff": -1.0}, "initial_backoff"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier"),
        ({"initial_backoff": 2.0, "max_backoff": 1.0}, "max_backoff"),
        ({"max_attempts": None, "max_retry_time": None}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_retry_time": -2}, "max_retry_time"),
    ],
)
def test_config_rejects_bad_values_naming_the_option(kwargs: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        BatchingConfig(**kwargs)
    assert info.value.option == option
    assert option in str(info.value)


def test_config_defaults_and_error_policy_validation() -> None:
    c = BatchingConfig()
    assert c.record_limit == c.max_request_bytes
    assert BatchingConfig(max_request_bytes=None, max_record_bytes=10).record_limit == 10
    with pytest.raises(ConfigurationError) as info:
        MemoryWriter(c, error_policy="retry-forever")
    assert info.value.option == "error_policy"
    with pytest.raises(TypeError):
        BatchingConfig(500)  # type: ignore[misc]  # keyword-only


def test_default_classify() -> None:
    assert default_classify(ConnectorError("throttled", retryable=True))
    assert not default_classify(ConnectorError("bad request"))
    assert default_classify(ConnectionResetError())
    assert default_classify(TimeoutError())
    assert default_classify(OSError("unreachable"))
    assert not default_classify(ValueError("bug"))
    assert not default_classify(SerializationError("bad row"))


def test_backoff_full_jitter_bounds() -> None:
    b = ExponentialBackoff(initial_delay=0.1, max_delay=1.0, multiplier=2.0, rng=random.Random(7))
    assert [b.cap(n) for n in (1, 2, 3, 4, 5, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.cap(10**6) == 1.0  # overflow guard
    draws = [b.delay(3) for _ in range(500)]
    assert all(0.0 <= d <= 0.4 for d in draws)
    assert max(draws) > 0.3 and min(draws) < 0.1  # spread over the whole range: full jitter
    with pytest.raises(ValueError):
        b.cap(0)


def test_default_entry_sizes_read_offsets() -> None:
    w = MemoryWriter(cfg())
    base = pa.array([b"", b"a", b"abcd", None, b"xyz" * 10, b"q"], pa.binary())
    for arr in (
        base,
        base.slice(2, 3),
        base.cast(pa.large_binary()).slice(1),
        pa.array(["é", "ab", ""], pa.string()),
        pa.array(["é", "ab", ""], pa.large_string()).slice(1),
        base.cast(pa.binary_view()),
        base.cast(pa.binary_view()).slice(3),
        pa.array(["é", None, "a much longer string than twelve bytes"], pa.string_view()),
        pa.array([b"abc", b"def"], pa.binary(3)),
        pa.chunked_array([base.slice(0, 2), base.slice(2)]),
    ):
        sizes = w.entry_sizes(arr)
        assert sizes.dtype == np.int64
        expected = [0 if v is None else len(v.encode() if isinstance(v, str) else v) for v in arr.to_pylist()]
        np.testing.assert_array_equal(sizes, expected)
    with pytest.raises(TypeError, match="override"):
        w.entry_sizes(pa.array([1, 2]))
    with pytest.raises(TypeError, match="override"):
        w.entry_sizes([b"a"])


# ---------------------------------------------------------------- request limits


def test_request_rows_limit_exact_over_http(server: ItemServer, closing: Any) -> None:
    w = closing(HttpWriter(server.url, cfg(max_request_rows=7, max_request_bytes=None, max_in_flight=2)))
    for k in range(10):
        w.write(make_batch(range(k * 5, k * 5 + 5)))
    w.flush()
    sizes = sorted(len(r) for r in server.requests)
    # Only full requests leave until flush() sends the remainder.
    assert sizes == [1] + [7] * 7
    assert sorted(server.accepted_ids()) == list(range(50))
    m = w.metrics()
    assert m["rows_written"] == 50 and m["requests"] == 8 and m["in_flight"] == 0
    assert m["bytes_written"] == sum(len(payload(i)) for i in range(50))


def test_request_bytes_limit_exact_and_ordered_over_http(server: ItemServer, closing: Any) -> None:
    rng = random.Random(3)
    w = closing(HttpWriter(server.url, cfg(max_request_rows=1000, max_request_bytes=100, max_in_flight=1)))
    written: list[int] = []
    start = 0
    for _ in range(12):
        n = rng.randint(1, 15)
        ids = list(range(start, start + n))
        start += n
        w.write(make_batch(ids, [rng.randint(3, 35) for _ in ids]))
        written += ids
    w.flush()
    reqs = server.requests
    totals = [sum(len(it) for it in r) for r in reqs]
    assert all(t <= 100 for t in totals)
    # Greedy and maximal: the next entry would not have fitted into the previous request.
    for k in range(len(reqs) - 1):
        assert totals[k] + len(reqs[k + 1][0]) > 100
    assert server.accepted_ids() == written  # max_in_flight=1 keeps write order
    assert w.metrics()["bytes_written"] == sum(totals)


def test_requests_span_chunks_with_list_entries(closing: Any) -> None:
    """Entries need not be Arrow: a list of bytes, with the connector's own entry_sizes."""

    class ListWriter(MemoryWriter):
        def encode(self, batch: pa.RecordBatch) -> Any:
            return batch.column("payload").to_pylist()

        def entry_sizes(self, entries: Any) -> np.ndarray:
            return np.fromiter(map(len, entries), dtype=np.int64, count=len(entries))

        def submit(self, entries: Any) -> SubmitResult:
            assert isinstance(entries, list)
            with self.lock:
                self.requests.append(list(entries))
            return SubmitResult.ok()

    w = closing(ListWriter(cfg(max_request_rows=4, max_in_flight=1)))
    for k in range(5):
        w.write(make_batch(range(k * 3, k * 3 + 3)))
    w.flush()
    assert [len(r) for r in w.requests] == [4, 4, 4, 3]
    assert w.delivered() == list(range(15))


# ---------------------------------------------------------------- rejected and unencodable rows


def test_too_large_records_go_to_dead_letter_and_are_never_sent(server: ItemServer, closing: Any) -> None:
    dlq = ListSink()
    w = closing(HttpWriter(server.url, cfg(max_request_rows=10, max_record_bytes=20), error_policy=dlq))
    pads = [30 if i % 4 == 0 else 2 for i in range(40)]
    w.write(make_batch(range(40), pads))
    w.flush()
    big = [i for i in range(40) if i % 4 == 0]
    dead = dlq.table()
    assert dead.column_names == ["id", "payload", "error"]
    assert dead.column("id").to_pylist() == big
    assert all("exceeds max_record_bytes=20" in e for e in dead.column("error").to_pylist())
    assert dead.column("error")[0].as_py().startswith(f"record of {len(payload(0, 30))} bytes")
    assert sorted(server.accepted_ids()) == [i for i in range(40) if i % 4]
    assert not set(ids_of([it for r in server.requests for it in r])) & set(big)
    m = w.metrics()
    assert m["rows_rejected_too_large"] == 10 and m["rows_written"] == 30 and m["rows_failed"] == 0
    assert dlq.flushes >= 1  # flush() flushes the dead-letter sink too


def test_too_large_record_under_fail_raises_from_write(closing: Any) -> None:
    w = closing(MemoryWriter(cfg(max_record_bytes=10)))
    with pytest.raises(ConnectorError, match="max_record_bytes=10"):
        w.write(make_batch([1, 2, 3], [1, 50, 1]))
    w.flush()
    assert w.delivered() == []  # the failed write kept none of its batch
    w.write(make_batch([4, 5]))
    w.flush()
    assert w.delivered() == [4, 5]


class PickyWriter(MemoryWriter):
    """Rows whose id is divisible by 5 cannot be encoded; a batch holding id 999 is rejected whole."""

    def encode(self, batch: pa.RecordBatch) -> Any:
        ids = batch.column("id").to_numpy()
        if (ids == 999).any():
            raise SerializationError("batch holds the poison id 999")
        bad = np.flatnonzero(ids % 5 == 0)
        keep = np.flatnonzero(ids % 5 != 0)
        return Encoded(
            entries=batch.column("payload").take(pa.array(keep)),
            failed=bad[::-1],  # any order: the writer sorts them with their errors
            errors=[f"id {i} is unencodable" for i in ids[bad][::-1]],
        )


def test_encode_failures_go_to_policy(closing: Any) -> None:
    dlq = ListSink()
    w = closing(PickyWriter(cfg(max_request_rows=8), error_policy=DeadLetter(sink=dlq, error_column="why")))
    w.write(make_batch(range(1, 21)))
    w.write(make_batch([998, 999]))
    w.flush()
    assert sorted(w.delivered()) == [i for i in range(1, 21) if i % 5]
    dead = dlq.table()
    assert dead.column("id").to_pylist() == [5, 10, 15, 20, 998, 999]
    assert dead.column("why").to_pylist()[:4] == [f"id {i} is unencodable" for i in (5, 10, 15, 20)]
    assert "poison id 999" in dead.column("why")[5].as_py()
    assert w.metrics()["rows_failed"] == 6


def test_encode_failure_under_fail_raises_from_write(closing: Any) -> None:
    w = closing(PickyWriter(cfg()))
    with pytest.raises(SerializationError, match="poison"):
        w.write(make_batch([1, 999]))
    with pytest.raises(SerializationError, match="id 5 is unencodable"):
        w.write(make_batch([4, 5, 6]))
    w.flush()
    assert w.delivered() == []


# ---------------------------------------------------------------- retries and partial failures


def test_partial_failures_retried_until_every_row_delivered_once(server: ItemServer, closing: Any) -> None:
    def fails(item: bytes) -> int:
        i = ids_of([item])[0]
        return 2 if i % 5 == 0 else 1 if i % 3 == 0 else 0

    def respond(items: list[bytes], no: int, seen: Counter[bytes]) -> tuple[int, list[Any]]:
        return 200, [(k, "throttled", True) for k, it in enumerate(items) if seen[it] <= fails(it)]

    server.respond = respond
    w = closing(HttpWriter(server.url, cfg(max_request_rows=10, max_in_flight=3)))
    for k in range(8):
        w.write(make_batch(range(k * 25, k * 25 + 25)))
    w.flush()
    accepted = server.accepted_ids()
    assert sorted(accepted) == list(range(200))  # exactly once
    expected_retries = sum(fails(payload(i)) for i in range(200))
    m = w.metrics()
    assert m["rows_retried"] == expected_retries
    assert m["retries"] > 0 and m["rows_written"] == 200 and m["rows_failed"] == 0
    # Only failed entries were re-sent.
    assert sum(len(r) for r in server.requests) == 200 + expected_retries


def test_whole_request_429_then_500_then_ok(server: ItemServer, closing: Any) -> None:
    server.respond = lambda items, no, seen: ({0: 429, 1: 500}.get(no, 200), [])
    w = closing(HttpWriter(server.url, cfg(max_request_rows=50, max_in_flight=1)))
    w.write(make_batch(range(20)))
    w.flush()
    assert server.accepted_ids() == list(range(20))
    assert [len(r) for r in server.requests] == [20, 20, 20]
    m = w.metrics()
    assert m["requests"] == 3 and m["retries"] == 2 and m["rows_retried"] == 40


def test_retries_exhausted_fail_raises_on_flush_and_later_writes(server: ItemServer) -> None:
    server.respond = lambda items, no, seen: (503, [])
    w = HttpWriter(server.url, cfg(max_request_rows=50, max_attempts=3))
    w.write(make_batch(range(10)))
    with pytest.raises(ConnectorError, match=r"retries exhausted after 3 attempt") as info:
        w.flush()
    assert isinstance(info.value.__cause__, ConnectorError)
    assert "HTTP 503" in str(info.value)
    assert len(server.requests) == 3
    with pytest.raises(ConnectorError, match="retries exhausted"):
        w.write(make_batch([11]))
    with pytest.raises(ConnectorError):
        w.close()
    assert w.closed
    w.close()  # idempotent once closed
    assert w.metrics()["rows_failed"] == 10


def test_retries_exhausted_skip_counts(server: ItemServer, closing: Any) -> None:
    server.respond = lambda items, no, seen: (500, [])
    w = closing(HttpWriter(server.url, cfg(max_request_rows=4, max_attempts=2), error_policy="skip"))
    w.write(make_batch(range(10)))
    w.flush()
    m = w.metrics()
    assert m["rows_failed"] == 10 and m["rows_written"] == 0
    assert w.error_policy.skipped == 10
    assert len(server.requests) == 6  # 3 requests x 2 attempts
    w.write(make_batch([20]))  # skip does not poison the writer


def test_retry_time_budget_exhausts_to_dead_letter(server: ItemServer, closing: Any) -> None:
    server.respond = lambda items, no, seen: (429, [])
    dlq = ListSink()
    config = cfg(max_request_rows=100, max_attempts=None, max_retry_time=0.05)
    w = closing(HttpWriter(server.url, config, error_policy=dlq))
    w.write(make_batch(range(7)))
    w.flush()
    dead = dlq.table()
    assert dead.column("id").to_pylist() == list(range(7))
    assert dead.column("payload").to_pylist() == [payload(i) for i in range(7)]
    errors = dead.column("error").to_pylist()
    assert all(e.startswith("retries exhausted after") and "HTTP 429" in e for e in errors)
    assert len(server.requests) >= 1 and server.accepted == []


def test_fatal_request_error_not_retried(server: ItemServer, closing: Any) -> None:
    server.respond = lambda items, no, seen: (400, [])
    dlq = ListSink()
    w = closing(HttpWriter(server.url, cfg(max_request_rows=5, max_attempts=5), error_policy=dlq))
    w.write(make_batch(range(12)))
    w.flush()
    assert len(server.requests) == 3  # one attempt per request
    assert sorted(dlq.table().column("id").to_pylist()) == list(range(12))
    assert all(
        "failed fatally: ConnectorError: HTTP 400" in e for e in dlq.table().column("error").to_pylist()
    )
    m = w.metrics()
    assert m["retries"] == 0 and m["rows_failed"] == 12


def test_per_item_fatal_not_retried_while_retryable_ones_are(server: ItemServer, closing: Any) -> None:
    def respond(items: list[bytes], no: int, seen: Counter[bytes]) -> tuple[int, list[Any]]:
        out = []
        for k, it in enumerate(items):
            i = ids_of([it])[0]
            if i % 4 == 0:
                out.append((k, f"mapping error for {i}", False))
            elif i % 3 == 0 and seen[it] == 1:
                out.append((k, "busy", True))
        return 200, out

    server.respond = respond
    dlq = ListSink()
    w = closing(HttpWriter(server.url, cfg(max_request_rows=6, max_in_flight=2), error_policy=dlq))
    w.write(make_batch(range(30)))
    w.flush()
    fatal = [i for i in range(30) if i % 4 == 0]
    dead = dlq.table()
    assert sorted(dead.column("id").to_pylist()) == fatal
    by_id = dict(zip(dead.column("id").to_pylist(), dead.column("error").to_pylist(), strict=True))
    assert by_id[8] == "failed fatally: mapping error for 8"
    assert sorted(server.accepted_ids()) == [i for i in range(30) if i % 4]
    assert all(server.seen[payload(i)] == 1 for i in fatal)  # never re-sent


def test_fail_policy_surfaces_from_next_write(server: ItemServer) -> None:
    server.respond = lambda items, no, seen: (200, [(0, "document rejected", False)])
    w = HttpWriter(server.url, cfg(max_request_rows=3))
    w.write(make_batch(range(3)))  # a full request leaves at once
    wait_until(lambda: w.metrics()["rows_failed"] == 1, "the fatal entry to reach the policy")
    with pytest.raises(ConnectorError, match="document rejected"):
        w.write(make_batch([3]))
    with pytest.raises(ConnectorError, match="1 row"):
        w.flush()
    with pytest.raises(ConnectorError):
        w.close()
    assert sorted(server.accepted_ids()) == [1, 2]


def test_reset_forgets_a_recorded_failure_for_a_restarted_pipeline(server: ItemServer) -> None:
    server.respond = lambda items, no, seen: (200, [(0, "document rejected", False)])
    w = HttpWriter(server.url, cfg(max_request_rows=3))
    w.write(make_batch(range(3)))
    wait_until(lambda: w.metrics()["rows_failed"] == 1, "the fatal entry to reach the policy")
    with pytest.raises(ConnectorError, match="document rejected"):
        w.write(make_batch([3]))
    w.reset()  # what a pipeline restarting in-process does: the rows are read again from its checkpoint
    server.respond = lambda items, no, seen: (200, [])
    w.write(make_batch([4, 5]))
    w.flush()
    w.close()
    assert sorted(server.accepted_ids()) == [1, 2, 4, 5]


def test_invalid_submit_result_surfaces(closing: Any) -> None:
    class Broken(MemoryWriter):
        def submit(self, entries: Any) -> SubmitResult:
            return SubmitResult(failed=np.array([0, len(entries)]), errors="x")

    w = closing(Broken(cfg()))
    w.write(make_batch(range(3)))
    with pytest.raises(ArrowflowError, match="invalid or duplicate failed indices"):
        w.flush()


# ---------------------------------------------------------------- concurrency, backpressure, timer


def test_max_in_flight_respected(closing: Any) -> None:
    gate = threading.Event()
    w = closing(MemoryWriter(cfg(max_request_rows=1, max_in_flight=3), gate=gate))
    w.write(make_batch(range(12)))
    wait_until(lambda: w.active == 3, "three concurrent submits")
    assert w.metrics()["in_flight"] == 3
    gate.set()
    w.flush()
    assert w.max_active == 3
    assert sorted(w.delivered()) == list(range(12))
    assert w.metrics()["requests"] == 12


def test_backpressure_blocks_write_until_buffer_drains(closing: Any) -> None:
    gate = threading.Event()
    config = cfg(max_request_rows=10, max_in_flight=1, max_buffered_rows=20)
    w = closing(MemoryWriter(config, gate=gate))
    w.write(make_batch(range(0, 10)))
    wait_until(lambda: w.active == 1 and w.metrics()["buffered_rows"] == 0, "first request in flight")
    w.write(make_batch(range(10, 20)))
    w.write(make_batch(range(20, 30)))
    assert w.metrics()["buffered_rows"] == 20
    done = threading.Event()

    def blocked_write() -> None:
        w.write(make_batch(range(30, 40)))
        done.set()

    t = threading.Thread(target=blocked_write)
    t.start()
    wait_until(lambda: w.metrics()["backpressure_waits"] == 1, "the write to block")
    assert not done.is_set()
    assert w.metrics()["buffered_rows"] == 20  # the blocked batch was not taken
    gate.set()
    t.join(DEADLINE)
    assert done.is_set()
    w.flush()
    assert w.delivered() == list(range(40))


def test_timer_flushes_partial_buffer(closing: Any) -> None:
    w = closing(MemoryWriter(cfg(max_request_rows=100, max_time_in_buffer=0.02)))
    w.write(make_batch(range(3)))
    wait_until(lambda: w.delivered() == [0, 1, 2], "the timer to send the partial request")
    assert w.metrics()["requests"] == 1 and w.metrics()["buffered_rows"] == 0


def test_ordering_with_one_request_in_flight_over_http(server: ItemServer, closing: Any) -> None:
    rng = random.Random(11)
    w = closing(HttpWriter(server.url, cfg(max_request_rows=7, max_in_flight=1, max_time_in_buffer=0.001)))
    start = 0
    for _ in range(25):
        n = rng.randint(1, 12)
        w.write(make_batch(range(start, start + n)))
        start += n
    w.flush()
    assert server.accepted_ids() == list(range(start))
    assert all(len(r) <= 7 for r in server.requests)


# ---------------------------------------------------------------- lifecycle


def test_close_is_idempotent_and_flush_after_close(closing: Any) -> None:
    name = "lifecycle-writer-under-test"
    w = MemoryWriter(cfg(max_request_rows=50, max_in_flight=2), name=name)
    w.write(make_batch(range(5)))
    assert any(t.name.startswith(name) for t in threading.enumerate())
    w.close()
    assert w.closed and w.delivered() == list(range(5))
    assert not any(t.name.startswith(name) for t in threading.enumerate())  # threads stopped
    w.close()
    w.flush()
    with pytest.raises(ArrowflowError, match="after close"):
        w.write(make_batch([9]))
    assert w.delivered() == list(range(5))


def test_context_manager_flushes_on_exit() -> None:
    with MemoryWriter(cfg(max_request_rows=100)) as w:
        w.write(make_batch(range(4)))
        w.write(make_batch(range(4, 6)))
    assert isinstance(w, MemoryWriter)
    assert w.closed and w.delivered() == list(range(6))
    assert w.metrics()["requests"] == 1  # both chunks in one request


def test_flush_without_writes_and_empty_batch() -> None:
    w = MemoryWriter(cfg())
    w.flush()
    w.write(make_batch([]))
    w.close()
    assert w.metrics()["requests"] == 0 and w.requests == []


def test_one_in_flight_finishes_retries_before_the_next_request(server: ItemServer, closing: Any) -> None:
    def respond(items: list[bytes], no: int, seen: Counter[bytes]) -> tuple[int, list[Any]]:
        return 200, [
            (k, "busy", True) for k, it in enumerate(items) if ids_of([it])[0] % 5 == 1 and seen[it] == 1
        ]

    server.respond = respond
    w = closing(HttpWriter(server.url, cfg(max_request_rows=5, max_in_flight=1)))
    w.write(make_batch(range(15)))
    w.flush()
    assert [ids_of(r) for r in server.requests] == [
        [0, 1, 2, 3, 4],
        [1],
        [5, 6, 7, 8, 9],
        [6],
        [10, 11, 12, 13, 14],
        [11],
    ]
    assert server.accepted_ids() == [0, 2, 3, 4, 1, 5, 7, 8, 9, 6, 10, 12, 13, 14, 11]


def test_submit_exceptions_use_the_default_classifier(closing: Any) -> None:
    class Flaky(MemoryWriter):
        calls = 0

        def submit(self, entries: Any) -> SubmitResult:
            with self.lock:
                self.calls += 1
                call = self.calls
            ids = ids_of(entries.to_pylist())
            if 100 in ids:
                raise ValueError("cannot index document 100")
            if call == 1:
                raise ConnectionResetError("peer reset")
            return super().submit(entries)

    dlq = ListSink()
    w = closing(Flaky(cfg(max_request_rows=3, max_in_flight=1), error_policy=dlq))
    w.write(make_batch(range(3)))
    w.write(make_batch([100, 101, 102]))  # one request of its own: max_request_rows=3
    w.write(make_batch([200]))
    w.flush()
    assert w.delivered() == [0, 1, 2, 200]
    dead = dlq.table()
    assert dead.column("id").to_pylist() == [100, 101, 102]
    assert dead.column("error")[0].as_py() == "failed fatally: ValueError: cannot index document 100"
    m = w.metrics()
    assert m["retries"] == 1 and m["requests"] == 4  # reset retried once; ValueError never
    assert m["rows_written"] + m["rows_failed"] + m["rows_rejected_too_large"] == 7


def test_fatal_exception_under_fail_keeps_its_cause(closing: Any) -> None:
    class Rejecting(MemoryWriter):
        def submit(self, entries: Any) -> SubmitResult:
            raise KeyError("no such index")

    w = closing(Rejecting(cfg(max_attempts=4)))
    w.write(make_batch(range(2)))
    with pytest.raises(ConnectorError, match="2 row\\(s\\) failed fatally: KeyError") as info:
        w.flush()
    assert isinstance(info.value.__cause__, KeyError)
    assert w.metrics()["requests"] == 1
