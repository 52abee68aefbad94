"""PulsarSource / PulsarSink against Apache Pulsar 4.0 standalone (tests/services/pulsar.sh), binary
protocol on 127.0.0.1:$PULSAR_PORT (6650), admin REST API on $PULSAR_HTTP_PORT (8080).

Round trips through the real broker, acknowledgement on checkpoint commit (what is not committed is
redelivered), subscription types, start/stop cursors, key routing with Key_Shared, poison messages to
a dead-letter sink, and SIGKILL crash/restart runs of both directions.
"""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from arrowflow import Pipeline
from arrowflow.connectors.collection import CollectionSource
from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.pulsar_broker import PulsarSink, PulsarSource, decode_message_id, encode_message_id
from arrowflow.errors import ConfigurationError, SerializationError
from arrowflow.formats import Json
from arrowflow.testing import assert_same_rows, make_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import CrashReport, run_with_crashes

HERE = Path(__file__).resolve().parent
SCHEMA = make_table(1).schema
ID_SCHEMA = pa.schema([("id", pa.int64())])


def _topic() -> str:
    return f"persistent://public/default/it-{uuid.uuid4().hex[:12]}"


def _write(url: str, topic: str, table: pa.Table, **kw: object) -> None:
    with PulsarSink(url, topic=topic, **kw) as sink:  # type: ignore[arg-type]
        sink.write_table(table)


def _read_ids(reader: object, want: int, max_rows: int = 1000, rounds: int = 200) -> list[pa.RecordBatch]:
    out: list[pa.RecordBatch] = []
    got = 0
    for _ in range(rounds):
        if got >= want:
            break
        b = reader.read_batch(max_rows, 0.2)  # type: ignore[attr-defined]
        if b is not None:
            out.append(b)
            got += b.num_rows
    return out


def test_pipeline_round_trip_with_metadata(pulsar_url: str) -> None:
    topic = _topic()
    data = make_table(3000)
    Pipeline(CollectionSource(data, batch_size=700)).to(
        PulsarSink(pulsar_url, topic=topic, key_column="name", value_columns=SCHEMA.names)
    ).run(progress=False)
    src = PulsarSource(
        pulsar_url,
        topics=topic,
        subscription="rt",
        format=Json(SCHEMA),
        stop="latest",
        metadata_columns=["_key", "_topic", "_message_id", "_publish_time", "_redelivery_count"],
    )
    table = src.read_all()
    assert_same_rows(table.select(SCHEMA.names), data)
    # Single-producer, single-partition topic: order is kept.
    assert table.column("id").to_pylist() == list(range(3000))
    assert table.column("_key").to_pylist() == data.column("name").to_pylist()
    assert set(table.column("_topic").to_pylist()) == {topic}
    ids = table.column("_message_id").to_pylist()
    assert len(set(ids)) == 3000
    assert decode_message_id(encode_message_id(decode_message_id(ids[5]))).serialize() == ids[5]
    assert table.column("_redelivery_count").to_pylist() == [0] * 3000


def test_uncommitted_messages_are_redelivered_and_committed_ones_not(pulsar_url: str) -> None:
    topic = _topic()
    # Unbatched: Pulsar acknowledges whole entries, so a partly acknowledged batch comes back whole.
    _write(pulsar_url, topic, make_table(1000), producer_batching=False)
    for stype in ("shared", "exclusive"):
        src = PulsarSource(
            pulsar_url,
            topics=topic,
            subscription=f"ack-{stype}",
            subscription_type=stype,
            format=Json(SCHEMA),
        )
        reader = src.open(src.plan()[0])
        first = _read_ids(reader, 400, max_rows=100)
        committed = reader.snapshot()
        more = _read_ids(reader, 200, max_rows=100)
        assert sum(b.num_rows for b in first) >= 400 and more
        reader.commit(committed)  # acknowledges only what that snapshot holds
        reader.close()
        # A new run without a position (shared: the broker is the truth) gets everything not acked.
        again = src.open(src.plan()[0])
        rest = pa.Table.from_batches(_read_ids(again, 1000 - 400))
        again.close()
        first_ids = set(pa.Table.from_batches(first).column("id").to_pylist())
        rest_ids = set(rest.column("id").to_pylist())
        assert first_ids | rest_ids == set(range(1000)), stype
        assert not first_ids & rest_ids, f"{stype}: committed messages were redelivered"


