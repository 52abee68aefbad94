"""Progress output, metrics (Prometheus on loopback), lag, and signal handling in the main thread."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request

import pytest
from pipeline_doubles import CountingSink, IdSource

from arrowflow import Pipeline
from arrowflow.pipeline import RunMetrics
from arrowflow.pipeline.progress import format_progress


def test_progress_false_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    Pipeline(IdSource({"a": (0, 1_000)})).to(CountingSink()).run(progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_progress_line_shows_rows_and_checkpoints(capfd: pytest.CaptureFixture[str]) -> None:
    Pipeline(IdSource({"a": (0, 1_000)})).to(CountingSink()).run(progress=True)
    _, err = capfd.readouterr()
    assert "rows 1,000" in err and "rows/s" in err and "MB/s" in err and "checkpoints 1" in err


def test_format_progress_includes_lag_when_known() -> None:
    m = RunMetrics(rows=2_000, bytes=4_000_000, checkpoints=3, lag=17)
    text = format_progress(m, now=m.started + 2.0)
    assert text == "rows 2,000 | 1,000 rows/s | 2.0 MB/s | lag 17 | checkpoints 3"
    assert "lag" not in format_progress(RunMetrics(), now=1e9)


def test_sink_metrics_are_reported() -> None:
    sink = CountingSink()
    sink.sink_metrics = {"retries": 3, "errors": 1, "rows": 10}
    result = Pipeline(IdSource({"a": (0, 100)})).to(sink).run(progress=False)
    assert result.sink_metrics == {"retries": 3, "errors": 1, "rows": 10}


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_prometheus_endpoint_on_loopback_per_run() -> None:
    src = IdSource({"a": (0, None)}, batch_rows=100, delay=0.002)
    sink = CountingSink()
    sink.sink_metrics = {"retries": 5, "errors": 2}
    pipeline = Pipeline(src).to(sink)
    scraped: list[str] = []
    failures: list[BaseException] = []

    def scrape() -> None:
        try:
            deadline = time.monotonic() + 20
            while pipeline.metrics_port is None or len(sink.batches) < 5:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            scraped.append(_scrape(pipeline.metrics_port))
        except BaseException as exc:
            failures.append(exc)
        finally:
            pipeline.stop()

    t = threading.Thread(target=scrape)
    t.start()
    result = pipeline.run(progress=False, metrics_port=0, checkpoint_interval=0.02)
    t.join()
    assert not failures, failures
    text = scraped[0]
    rows_line = next(line for line in text.splitlines() if line.startswith("arrowflow_rows_total "))
    assert 500 <= float(rows_line.split()[1]) <= result.rows
    assert "arrowflow_retries_total 5.0" in text and "arrowflow_errors_total 2.0" in text
    assert "arrowflow_checkpoint_last_duration_seconds" in text
    assert "arrowflow_lag" in text
    # A second run in the same process gets its own registry and port: no collision.
    second = Pipeline(IdSource({"a": (0, 100)})).to(CountingSink()).run(progress=False, metrics_port=0)
    assert second.rows == 100


def test_first_signal_stops_gracefully_and_handlers_are_restored(tmp_path: object) -> None:
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    src = IdSource({"a": (0, None)}, batch_rows=50)
    sink = CountingSink()
    sink.on_write = lambda b: os.kill(os.getpid(), signal.SIGTERM) if len(sink.batches) == 5 else None
    result = (
        Pipeline(src).to(sink).run(progress=False, checkpoint_dir=str(tmp_path), checkpoint_interval=1000)
    )
    assert result.stopped is True and result.checkpoints == 1
    assert result.rows == len(sink.ids) >= 5 * 50
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_second_signal_raises_keyboard_interrupt_without_checkpoint(tmp_path: object) -> None:
    from arrowflow.pipeline import CheckpointStore

    src = IdSource({"a": (0, None)}, batch_rows=50)
    sink = CountingSink()
    sink.on_write = lambda b: os.kill(os.getpid(), signal.SIGINT) if len(sink.batches) == 3 else None
    # The second signal arrives while the final checkpoint is flushing the sink.
    original_flush = sink.flush

    def slow_flush() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
        original_flush()

    sink.flush = slow_flush  # type: ignore[method-assign]
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(src).to(sink).run(progress=False, checkpoint_dir=str(tmp_path), checkpoint_interval=1000)
    assert CheckpointStore(str(tmp_path)).load() is None
    assert signal.getsignal(signal.SIGINT) is before


def test_lag_is_summed_over_readers() -> None:
    from arrowflow.connectors.null import NullSink

    src = IdSource({"a": (0, 10_000), "b": (0, None)}, batch_rows=100)
    result = Pipeline(src).to(NullSink()).run(progress=False, max_rows=500, max_batch_rows=100)
    assert result.rows == 500
    # "a" reports its remaining rows, the unbounded "b" reports None (left out of the sum).
    remaining_a = 10_000 - next(r.next for r in src.readers if r.split.split_id == "a")
    assert 0 < remaining_a == result.lag
    assert Pipeline(IdSource({"b": (0, None)})).to(NullSink()).run(progress=False, max_rows=10).lag is None
