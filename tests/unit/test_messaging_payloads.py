"""What the brokers' shared payload code (``arrowflow.connectors._messaging.payloads``) sends: the
columns that address a message (routing, key, subject, ...) stay out of the default payload, a
format that picks its own columns gets the whole batch, and a missing addressing column fails the
write naming the option. KafkaSink, RedisSink and every MessageSink select their payload columns
here, so these rules hold for all of them. No server is needed: this is column arithmetic on Arrow.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from arrowflow.connectors._messaging import PayloadSpec, check_columns, payload_columns
from arrowflow.errors import ConfigurationError
from arrowflow.formats import Json

BATCH = pa.record_batch(
    {"id": [1, 2], "subject": ["a.b", "a.c"], "key": ["k1", "k2"], "v": ["x", "y"]},
)


def test_addressing_columns_stay_out_of_the_default_payload() -> None:
    assert payload_columns(BATCH.schema.names, None, None, ("subject", "key", None)) == ["id", "v"]


def test_value_columns_and_a_format_with_its_own_columns_win() -> None:
    names = BATCH.schema.names
    assert payload_columns(names, ("v",), None, ("subject",)) == ["v"]
    assert payload_columns(names, None, Json(columns=["v"]), ("subject",)) == names


def test_encoded_payloads_leave_out_the_routing_and_key_columns() -> None:
    spec = PayloadSpec(routing_column="subject", key_column="key", generate_ids=True)
    entries = spec.encode(BATCH)
    assert isinstance(entries, pa.StructArray)
    payloads = [json.loads(p) for p in entries.field("payload").to_pylist()]
    assert payloads == [{"id": 1, "v": "x"}, {"id": 2, "v": "y"}]
    assert entries.field("routing").to_pylist() == ["a.b", "a.c"]
    assert entries.field("key").to_pylist() == ["k1", "k2"]
    ids = entries.field("id").to_pylist()
    assert len(set(ids)) == 2 and all(i.endswith(("-0", "-1")) for i in ids)


def test_a_missing_addressing_column_names_the_option() -> None:
    check_columns(BATCH, ["subject", None, "key"], "test sink", "subject_column")
    with pytest.raises(ConfigurationError) as info:
        check_columns(BATCH, ["subject", "nope"], "test sink", "subject_column")
    assert info.value.option == "subject_column"
    assert "['nope']" in str(info.value)