def test_exclusive_resume_from_position_skips_returned_rows(pulsar_url: str) -> None:
    topic = _topic()
    _write(pulsar_url, topic, make_table(500), batching_max_messages=32)
    src = PulsarSource(pulsar_url, topics=topic, subscription="pos", format=Json(SCHEMA), stop="latest")
    reader = src.open(src.plan()[0])
    first = _read_ids(reader, 150, max_rows=37)
    position = json.loads(json.dumps(reader.snapshot()))
    reader.close()  # nothing committed: the broker redelivers all, the position filters
    resumed = src.open(src.plan()[0], position)
    rest = _read_to_end(resumed)
    resumed.close()
    ids = (
        pa.concat_tables([pa.Table.from_batches(first), pa.Table.from_batches(rest)]).column("id").to_pylist()
    )
    assert sorted(ids) == list(range(500))


def test_exclusive_resume_without_bounds_skips_returned_rows(pulsar_url: str) -> None:
    """The unbounded exclusive reader of one topic (its fast path: ids compared per received chunk)
    skips what the broker redelivers up to the position, in whole chunks and inside a chunk."""
    topic = _topic()
    _write(pulsar_url, topic, make_table(500), batching_max_messages=32)
    src = PulsarSource(pulsar_url, topics=topic, subscription="fast", format=Json(SCHEMA))
    reader = src.open(src.plan()[0])
    assert reader._fast and reader._only_topic is not None  # type: ignore[attr-defined]  # the path under test
    first = _read_ids(reader, 150, max_rows=37)
    position = json.loads(json.dumps(reader.snapshot()))
    reader.close()  # nothing committed: the broker redelivers all 500, the position filters 150
    resumed = src.open(src.plan()[0], position)
    rest = _read_ids(resumed, 350, max_rows=1000)
    assert resumed.read_batch(1000, 1.0) is None, "a message returned before the position came back"
    resumed.close()
    ids = (
        pa.concat_tables([pa.Table.from_batches(first), pa.Table.from_batches(rest)]).column("id").to_pylist()
    )
    assert sorted(ids) == list(range(500))


def _read_to_end(reader: Any) -> list[pa.RecordBatch]:
    """Every batch a bounded reader returns until it is finished."""
    out = []
    while not reader.finished:
        b = reader.read_batch(1000, 0.2)
        if b is not None:
            out.append(b)
    return out


def _ids(n0: int, n1: int) -> pa.Table:
    return pa.table({"id": pa.array(range(n0, n1), pa.int64())})


def _drain(reader: object, want: int, rounds: int = 200) -> list[int]:
    """The ids of up to ``want`` rows read within ``rounds`` reads."""
    return [i for b in _read_ids(reader, want, rounds=rounds) for i in b.column("id").to_pylist()]


def test_exclusive_subscription_over_two_topics_keeps_every_message(pulsar_url: str) -> None:
    # A real broker numbers ledgers across topics: topic a (created first) has lower ledger ids than
    # topic b, so message ids of a and b must never be compared with each other.
    a, b = _topic(), _topic()
    _write(pulsar_url, a, _ids(0, 10))
    _write(pulsar_url, b, _ids(100, 110))
    src = PulsarSource(pulsar_url, topics=[a, b], subscription="two", format=Json(ID_SCHEMA))
    reader = src.open(src.plan()[0])
    assert sorted(_drain(reader, 20)) == [*range(10), *range(100, 110)]
    position = json.loads(json.dumps(reader.snapshot()))
    _write(pulsar_url, a, _ids(10, 12))
    assert _drain(reader, 2) == [10, 11], "messages of the topic with the older ledger were dropped"
    reader.close()  # nothing acknowledged: the broker redelivers everything, the position filters
    resumed = src.open(src.plan()[0], position)
    assert _drain(resumed, 2) == [10, 11]
    assert resumed.read_batch(100, 1.0) is None, "a message returned before the position came back"
    resumed.close()


