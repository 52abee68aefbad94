"""``arrowflow._ext.kafka_fetch``'s buffer building against the pure-Python reference, and the
library loading of the Kafka source's columnar fetch (no broker: see
tests/integration/kafka/test_kafka_columnar.py for the real consumer)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowflow._ext import kafka_fetch as kernel
from arrowflow._reference import kafka_fetch as reference
from arrowflow.connectors.kafka.columnar import fetcher_config, librdkafka_path

_blob = st.none() | st.binary(max_size=40)
_name = st.text(max_size=8).map(str.encode)
_headers = st.none() | st.lists(st.tuples(_name, _blob), max_size=4)
_record = st.tuples(
    _blob,
    _blob,
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**63 - 1),
    st.integers(-1, 2**62),
    _headers,
)


def _same(got: dict[str, pa.Array], want: dict[str, pa.Array]) -> None:
    assert sorted(got) == sorted(want)
    for name, col in want.items():
        got[name].validate(full=True)
        assert got[name].type == col.type, name
        assert got[name].to_pylist() == col.to_pylist(), name


@settings(max_examples=300, deadline=None)
@given(st.lists(_record, max_size=60), st.booleans(), st.booleans(), st.booleans())
def test_columns_match_the_reference(
    records: list[tuple[Any, ...]], keys: bool, ts: bool, hdrs: bool
) -> None:
    _same(
        kernel.columns_from_records(records, keys, ts, hdrs),
        reference.columns_from_records(records, keys, ts, hdrs),
    )


def test_nulls_empties_and_header_values_stay_apart() -> None:
    records = [
        (None, None, 0, 5, -1, None),  # a tombstone without key, timestamp or headers
        (b"", b"", 1, 6, 0, []),  # empty value and key, an empty header list (not null)
        (b"v", b"k", 2, 7, 1_700_000_000_000, [(b"a", None), (b"a", b""), ("é".encode(), b"x")]),
    ]
    got = kernel.columns_from_records(records)
    assert got["value"].to_pylist() == [None, b"", b"v"]
    assert got["key"].to_pylist() == [None, b"", b"k"]
    assert got["headers"].to_pylist() == [None, [], [("a", None), ("a", b""), ("é", b"x")]]
    _same(got, reference.columns_from_records(records))


def test_a_header_name_that_is_not_utf8_raises() -> None:
    records = [(b"v", None, 0, 0, 0, [(b"\xff", b"x")])]
    with pytest.raises(ValueError, match="UTF-8"):
        kernel.columns_from_records(records)
    with pytest.raises(ValueError, match="UTF-8"):
        reference.columns_from_records(records)


def test_no_records_make_empty_columns() -> None:
    _same(kernel.columns_from_records([]), reference.columns_from_records([]))


def test_librdkafka_loads_and_a_fetcher_refuses_a_bad_option() -> None:
    kernel.load(librdkafka_path())
    assert kernel.loaded() is not None
    with pytest.raises(ValueError, match=r"no\.such\.option"):
        kernel.Fetcher([("no.such.option", "1")], "t")


def test_fetcher_config_is_strings_without_callbacks() -> None:
    got = fetcher_config({"a": True, "b": False, "c": 5, "stats_cb": print, "d": "x"})
    assert got == [("a", "true"), ("b", "false"), ("c", "5"), ("d", "x")]


def test_close_from_another_thread_during_a_read_waits_for_it() -> None:
    # No broker at this address: read() sits in librdkafka (GIL released) for its timeout while the
    # main thread closes the fetcher. The handle must outlive the call (a use after free crashes).
    import socket
    import threading

    kernel.load(librdkafka_path())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    for _ in range(5):
        f = kernel.Fetcher([("bootstrap.servers", dead), ("group.id", "g"), ("log_level", "0")], "t")
        f.assign([(0, 0)])
        outcome: list[object] = []
        entered = threading.Event()

        def read(f: Any = f, outcome: list[object] = outcome, entered: threading.Event = entered) -> None:
            entered.set()
            try:
                outcome.append(f.read(10, 0.5))
            except RuntimeError as exc:  # closed before the call began
                outcome.append(exc)

        t = threading.Thread(target=read)
        t.start()
        entered.wait()
        f.close()
        t.join()
        assert len(outcome) == 1
        if isinstance(outcome[0], tuple):
            assert len(outcome[0][0]["offset"]) == 0
        with pytest.raises(RuntimeError, match="closed"):
            f.read(1, 0.0)
