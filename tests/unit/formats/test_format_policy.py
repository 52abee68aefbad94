"""decode_with_policy / encode_with_policy with each error policy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from format_samples import CollectingSink

from arrowflow.connectors.memory import MemorySink
from arrowflow.error_policy import DeadLetter, ErrorPolicy
from arrowflow.errors import SerializationError
from arrowflow.formats import Csv, Json, decode_with_policy, encode_with_policy

SCHEMA = pa.schema([("a", pa.int64()), ("b", pa.string())])
PAYLOADS = pa.array([b'{"a":1,"b":"x"}', b"{bad", b'{"a":3}', None, b'{"a":5}'], pa.binary())
METADATA = pa.RecordBatch.from_pydict(
    {"_offset": [10, 11, 12, 13, 14], "_key": ["k0", "k1", "k2", "k3", "k4"]}
)


def test_fail_raises() -> None:
    with pytest.raises(SerializationError):
        decode_with_policy(Json(SCHEMA), PAYLOADS, "fail")


def test_skip_counts() -> None:
    policy = ErrorPolicy.resolve("skip")
    batch, rows = decode_with_policy(Json(SCHEMA), PAYLOADS, policy, METADATA)
    assert batch.column("a").to_pylist() == [1, 3, 5]
    assert rows.tolist() == [0, 2, 4]
    assert policy.skipped == 2
    assert METADATA.take(pa.array(rows)).column("_offset").to_pylist() == [10, 12, 14]


def test_dead_letter_gets_payload_metadata_and_error() -> None:
    sink = MemorySink()
    batch, rows = decode_with_policy(
        Json(SCHEMA), PAYLOADS, DeadLetter(sink=sink, error_column="why"), METADATA
    )
    assert rows.tolist() == [0, 2, 4] and batch.num_rows == 3
    dead = sink.batches[0]
    assert dead.schema.names == ["payload", "_offset", "_key", "why"]
    assert dead.column("payload").to_pylist() == [b"{bad", None]
    assert dead.column("_offset").to_pylist() == [11, 13]
    assert dead.column("why")[1].as_py() == "null payload"


def test_metadata_from_a_function_is_built_only_when_a_payload_fails() -> None:
    calls: list[int] = []

    def metadata() -> pa.RecordBatch:
        calls.append(1)
        return METADATA

    sink = MemorySink()
    good = pa.array([b'{"a":1,"b":"x"}', b'{"a":3}'], pa.binary())
    batch, _rows = decode_with_policy(Json(SCHEMA), good, DeadLetter(sink=sink), metadata)
    assert batch.num_rows == 2 and calls == [] and not sink.batches
    decode_with_policy(Json(SCHEMA), PAYLOADS, DeadLetter(sink=sink, error_column="why"), metadata)
    assert calls == [1]
    assert sink.batches[0].column("_offset").to_pylist() == [11, 13]
    with pytest.raises(ValueError, match="metadata has 5 rows for 2 payloads"):
        decode_with_policy(Json(SCHEMA), pa.array([b"{bad", b"{"], pa.binary()), "skip", metadata)


def test_encode_with_policy_sends_rows_to_dead_letter() -> None:
    batch = pa.RecordBatch.from_pydict({"x": [1.0, float("nan"), 2.0, float("inf")], "k": [0, 1, 2, 3]})
    sink = CollectingSink()
    payloads, rows = encode_with_policy(Json(), batch, sink)
    assert rows.tolist() == [0, 2]
    assert payloads.null_count == 0 and len(payloads) == 2
    dead = sink.table()
    assert dead.column("k").to_pylist() == [1, 3]
    assert dead.schema.names == ["x", "k", "error"]
    with pytest.raises(SerializationError):
        encode_with_policy(Json(), batch, "fail")


def test_no_failures_is_a_pass_through(batch8: pa.RecordBatch) -> None:
    fmt = Csv(batch8.schema)
    policy = ErrorPolicy.resolve("skip")
    payloads, rows = encode_with_policy(fmt, batch8, policy)
    assert np.array_equal(rows, np.arange(batch8.num_rows))
    out, _idx = decode_with_policy(fmt, payloads, policy)
    assert out.equals(batch8) and policy.handled == 0