def test_start_and_stop_cursors(pulsar_url: str) -> None:
    topic = _topic()
    _write(pulsar_url, topic, make_table(300), producer_batching=False)
    everything = PulsarSource(
        pulsar_url,
        topics=topic,
        subscription="all",
        format=Json(SCHEMA),
        stop="latest",
        metadata_columns=["_message_id", "_publish_time"],
    ).read_all()
    ids = everything.column("_message_id").to_pylist()
    start, stop = ids[100], ids[250]
    window = PulsarSource(
        pulsar_url,
        topics=topic,
        subscription="window",
        format=Json(SCHEMA),
        start={"message_id": start},
        stop={"message_id": encode_message_id(decode_message_id(stop))},
    ).read_all()
    assert window.column("id").to_pylist() == list(range(100, 250))
    # Publish-time cursors: everything published at or after the 200th message's time.
    t200 = everything.column("_publish_time")[200].value
    later = PulsarSource(
        pulsar_url,
        topics=topic,
        subscription="time",
        format=Json(SCHEMA),
        start={"publish_time": t200},
        stop="latest",
    ).read_all()
    expected = [
        i for i, t in enumerate(everything.column("_publish_time").cast(pa.int64()).to_pylist()) if t >= t200
    ]
    assert later.column("id").to_pylist() == expected
    assert expected[0] <= 200
    # "latest" as a start cursor on a new subscription: nothing of the backlog.
    src = PulsarSource(pulsar_url, topics=topic, subscription="latest", format=Json(SCHEMA), start="latest")
    reader = src.open(src.plan()[0])
    assert reader.read_batch(100, 0.5) is None
    _write(pulsar_url, topic, make_table(5).set_column(0, "id", pa.array(range(1000, 1005))))
    new = pa.Table.from_batches(_read_ids(reader, 5))
    reader.close()
    assert new.column("id").to_pylist() == list(range(1000, 1005))


