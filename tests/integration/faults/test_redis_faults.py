"""RedisSink and RedisStreamSource against the real Redis through the fault proxy (issue 19):
each fault of ``tests/faults/scenario.py`` while data flows; nothing is lost, a silent connection is
noticed by ``socket_timeout`` (the run does not hang), and the metrics show the retries and
reconnects it took."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pytest
from proxy import FaultProxy
from scenario import CAP, FAULTS, check_recovered, run_through, wait_for, write_through

from arrowflow.connectors.redis_ import RedisSink, RedisStreamSource
from arrowflow.errors import ConfigurationError
from arrowflow.testing import make_table
from arrowflow.writer import BatchingConfig

SERVICE = "redis"  # the proxy fixture (conftest.py) fronts this server
TIMEOUT = 1.5  # socket_timeout of the clients under test
ROWS = 3000


def _batching() -> BatchingConfig:
    # Retries for as long as a test may take: the faults end, the rows must get through.
    return BatchingConfig(
        max_request_rows=250, max_in_flight=2, max_attempts=None, max_retry_time=CAP, max_backoff=0.5
    )


@pytest.mark.parametrize("fault", FAULTS)
def test_sink_loses_nothing_through(fault: str, proxy: FaultProxy, r: Any) -> None:
    rows = make_table(ROWS)
    key = f"{r.prefix}:h"
    sink = RedisSink(
        f"redis://127.0.0.1:{proxy.port}/0",
        command="hset",
        key=key,
        field_column="id",
        value_column="name",
        socket_timeout=TIMEOUT,
        batching=_batching(),
    )
    m = write_through(fault, proxy, sink, rows)
    got = {int(k): v.decode() for k, v in r.hgetall(key).items()}
    assert got == dict(zip(rows.column("id").to_pylist(), rows.column("name").to_pylist(), strict=True))
    assert m["rows_written"] >= ROWS and m["rows_failed"] == 0
    check_recovered(fault, m, proxy)


def test_sink_without_socket_timeout_is_a_configuration_choice(proxy: FaultProxy) -> None:
    with pytest.raises(ConfigurationError) as err:
        RedisSink(f"redis://127.0.0.1:{proxy.port}/0", command="set", key="k", socket_timeout=0)
    assert err.value.option == "socket_timeout"
    with pytest.raises(ConfigurationError) as err:
        RedisStreamSource(f"redis://127.0.0.1:{proxy.port}/0", streams="s", group="g", connect_timeout=-1)
    assert err.value.option == "connect_timeout"


@pytest.mark.parametrize("fault", FAULTS)
def test_stream_source_loses_nothing_through(fault: str, proxy: FaultProxy, r: Any) -> None:
    stream = f"{r.prefix}:s"
    pipe = r.pipeline(transaction=False)
    for i in range(ROWS):
        pipe.xadd(stream, {"data": b"%d" % i})
    pipe.execute()
    src = RedisStreamSource(
        f"redis://127.0.0.1:{proxy.port}/0", streams=stream, group="g", socket_timeout=TIMEOUT
    )
    reader = src.open(src.plan()[0])
    seen: list[int] = []

    def read(until: int) -> None:
        end = time.monotonic() + CAP
        while len(set(seen)) < until:
            assert time.monotonic() < end, f"only {len(set(seen))} of {until} entries read within {CAP} s"
            batch = reader.read_batch(200, 0.2)
            if batch is not None:
                seen.extend(int(v) for v in batch.column("value").to_pylist())
                reader.commit(reader.snapshot())

    try:
        read(ROWS // 3)  # a third before the fault
        run_through(
            fault,
            proxy,
            lambda: read(ROWS),
            detected=lambda: src.metrics()["timeouts"] >= 1,
            reset_direction="down",  # cut a reply: entries delivered but never received
            reset_bytes=3000,
        )
    finally:
        reader.close()
    m = src.metrics()
    assert set(seen) == set(range(ROWS))  # nothing lost (at-least-once: a cut reply is read again)
    duplicates = len(seen) - ROWS
    if fault in ("reset", "blackhole", "stall"):
        assert m["reconnects"] >= 1, m
    if fault in ("blackhole", "stall"):
        assert m["timeouts"] >= 1, m
    if fault in ("latency", "bandwidth"):
        assert duplicates == 0 and m["reconnects"] == 0, (duplicates, m)
    # every entry was acknowledged once read: nothing is left pending for the group
    wait_for(lambda: r.xpending(stream, "g")["pending"] == 0, "the acknowledgements")
    assert isinstance(pa.array(seen), pa.Array)
