"""MQTT connectors against the real Mosquitto (``mqtt_address``): acks on checkpoint with persistent
sessions, clean sessions, QoS 0 / retain, poison payloads, and a SIGKILLed pipeline process."""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow.connectors.memory import MemorySink
from arrowflow.connectors.mqtt_broker import MqttSink, MqttSource
from arrowflow.errors import ConfigurationError
from arrowflow.formats import Json
from arrowflow.source import SplitReader
from arrowflow.testing import assert_same_rows, make_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))
from crash_harness import DONE, CrashReport, crash_mid_stream

PIPELINE = Path(__file__).resolve().parents[1] / "redis" / "broker_pipeline.py"


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _read(reader: SplitReader, n: int, *, max_rows: int = 64, timeout: float = 15.0) -> pa.Table:
    got: list[pa.RecordBatch] = []
    deadline = time.monotonic() + timeout
    while sum(b.num_rows for b in got) < n and time.monotonic() < deadline:
        b = reader.read_batch(max_rows, 0.3)
        if b is not None:
            got.append(b)
    assert got, "nothing arrived"
    return pa.Table.from_batches(got)


def _quiet(reader: SplitReader, seconds: float = 1.0) -> int:
    """Rows arriving within ``seconds`` (expected: none)."""
    deadline = time.monotonic() + seconds
    rows = 0
    while time.monotonic() < deadline:
        b = reader.read_batch(100, 0.2)
        rows += b.num_rows if b is not None else 0
    return rows


def _connected(reader: SplitReader) -> None:
    deadline = time.monotonic() + 10
    while not reader._client.is_connected():  # type: ignore[attr-defined]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)  # the SUBACK


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_unacknowledged_messages_are_redelivered_acked_ones_are_not(
    mqtt_address: tuple[str, int], protocol: str
) -> None:
    host, port = mqtt_address
    t = make_table(15)  # 3.1.1: Mosquitto's in-flight window (20) bounds unacknowledged messages
    topic, cid = f"it/{_uid()}", f"it-{_uid()}"
    src = MqttSource(
        host,
        port,
        topics=[topic],
        client_id=cid,
        protocol=protocol,
        format=Json(t.schema),
        metadata_columns=["_topic", "_qos", "_retain"],
    )
    reader = src.open(src.plan()[0])
    _connected(reader)
    with MqttSink(host, port, topic=topic, qos=1, protocol=protocol) as sink:
        sink.write_table(t)
    first = _read(reader, 15)
    assert_same_rows(first.select(t.schema.names), t)
    assert set(first.column("_qos").to_pylist()) == {1}
    assert set(first.column("_topic").to_pylist()) == {topic}
    reader.close()  # a crash before the checkpoint: nothing was acknowledged
    reader = src.open(src.plan()[0], 15)
    assert reader.snapshot() == 15
    again = _read(reader, 15)
    assert_same_rows(again.select(t.schema.names), t)  # redelivered by the persistent session
    reader.commit(reader.snapshot())
    time.sleep(0.3)
    reader.close()
    reader = src.open(src.plan()[0], 30)
    try:
        assert _quiet(reader) == 0  # acknowledged: not delivered again
    finally:
        reader.close()


def test_persistent_session_queues_while_away_clean_session_does_not(mqtt_address: tuple[str, int]) -> None:
    host, port = mqtt_address
    t = make_table(50)
    topic = f"it/{_uid()}"
    persistent = MqttSource(host, port, topics=[topic], client_id=f"p-{_uid()}", format=Json(t.schema))
    clean = MqttSource(
        host,
        port,
        topics=[topic],
        client_id=f"c-{_uid()}",
        clean_session=True,
        ack="receipt",
        format=Json(t.schema),
    )
    for src in (persistent, clean):
        r = src.open(src.plan()[0])
        _connected(r)
        r.close()
    with MqttSink(host, port, topic=topic, qos=1) as sink:
        sink.write_table(t)
    r = persistent.open(persistent.plan()[0])
    assert_same_rows(_read(r, 50), t)
    r.close()
    r = clean.open(clean.plan()[0])
    try:
        assert _quiet(r) == 0
    finally:
        r.close()


def test_qos0_retain_and_topic_column(mqtt_address: tuple[str, int]) -> None:
    host, port = mqtt_address
    base = f"it/{_uid()}"
    t = pa.table({"dev": pa.array(["a", "b", "c"]), "temp": pa.array([1.5, 2.5, 3.5])})
    topics = pa.array([f"{base}/{d}" for d in ("a", "b", "c")])
    with MqttSink(
        host, port, topic_column="topic", qos=0, retain=True, value_columns=["dev", "temp"]
    ) as sink:
        sink.write_table(t.append_column("topic", topics))
    # A subscriber arriving later gets the retained message of each topic (wildcard filter).
    src = MqttSource(
        host,
        port,
        topics={f"{base}/+": 0},
        client_id=f"r-{_uid()}",
        clean_session=True,
        ack="receipt",
        format=Json(t.schema),
        metadata_columns=["_topic", "_retain"],
    )
    r = src.open(src.plan()[0])
    try:
        got = _read(r, 3)
        assert_same_rows(got.select(["dev", "temp"]), t)
        assert all(got.column("_retain").to_pylist())
        assert sorted(got.column("_topic").to_pylist()) == sorted(topics.to_pylist())
    finally:
        r.close()
        with MqttSink(host, port, topic_column="topic", qos=0, retain=True, value_column="empty") as sink:
            sink.write_table(pa.table({"topic": topics, "empty": pa.array([b""] * 3)}))  # clears the retained