def _admin(admin_url: str, method: str, topic: str, suffix: str = "", body: object = None) -> object:
    """One call of the broker's admin REST API on ``topic`` (``/admin/v2/persistent/...``)."""
    path = topic.removeprefix("persistent://")
    req = urllib.request.Request(
        f"{admin_url}/admin/v2/persistent/{path}{suffix}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read()
    return json.loads(text) if text else None


def _keyed(n0: int, n1: int, keys: int) -> pa.Table:
    return pa.table(
        {"id": pa.array(range(n0, n1), pa.int64()), "name": [f"key-{i % keys}" for i in range(n0, n1)]}
    )


def _ids_by_key(table: pa.Table) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, k in zip(table.column("id").to_pylist(), table.column("name").to_pylist(), strict=True):
        out.setdefault(k, []).append(i)
    return out


def _read_each(readers: list[Any], want: int, schema: pa.Schema) -> list[pa.Table]:
    """What each of ``readers`` (readers of one subscription) returns, polled in turn until ``want``
    rows arrived in all; the readers are closed."""
    parts: list[list[pa.RecordBatch]] = [[] for _ in readers]
    total = 0
    for _ in range(300):
        if total >= want:
            break
        for i, r in enumerate(readers):
            b = r.read_batch(500, 0.1)
            if b is not None:
                parts[i].append(b)
                total += b.num_rows
    for r in readers:
        r.close()
    return [pa.Table.from_batches(p, schema=schema) for p in parts]


def test_partitioned_topic_from_the_admin_api(pulsar_url: str, pulsar_admin_url: str) -> None:
    topic = _topic()
    _admin(pulsar_admin_url, "PUT", topic, "/partitions", 3)
    assert _admin(pulsar_admin_url, "GET", topic, "/partitions") == {"partitions": 3, "deleted": False}
    parts = {f"{topic}-partition-{i}" for i in range(3)}
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    _write(pulsar_url, topic, _keyed(0, 1200, 16), key_column="name", value_columns=["id", "name"])
    # Bounded by the last message of every partition (one consumer cannot tell it for a partitioned topic).
    table = PulsarSource(
        pulsar_url,
        topics=topic,
        subscription="bounded",
        format=Json(schema),
        stop="latest",
        metadata_columns=["_topic", "_key"],
    ).read_all()
    assert sorted(table.column("id").to_pylist()) == list(range(1200))
    assert set(table.column("_topic").to_pylist()) == parts, "keys were not spread over the partitions"
    assert table.column("_key").to_pylist() == table.column("name").to_pylist()
    partition_of: dict[str, set[str]] = {}
    for k, t in zip(table.column("name").to_pylist(), table.column("_topic").to_pylist(), strict=True):
        partition_of.setdefault(k, set()).add(t)
    assert all(len(v) == 1 for v in partition_of.values()), "a key went to two partitions"
    for ids in _ids_by_key(table).values():
        assert ids == sorted(ids), "per-key order was not kept"
    # An exclusive reader resumed from its position across partitions returns the rest exactly once.
    src = PulsarSource(pulsar_url, topics=topic, subscription="resume", format=Json(schema), stop="latest")
    reader = src.open(src.plan()[0])
    first = _read_ids(reader, 500, max_rows=100)
    position = json.loads(json.dumps(reader.snapshot()))
    assert set(position["last"]) <= parts
    reader.close()
    resumed = src.open(src.plan()[0], position)
    rest = _read_to_end(resumed)
    final = resumed.snapshot()
    resumed.commit(final)
    resumed.close()
    # Everything is acknowledged: reopened at the final position, the reader knows it is done (the
    # broker has nothing left to deliver that could tell it).
    again = src.open(src.plan()[0], final)
    assert again.finished and again.read_batch(100, 0.5) is None
    again.close()
    first_ids = pa.Table.from_batches(first).column("id").to_pylist()
    rest_ids = pa.Table.from_batches(rest, schema=schema).column("id").to_pylist()
    assert len(first_ids) >= 500 and not set(first_ids) & set(rest_ids)
    assert sorted(first_ids + rest_ids) == list(range(1200))


def test_failover_consumers_share_the_partitions(pulsar_url: str, pulsar_admin_url: str) -> None:
    topic = _topic()
    _admin(pulsar_admin_url, "PUT", topic, "/partitions", 4)
    src = PulsarSource(
        pulsar_url,
        topics=topic,
        subscription="fo",
        subscription_type="failover",
        consumers=2,
        format=Json(ID_SCHEMA),
        metadata_columns=["_topic"],
    )
    readers = [src.open(s) for s in src.plan()]
    # Unbatched and without keys: the producer spreads messages round-robin over the partitions.
    _write(pulsar_url, topic, _ids(0, 800), producer_batching=False)
    tables = _read_each(readers, 800, src.schema)
    assert sorted(tables[0].column("id").to_pylist() + tables[1].column("id").to_pylist()) == list(range(800))
    owned = [set(t.column("_topic").to_pylist()) for t in tables]
    assert owned[0] and owned[1], "failover gave every partition to one consumer"
    assert not owned[0] & owned[1], "a partition was read by both consumers"
    assert owned[0] | owned[1] == {f"{topic}-partition-{i}" for i in range(4)}


def test_topic_pattern_reads_matching_topics_and_finds_new_ones(
    pulsar_url: str, pulsar_admin_url: str
) -> None:
    prefix = f"persistent://public/default/pat-{uuid.uuid4().hex[:8]}"
    plain, partitioned, other = f"{prefix}-plain", f"{prefix}-parted", f"{prefix}x-other"
    _admin(pulsar_admin_url, "PUT", plain)
    _admin(pulsar_admin_url, "PUT", partitioned, "/partitions", 2)
    _admin(pulsar_admin_url, "PUT", other)
    _write(pulsar_url, plain, _ids(0, 100))
    _write(pulsar_url, partitioned, _ids(100, 300), producer_batching=False)
    _write(pulsar_url, other, _ids(1000, 1100))
    src = PulsarSource(
        pulsar_url,
        topics_pattern=f"{prefix}-.*",
        subscription="pattern",
        format=Json(ID_SCHEMA),
        metadata_columns=["_topic"],
    )
    reader = src.open(src.plan()[0])
    got = pa.Table.from_batches(_read_ids(reader, 300), schema=src.schema)
    assert sorted(got.column("id").to_pylist()) == list(range(300))
    assert set(got.column("_topic").to_pylist()) == {
        plain,
        f"{partitioned}-partition-0",
        f"{partitioned}-partition-1",
    }
    # A topic created after the subscription is found by the client's discovery (every 60 s: the
    # Python client ignores pattern_auto_discovery_period) and read from its first message.
    later = f"{prefix}-later"
    _admin(pulsar_admin_url, "PUT", later)
    _write(pulsar_url, later, _ids(500, 550))
    assert sorted(_drain(reader, 50, rounds=600)) == list(range(500, 550)), "the new topic was not read"
    assert reader.read_batch(100, 1.0) is None, "a topic the pattern does not match was read"
    reader.close()


def test_non_persistent_topic_pattern(pulsar_url: str) -> None:
    prefix = f"non-persistent://public/default/np-{uuid.uuid4().hex[:8]}"
    with PulsarSink(pulsar_url, topic=f"{prefix}-a") as sink:  # the topic lives while a client uses it
        src = PulsarSource(
            pulsar_url,
            topics_pattern=f"{prefix}-.*",
            subscription="np",
            format=Json(ID_SCHEMA),
            metadata_columns=["_topic"],
        )
        reader = src.open(src.plan()[0])  # non-persistent: only messages sent after subscribing
        sink.write_table(_ids(0, 10))
        got = pa.Table.from_batches(_read_ids(reader, 10), schema=src.schema)
        reader.close()
    assert got.column("id").to_pylist() == list(range(10))
    assert set(got.column("_topic").to_pylist()) == {f"{prefix}-a"}


def test_key_shared_consumers_get_disjoint_keys(pulsar_url: str) -> None:
    topic = _topic()
    src = PulsarSource(
        pulsar_url,
        topics=topic,
        subscription="ks",
        subscription_type="key_shared",
        consumers=2,
        format=Json(SCHEMA),
    )
    readers = [src.open(s) for s in src.plan()]  # Key_Shared: subscribe before producing
    data = make_table(1200)
    data = data.set_column(2, "name", pa.array([f"key-{i % 16}" for i in range(1200)]))
    _write(pulsar_url, topic, data, key_column="name", value_columns=SCHEMA.names)
    tables = _read_each(readers, 1200, SCHEMA)
    assert sum(t.num_rows for t in tables) == 1200
    keys = [set(t.column("name").to_pylist()) for t in tables]
    assert not keys[0] & keys[1], "a key went to both consumers"
    for t in tables:  # per-key order is kept
        for ids in _ids_by_key(t).values():
            assert ids == sorted(ids)


def test_poison_messages_go_to_dead_letter_sink(pulsar_url: str) -> None:
    topic = _topic()
    raw = pa.table({"value": pa.array([b'{"id": 1}', b"not json", b'{"id": 3}', b"\xff\xfe"], pa.binary())})
    _write(pulsar_url, topic, raw, value_column="value")
    dead = MemorySink()
    src = PulsarSource(
        pulsar_url,
        topics=topic,
        subscription="dlq",
        format=Json(pa.schema([("id", pa.int64())])),
        stop="latest",
        error_policy=dead,
    )
    table = src.read_all()
    assert table.column("id").to_pylist() == [1, 3]
    bad = dead.table()
    assert bad.column("payload").to_pylist() == [b"not json", b"\xff\xfe"]
    assert set(bad.column("topic").to_pylist()) == {topic}
    assert bad.column("message_id").null_count == 0 and all(bad.column("error").to_pylist())
    with pytest.raises(SerializationError):
        PulsarSource(
            pulsar_url,
            topics=topic,
            subscription="dlq-fail",
            format=Json(pa.schema([("id", pa.int64())])),
            stop="latest",
        ).read_all()


def test_sink_failures_follow_the_error_policy(pulsar_url: str) -> None:
    topic = _topic()
    dead = MemorySink()
    # A message over the client's max size is refused: the row goes to the dead-letter sink.
    big = pa.table({"value": pa.array([b"ok-1", b"x" * (6 * 1024 * 1024), b"ok-2"], pa.binary())})
    with PulsarSink(pulsar_url, topic=topic, value_column="value", error_policy=dead) as sink:
        sink.write_table(big)
    assert dead.table().num_rows == 1 and "MessageTooBig" in dead.table().column("error")[0].as_py()
    back = PulsarSource(pulsar_url, topics=topic, subscription="b", stop="latest").read_all()
    assert back.column("value").to_pylist() == [b"ok-1", b"ok-2"]


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError) as e:
        PulsarSource(topics="t", subscription="s", subscription_type="fanout")
    assert e.value.option == "subscription_type"
    with pytest.raises(ConfigurationError) as e:
        PulsarSource(topics="t", subscription="s", consumers=2)
    assert e.value.option == "consumers"
    with pytest.raises(ConfigurationError) as e:
        PulsarSource(topics="t", subscription="s", start={"offset": 3})
    assert e.value.option == "start"
    with pytest.raises(ConfigurationError) as e:
        PulsarSource("http://x", topics="t", subscription="s")
    assert e.value.option == "service_url"
    for both_or_neither in ({"topics": "t", "topics_pattern": "t-.*"}, {}):
        with pytest.raises(ConfigurationError) as e:
            PulsarSource(subscription="s", **both_or_neither)  # type: ignore[arg-type]
        assert e.value.option == "topics"
    with pytest.raises(ConfigurationError) as e:
        PulsarSource(topics_pattern="persistent://public/default/t-(", subscription="s")
    assert e.value.option == "topics_pattern"
    with pytest.raises(ConfigurationError) as e:
        PulsarSource(topics_pattern="persistent://public/default/t-.*", subscription="s", stop="latest")
    assert e.value.option == "stop"
    with pytest.raises(ConfigurationError) as e:
        PulsarSource(topics=["a", "b"], subscription="s", start={"message_id": b"\x08\x01"})
    assert e.value.option == "start"


