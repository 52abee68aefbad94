"""Run counters and their optional Prometheus exposition.

Each counter is written by exactly one pipeline thread (reader, operator or writer) and read by the
supervising thread, so plain attribute updates suffice: a reader may see a value one batch old, never
a torn one (CPython stores ints and floats atomically). Counters are updated once per batch, never
per row.

Prometheus exposition (``metrics_port``) uses a private ``CollectorRegistry`` per run, so two runs in
one process never collide, and a custom collector that reads the counters at scrape time: the hot
path does no Prometheus work at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MetricsServer", "RunMetrics", "StageStats"]


@dataclass
class StageStats:
    """Per-stage counters: batches and rows in and out, and seconds spent working (not waiting)."""

    name: str
    batches_in: int = 0
    rows_in: int = 0
    batches_out: int = 0
    rows_out: int = 0
    busy_seconds: float = 0.0
    #: Rows this stage handed to a late-rows policy (behind the watermark; kept, dropped or dead-lettered).
    late_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batches_in": self.batches_in,
            "rows_in": self.rows_in,
            "batches_out": self.batches_out,
            "rows_out": self.rows_out,
            "busy_seconds": self.busy_seconds,
            "late_rows": self.late_rows,
        }


@dataclass
class RunMetrics:
    """Counters of one run. ``rows``/``bytes``/``batches`` count what the source emitted."""

    rows: int = 0
    bytes: int = 0
    batches: int = 0
    rows_written: int = 0
    bytes_written: int = 0
    batches_written: int = 0
    checkpoints: int = 0
    checkpoint_last_seconds: float = 0.0
    checkpoint_total_seconds: float = 0.0
    last_checkpoint_id: int | None = None
    lag: int | None = None
    sink: dict[str, int] = field(default_factory=dict)
    stages: list[StageStats] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    #: The pipeline's watermark (int64 microseconds since the epoch; see :mod:`arrowflow.time`), the
    #: minimum over active splits, ``None`` without watermarks. ``MAX_WATERMARK`` at the end of input.
    watermark: int | None = None
    #: Per split: its own watermark (refreshed about once a second).
    split_watermarks: dict[str, int] = field(default_factory=dict)
    #: Per split: wall-clock time minus its watermark, in seconds (``None`` before its first row).
    split_event_time_lag: dict[str, float | None] = field(default_factory=dict)
    #: Rows behind the pipeline watermark when they were read (whatever ``late_rows`` did with them).
    late_rows: int = 0

    @property
    def event_time_lag(self) -> float | None:
        """Wall-clock time minus the pipeline watermark, in seconds (``None``: no watermark yet / end)."""
        from ..time import lag_seconds

        return lag_seconds(self.watermark)

    @property
    def retries(self) -> int:
        return int(self.sink.get("retries", 0))

    @property
    def errors(self) -> int:
        return int(self.sink.get("errors", 0))


def _event_time_families(m: RunMetrics) -> Iterator[Any]:
    """Watermark gauges (epoch seconds) and event-time lags, per pipeline and per split; late rows."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from ..time import MAX_WATERMARK, MIN_WATERMARK

    late = CounterMetricFamily(
        "arrowflow_late_rows", "Rows behind the watermark handed to a late-rows policy", labels=["stage"]
    )
    late.add_metric(["source"], m.late_rows)
    for s in m.stages[1:-1]:
        late.add_metric([s.name], s.late_rows)
    yield late
    if m.watermark is None:
        return
    wm = GaugeMetricFamily(
        "arrowflow_watermark_seconds", "Pipeline watermark (epoch seconds; minimum over active splits)"
    )
    lag = GaugeMetricFamily(
        "arrowflow_event_time_lag_seconds", "Wall-clock time minus the pipeline watermark"
    )
    if m.watermark not in (MIN_WATERMARK, MAX_WATERMARK):
        wm.add_metric([], m.watermark / 1e6)
        lag.add_metric([], m.event_time_lag or 0.0)
    split_wm = GaugeMetricFamily(
        "arrowflow_split_watermark_seconds", "Watermark of one split (epoch seconds)", labels=["split"]
    )
    split_lag = GaugeMetricFamily(
        "arrowflow_split_event_time_lag_seconds",
        "Wall-clock time minus one split's watermark",
        labels=["split"],
    )
    lags = m.split_event_time_lag
    for sid, w in m.split_watermarks.items():
        if w not in (MIN_WATERMARK, MAX_WATERMARK):
            split_wm.add_metric([sid], w / 1e6)
            split_lag_s = lags.get(sid)
            if split_lag_s is not None:
                split_lag.add_metric([sid], split_lag_s)
    yield from (wm, lag, split_wm, split_lag)


class MetricsServer:
    """Serves ``metrics`` in the Prometheus text format on ``127.0.0.1:port`` until :meth:`close`.

    ``port=0`` picks a free port; :attr:`port` tells which. Needs ``prometheus-client``.
    """

    def __init__(self, metrics: RunMetrics, port: int, *, refresh_sink: Callable[[], None] | None = None):
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m = metrics

        class _Collector:
            def collect(self) -> Iterator[Any]:
                if refresh_sink is not None:
                    refresh_sink()
                for name, value, doc in (
                    ("rows", m.rows, "Rows emitted by the source"),
                    ("bytes", m.bytes, "Arrow bytes emitted by the source"),
                    ("batches", m.batches, "Batches emitted by the source"),
                    ("rows_written", m.rows_written, "Rows handed to the sink"),
                    ("checkpoints", m.checkpoints, "Completed checkpoints"),
                    ("retries", m.retries, "Sink retries"),
                    ("errors", m.errors, "Sink errors"),
                    ("checkpoint_duration_seconds", m.checkpoint_total_seconds, "Time spent checkpointing"),
                ):
                    yield CounterMetricFamily(f"arrowflow_{name}", doc, value=value)
                yield GaugeMetricFamily(
                    "arrowflow_checkpoint_last_duration_seconds",
                    "Duration of the last checkpoint",
                    value=m.checkpoint_last_seconds,
                )
                yield GaugeMetricFamily(
                    "arrowflow_lag",
                    "Rows waiting upstream (sum over splits that report it)",
                    value=m.lag or 0,
                )
                yield from _event_time_families(m)

        self.registry = CollectorRegistry()
        self.registry.register(_Collector())  # type: ignore[arg-type]
        server, thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self._server = server
        self._thread = thread
        self.port: int = server.server_address[1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
