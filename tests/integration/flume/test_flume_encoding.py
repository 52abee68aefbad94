"""The vectorized Avro event encoder of FlumeSink against fastavro (the oracle, with the suite's own
copy of Flume's ``AvroFlumeEvent`` schema from flume_test_server.py), byte for byte, and the HTTP
request body against ``json`` -- no server needed."""

from __future__ import annotations

import io

import fastavro
import numpy as np
import pyarrow as pa
from flume_test_server import EVENT_SCHEMA, Event, parse_json_events
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow.connectors.flume import FlumeSink, json_array, zigzag_varints

EVENT = fastavro.parse_schema(EVENT_SCHEMA)
LONG = fastavro.parse_schema("long")

text = st.text(max_size=20)


def _oracle_event(header: str | None, extra: list | None, body: bytes) -> bytes:
    headers: dict[str, str] = {"const": "c"}
    if header is not None:
        headers["h"] = header
    for k, v in extra or []:
        if v is not None:
            # A repeated key is sent once, with its last value, where it last occurred.
            headers.pop(k, None)
            headers[k] = v
    out = io.BytesIO()
    fastavro.schemaless_writer(out, EVENT, {"headers": headers, "body": body})
    return out.getvalue()


keys = st.one_of(st.sampled_from(["const", "h", "k"]), text)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), text),
            st.one_of(st.none(), st.lists(st.tuples(keys, st.one_of(st.none(), text)), max_size=5)),
            st.binary(max_size=300),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_avro_events_equal_fastavro(data: list) -> None:
    # Map keys may repeat each other and the "const"/"h" headers.
    batch = pa.record_batch(
        {
            "h": pa.array([r[0] for r in data], pa.string()),
            "m": pa.array([r[1] for r in data], pa.map_(pa.string(), pa.string())),
            "body": pa.array([r[2] for r in data], pa.binary()),
        }
    )
    sink = FlumeSink(
        protocol="avro",
        address="127.0.0.1:9",
        header_columns=["h"],
        headers_column="m",
        static_headers={"const": "c"},
    )
    got = sink.encode(batch.slice(1)).to_pylist()  # sliced input: offsets must be respected
    assert got == [_oracle_event(*r) for r in data[1:]]
    sink.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=50))
def test_zigzag_varints_equal_fastavro(values: list[int]) -> None:
    expected = []
    for v in values:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, LONG, v)
        expected.append(out.getvalue())
    assert zigzag_varints(np.array(values, dtype=np.int64)).to_pylist() == expected


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(text, st.lists(st.tuples(keys, text), max_size=4)), min_size=1, max_size=30),
    st.integers(0, 5),
)
def test_http_request_body_is_what_jsonhandler_accepts(events: list, cut: int) -> None:
    """The request parses as the agent's JSONHandler parses it (flume_test_server.parse_json_events,
    checked against the real agent): a map entry repeating a key is sent once, with its last value."""
    batch = pa.record_batch(
        {
            "body": pa.array([b for b, _ in events], pa.string()),
            "m": pa.array([h for _, h in events], pa.map_(pa.string(), pa.string())),
        }
    )
    sink = FlumeSink(protocol="http", address="http://127.0.0.1:9/", headers_column="m")
    entries = sink.encode(batch)
    cut = min(cut, len(events) - 1)
    got = parse_json_events(json_array(entries.slice(cut)))
    assert got == [Event(dict(h), b.encode()) for b, h in events[cut:]]
    sink.close()