def _command(*args: str) -> list[str]:
    return [sys.executable, str(HERE / "pulsar_crash_pipeline.py"), *args]


# The crash pipeline holds every batch of at most BATCH rows DELAY seconds, and each SIGKILL lands at
# most MAX_KILL_DELAY seconds after a run's first batch: a killed run gets through at most
# RUN_ROWS rows, so after KILLS kills at least ROWS - KILLS * RUN_ROWS rows are still to do, whatever
# the machine's speed. Every kill therefore lands while data is in flight.
ROWS, BATCH, DELAY, KILLS, MAX_KILL_DELAY = 2000, 50, 0.1, 3, 1.0
RUN_ROWS = (int(MAX_KILL_DELAY / DELAY) + 1) * BATCH
assert ROWS - KILLS * RUN_ROWS >= 5 * BATCH


def _progress(stdout: str) -> list[list[int]]:
    """``[n, lo, hi]`` of every ``rows <n> ids <lo> <hi>`` line a run of pulsar_crash_pipeline.py printed."""
    lines = [ln.split() for ln in stdout.splitlines() if ln.startswith("rows ")]
    return [[int(w[1]), int(w[3]), int(w[4])] for w in lines]


def _rows_of_run(stdout: str) -> int:
    """Rows a run had taken in when it printed its last progress line."""
    progress = _progress(stdout)
    return progress[-1][0] if progress else 0