def test_poison_payloads_go_to_dead_letter(mqtt_address: tuple[str, int]) -> None:
    host, port = mqtt_address
    t = make_table(10)
    topic = f"it/{_uid()}"
    dead = MemorySink()
    src = MqttSource(
        host, port, topics=[topic], client_id=f"d-{_uid()}", format=Json(t.schema), error_policy=dead
    )
    r = src.open(src.plan()[0])
    _connected(r)
    with MqttSink(host, port, topic=topic) as sink:
        sink.write_table(t.slice(0, 5))
    with MqttSink(host, port, topic=topic, value_column="p") as sink:
        sink.write_table(pa.table({"p": pa.array([b"not json", b"[1]"])}))
    with MqttSink(host, port, topic=topic) as sink:
        sink.write_table(t.slice(5))
    try:
        got = _read(r, 10)
        assert_same_rows(got, t)
        assert dead.table().column("payload").to_pylist() == [b"not json", b"[1]"]
        assert dead.table().column("topic").to_pylist() == [topic, topic]
    finally:
        r.close()


@pytest.mark.parametrize(("protocol", "qos"), [("5", 1), ("5", 2), ("3.1.1", 1), ("3.1.1", 2)])
def test_sink_publishes_every_row_in_windows_and_survives_a_dropped_connection(
    mqtt_address: tuple[str, int], protocol: str, qos: int
) -> None:
    """The sink's own connection: every row arrives (QoS 1 and 2, both protocols), at most the
    broker's Receive Maximum unacknowledged (MQTT 5; Mosquitto announces 20), and a request on a
    connection that died is retried on a new one without losing a row."""
    host, port = mqtt_address
    topic = f"it/{_uid()}"
    t = make_table(3000)
    # The reader speaks MQTT 5 whatever the sink does: its Receive Maximum lets all 3000 rows in
    # before a commit (an MQTT 3.1.1 subscriber gets Mosquitto's 20 unacknowledged).
    src = MqttSource(host, port, topics={topic: qos}, client_id=f"w-{_uid()}", format=Json(t.schema))
    r = src.open(src.plan()[0])
    _connected(r)
    sink = MqttSink(host, port, topic=topic, qos=qos, protocol=protocol)
    try:
        sink.write_table(t.slice(0, 1500))
        sink.flush()
        pub = sink._publisher  # type: ignore[attr-defined]
        assert pub is not None and pub.window(qos) == (20 if protocol == "5" or qos == 2 else 1000)
        pub._sock.shutdown(socket.SHUT_RDWR)  # the broker connection dies between two requests
        sink.write_table(t.slice(1500))
        sink.flush()
        assert sink.metrics()["retries"] >= 1 and sink._publisher is not pub  # type: ignore[attr-defined]
        got = _read(r, 3000, max_rows=1000, timeout=60)
        r.commit(r.snapshot())
        ids = got.column("id").to_pylist()
        assert set(ids) == set(range(3000)), f"{3000 - len(set(ids))} rows lost"
    finally:
        sink.close()
        r.close()


def test_config_errors(mqtt_address: tuple[str, int]) -> None:
    with pytest.raises(ConfigurationError) as e:
        MqttSource(topics=["a"], client_id="x", clean_session=True)
    assert e.value.option == "ack"
    with pytest.raises(ConfigurationError) as e:
        MqttSink(topic="a/#")
    assert e.value.option == "topic"
    with pytest.raises(ConfigurationError) as e:
        MqttSource(topics=["a"], client_id="x", protocol="4")
    assert e.value.option == "protocol"


def test_mqtt_pipeline_survives_sigkill(mqtt_address: tuple[str, int], tmp_path: Path) -> None:
    """MQTT -> pipeline -> MQTT with SIGKILLs: at-least-once, every row arrives at the target topic."""
    host, port = mqtt_address
    n = 600  # below Mosquitto's 1000 queued messages per session
    src_topic, dst_topic, cid = f"crash/{_uid()}/in", f"crash/{_uid()}/out", f"crash-{_uid()}"
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    received: list[bytes] = []
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        with lock:
            received.append(msg.payload)

    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.connect(host, port)
    sub.subscribe(dst_topic, qos=1)
    sub.loop_start()
    try:
        session = MqttSource(host, port, topics=[src_topic], client_id=cid)
        r = session.open(session.plan()[0])
        _connected(r)
        r.close()
        t = pa.table({"id": pa.array(np.arange(n)), "text": pa.array([f"t{i}" for i in range(n)])})
        with MqttSink(host, port, topic=src_topic, qos=1) as sink:
            sink.write_table(t)
        cmd = [
            sys.executable,
            str(PIPELINE),
            "mqtt",
            "--url",
            f"{host}:{port}",
            "--source",
            src_topic,
            "--target",
            dst_topic,
            "--client-id",
            cid,
            "--last",
            str(n - 1),
            "--checkpoint-dir",
            str(tmp_path / "cp"),
            "--idle",
            "3",
            "--delay",
            "0.02",
            "--batch-rows",
            "10",  # 60 batches
        ]

        def verify(report: CrashReport) -> None:
            assert DONE in report.final_stdout.splitlines()
            deadline = time.monotonic() + 10
            while True:
                with lock:
                    ids = {int(p.split(b'"id":')[1].split(b",")[0]) for p in received}
                if ids == set(range(n)) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert ids == set(range(n)), f"{n - len(ids)} rows lost"

        crash_mid_stream(cmd, verify=verify, kills=3, kill_after=(2, 15), seed=3)
    finally:
        sub.loop_stop()
        sub.disconnect()
