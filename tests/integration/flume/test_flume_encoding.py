"""The vectorized Avro event encoder of FlumeSink against fastavro (the oracle), byte for byte, and
the HTTP request body against ``json`` -- no server needed."""

from __future__ import annotations

import io
import json

import fastavro
import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow.connectors.flume import AVRO_SOURCE_PROTOCOL, FlumeSink, json_array, zigzag_varints

EVENT = fastavro.parse_schema(
    {"namespace": "org.apache.flume.source.avro", **AVRO_SOURCE_PROTOCOL["types"][1]}
)
LONG = fastavro.parse_schema("long")

text = st.text(max_size=20)
rows = st.lists(
    st.tuples(
        st.one_of(st.none(), text),
        st.one_of(st.none(), st.lists(st.tuples(text, st.one_of(st.none(), text)), max_size=4)),
        st.binary(max_size=300),
    ),
    min_size=1,
    max_size=40,
)


def _oracle_event(header: str | None, extra: list | None, body: bytes) -> bytes:
    headers: dict[str, str] = {"const": "c"}
    if header is not None:
        headers["h"] = header
    for k, v in extra or []:
        if v is not None:
            headers.pop(k, None)  # fastavro writes a dict: the last value of a key wins, in place
            headers[k] = v
    out = io.BytesIO()
    fastavro.schemaless_writer(out, EVENT, {"headers": headers, "body": body})
    return out.getvalue()


@settings(max_examples=60, deadline=None)
@given(rows)
def test_avro_events_equal_fastavro(data: list) -> None:
    # Keys of the map never repeat "const"/"h" and never repeat inside a row, so the byte streams
    # are comparable with a dict-based writer.
    clean = []
    for header, extra, body in data:
        seen: set[str] = {"const", "h"}
        kept = []
        for k, v in extra or []:
            if k not in seen:
                seen.add(k)
                kept.append((k, v))
        clean.append((header, kept if extra is not None else None, body))
    batch = pa.record_batch(
        {
            "h": pa.array([r[0] for r in clean], pa.string()),
            "m": pa.array([r[1] for r in clean], pa.map_(pa.string(), pa.string())),
            "body": pa.array([r[2] for r in clean], pa.binary()),
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
    assert got == [_oracle_event(*r) for r in clean[1:]]
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
    st.lists(st.tuples(text, st.dictionaries(text, text, max_size=3)), min_size=1, max_size=30),
    st.integers(0, 5),
)
def test_http_request_body_is_a_json_array_of_events(events: list, cut: int) -> None:
    batch = pa.record_batch(
        {
            "body": pa.array([b for b, _ in events], pa.string()),
            "m": pa.array([list(h.items()) for _, h in events], pa.map_(pa.string(), pa.string())),
        }
    )
    sink = FlumeSink(protocol="http", address="http://127.0.0.1:9/", headers_column="m")
    entries = sink.encode(batch)
    cut = min(cut, len(events) - 1)
    doc = json.loads(json_array(entries.slice(cut)))
    assert doc == [{"headers": h, "body": b} for b, h in events[cut:]]
    sink.close()
