"""NatsJetStreamSink against the real nats-server through the fault proxy (issue 19): each fault of
``tests/faults/scenario.py`` while rows are published; every row arrives exactly once (the ids come
from the data: the server drops the retries' duplicates, and the metrics show the retries happened),
a silent connection is noticed by ``publish_timeout`` (the client reconnects at once) instead of after
nats-py's ping timeout, and the metrics count retries, timeouts and reconnects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from proxy import FaultProxy
from scenario import CAP, FAULTS, check_recovered, write_through
from test_nats import _js

from arrowflow.connectors.nats_jetstream import NatsJetStreamSink
from arrowflow.testing import make_table
from arrowflow.writer import BatchingConfig

SERVICE = "nats"  # the proxy fixture (conftest.py) fronts this server
TIMEOUT = 2.0
ROWS = 3000


def _ids(url: str, stream: str) -> list[int]:
    """The ``id`` of every message in the stream, in stream order (read by sequence)."""

    async def read(js: Any) -> list[int]:
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append(json.loads(msg.data)["id"])
        return out

    return _js(url, read)  # type: ignore[no-any-return]


@pytest.mark.parametrize("fault", FAULTS)
def test_sink_delivers_each_row_once_through(
    fault: str, proxy: FaultProxy, stream: str, nats_url: str
) -> None:
    rows = make_table(ROWS).select(["id", "name"])
    sink = NatsJetStreamSink(
        f"nats://127.0.0.1:{proxy.port}",
        subject=f"{stream}.rows",
        msg_id_column="id",
        publish_timeout=TIMEOUT,
        batching=BatchingConfig(
            max_request_rows=250, max_in_flight=2, max_attempts=None, max_retry_time=CAP, max_backoff=0.5
        ),
    )
    m = write_through(fault, proxy, sink, rows, reset_bytes=20_000)
    ids = _ids(nats_url, stream)
    assert sorted(ids) == rows.column("id").to_pylist()  # every row, once (the dedup was needed)
    check_recovered(fault, m, proxy)