def _check_kills(report: CrashReport, once: int) -> None:
    """Exactly KILLS SIGKILLs, each while the run had data in flight, a final run that still had data
    to do, and a replay: the runs took in more rows than the ``once`` that one clean run would."""
    assert report.kills == KILLS and report.early_exits == 0, (report.kills, report.early_exits)
    for out in report.killed_stdouts:
        lines = out.splitlines()
        assert "started" in lines and "done" not in lines, f"a kill did not land mid-run: {lines[-3:]}"
        assert 0 < _rows_of_run(out) <= RUN_ROWS
    final = report.final_stdout.splitlines()
    assert "started" in final and "done" in final, "the final run had nothing left to do"
    taken = sum(_rows_of_run(out) for out in report.killed_stdouts) + _rows_of_run(report.final_stdout)
    # A batch printed by a killed run was never covered by a checkpoint: it is read again.
    assert taken >= once + KILLS, f"no replay: {taken} rows taken in for {once}"


def test_sigkill_produce_and_consume(pulsar_url: str, tmp_path: Path) -> None:
    topic = _topic()
    common = ["--url", pulsar_url, "--topic", topic, "--delay", str(DELAY)]
    crash = {"kills": KILLS, "min_delay": 0.3, "max_delay": MAX_KILL_DELAY, "ready_line": "started"}
    produced = run_with_crashes(
        _command("produce", *common, "--rows", str(ROWS), "--checkpoint-dir", str(tmp_path / "cp1")),
        verify=lambda report: None,
        seed=5,
        timeout=120,
        **crash,  # type: ignore[arg-type]
    )
    _check_kills(produced, ROWS)
    everything = PulsarSource(
        pulsar_url,
        topics=topic,
        subscription="check",
        format=Json(pa.schema([("id", pa.int64())])),
        stop="latest",
        metadata_columns=["_message_id"],
    ).read_all()
    ids = everything.column("id").to_pylist()
    assert set(ids) == set(range(ROWS)), f"{ROWS - len(set(ids))} rows lost (at-least-once)"
    # At-least-once: only a killed run can have sent a row that a later run sends again, so an id is
    # repeated at most once per killed run that took it in, and nothing else is sent twice.
    taken_by_killed = [
        (min(p[1] for p in pr), max(p[2] for p in pr)) for pr in map(_progress, produced.killed_stdouts)
    ]
    for i, n in Counter(ids).items():
        if n > 1:
            assert n - 1 <= sum(lo <= i <= hi for lo, hi in taken_by_killed), f"id {i} sent {n} times"
    all_messages = sorted(everything.column("_message_id").to_pylist())
    out = tmp_path / "out"

    def consumed_exactly_once(report: CrashReport) -> None:
        table = ds.dataset(str(out), format="parquet").to_table()
        written = sorted(table.column("_message_id").to_pylist())
        dupes = len(written) - len(set(written))
        assert not dupes, f"{dupes} messages written twice"
        assert written == all_messages, f"{len(all_messages) - len(written)} messages missing"
        assert Counter(table.column("id").to_pylist()) == Counter(ids)

    consumed = run_with_crashes(
        _command("consume", *common, "--checkpoint-dir", str(tmp_path / "cp2"), "--out", str(out)),
        verify=consumed_exactly_once,
        seed=9,
        timeout=120,
        **crash,  # type: ignore[arg-type]
    )
    _check_kills(consumed, len(all_messages))
