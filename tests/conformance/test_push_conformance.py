"""The conformance suites over issue 9's connectors where they apply:

* :class:`~arrowflow.connectors.prometheus.PrometheusSink` (sink suite) against the real Prometheus
  2.42 on 127.0.0.1:9090 (``tests/services/prometheus.sh``), read back through the query API. Every
  sink writes a fresh metric name, so tests never see each other's samples.
* :class:`~arrowflow.connectors.queue.QueueSource` (source suite, ``replayable = False``: it is an
  at-most-once in-memory push source, a restart replays nothing). The queue is filled and left
  open, i.e. unbounded, as a live producer would leave it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.prometheus import PrometheusSink, default_batching
from arrowflow.connectors.queue import QueueSource
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

PROMETHEUS = f"http://127.0.0.1:{int(os.environ.get('PROMETHEUS_PORT', '9090'))}"


def _prometheus_up() -> None:
    port = int(PROMETHEUS.rsplit(":", 1)[1])
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        pytest.fail(
            f"Prometheus is not answering on 127.0.0.1:{port}; start it with "
            "`sh tests/services/up.sh prometheus`",
            pytrace=False,
        )


class TestPrometheusSink(SinkConformance):
    """Rows are samples ``{series, value, timestamp}``; the series label groups them in 7 series."""

    read_back_timeout = 20.0

    def make_data(self) -> pa.Table:
        base = make_table(self.num_rows)
        # Recent timestamps, increasing with id, so each series' samples arrive in time order.
        start = int(time.time() * 1000) - 30 * 60 * 1000
        ids = np.asarray(base.column("id"))
        return pa.table(
            {
                "series": pa.array([f"s{i % 7}" for i in ids.tolist()], pa.string()),
                "value": base.column("value"),
                "timestamp": pa.array(start + ids * 10, pa.timestamp("ms")),
            }
        )

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        _prometheus_up()
        self.metric = "af_conf_" + uuid.uuid4().hex[:12]
        return PrometheusSink(
            url=f"{PROMETHEUS}/api/v1/write",
            metric_name=self.metric,
            label_columns=["series"],
            batching=default_batching(),
            error_policy=error_policy,
        )

    def read_back(self) -> pa.Table:
        query = urllib.parse.urlencode({"query": f"{self.metric}[2h]"})
        with urllib.request.urlopen(f"{PROMETHEUS}/api/v1/query?{query}", timeout=10) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        series, values, stamps = [], [], []
        for result in answer["data"]["result"]:
            for ts, value in result["values"]:
                series.append(result["metric"]["series"])
                values.append(float(value))
                stamps.append(round(float(ts) * 1000))
        return pa.table(
            {
                "series": pa.array(series, pa.string()),
                "value": pa.array(values, pa.float64()),
                "timestamp": pa.array(stamps, pa.int64()).cast(pa.timestamp("ms")),
            }
        )

    def bad_batch(self) -> pa.RecordBatch:
        # A sample without a value cannot be written: every row goes to the error policy.
        good = self.make_data().slice(0, 5)
        return good.set_column(1, "value", pa.nulls(5, pa.float64())).to_batches()[0]


class TestQueueSource(SourceConformance):
    replayable = False  # at-most-once: a reopened reader reports its position but replays nothing

    def make_source(self, data: pa.Table) -> Source:
        source = QueueSource(schema=data.schema, capacity=data.num_rows + 1)
        for batch in data.to_batches(max_chunksize=113):
            assert source.put(batch, timeout=5)
        return source
