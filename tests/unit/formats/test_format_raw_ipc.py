"""Raw and ArrowIpc: pass-through bytes, UTF-8 validation, batch-level IPC, row API."""

from __future__ import annotations

import pyarrow as pa
import pytest

from arrowflow.errors import ConfigurationError, SerializationError
from arrowflow.formats import ArrowIpc, Raw, for_name


def test_raw_round_trip_keeps_tombstones() -> None:
    batch = pa.RecordBatch.from_pydict({"value": pa.array([b"a", None, b"\x00\xff", b""]), "k": [1, 2, 3, 4]})
    fmt = Raw()
    encoded = fmt.encode(batch)
    assert encoded.payloads.to_pylist() == [b"a", None, b"\x00\xff", b""]
    decoded = fmt.decode(encoded.payloads)
    assert decoded.batch.to_pylist() == [{"value": v} for v in [b"a", None, b"\x00\xff", b""]]
    assert decoded.failed.size == 0


def test_raw_string_rejects_invalid_utf8() -> None:
    fmt = for_name("raw", column="text", type="string")
    decoded = fmt.decode(pa.array([b"ok", b"\xff\xfe", b"\xc3\xa9"]))
    assert decoded.batch.column("text").to_pylist() == ["ok", "é"]
    assert decoded.row_indices.tolist() == [0, 2]
    assert decoded.failed.tolist() == [1]
    with pytest.raises(ConfigurationError):
        Raw(type=pa.int64())


def test_arrow_ipc_batch_mode(batch8: pa.RecordBatch) -> None:
    fmt = ArrowIpc(batch8.schema, compression="zstd")
    payload = fmt.encode_batch(batch8)
    assert fmt.decode_batch(payload).equals(batch8)
    with pytest.raises(SerializationError):
        fmt.decode_batch(b"garbage")
    with pytest.raises(SerializationError):
        fmt.decode_batch(ArrowIpc().encode_batch(batch8.select(["id"])))


def test_arrow_ipc_row_api_and_multi_row_payloads(batch8: pa.RecordBatch) -> None:
    fmt = ArrowIpc()
    small = batch8.slice(0, 5)
    encoded = fmt.encode(small)
    assert len(encoded.payloads) == 5
    whole = fmt.encode_batch(batch8.slice(5, 3))
    payloads = pa.array([*encoded.payloads.to_pylist()[:2], b"junk", whole, None], pa.binary())
    decoded = fmt.decode(payloads)
    assert decoded.batch.equals(pa.concat_batches([batch8.slice(0, 2), batch8.slice(5, 3)]))
    assert decoded.row_indices.tolist() == [0, 1, 3, 3, 3]
    assert decoded.failed.tolist() == [2, 4]


def _hostile_ipc() -> bytes:
    """An IPC stream whose string column has a middle offset a gigabyte past its data (the writer
    copies buffers as they are; the reader checks only their sizes)."""
    import numpy as np
    import pyarrow.ipc as ipc

    offsets = pa.py_buffer(np.array([0, 1 << 30, 2], np.int32).tobytes())
    column = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"ok")])
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, pa.schema([("s", pa.string())])) as writer:
        writer.write_batch(pa.record_batch([column], names=["s"]))
    return sink.getvalue().to_pybytes()


def test_arrow_ipc_refuses_invalid_data_in_a_well_formed_stream() -> None:
    payload = _hostile_ipc()
    import pyarrow.ipc as ipc

    assert ipc.open_stream(payload).read_all().num_rows == 2  # pyarrow alone accepts it
    with pytest.raises(SerializationError, match="not a valid Arrow IPC stream"):
        ArrowIpc().decode_batch(payload)
    decoded = ArrowIpc().decode(pa.array([payload], pa.binary()))
    assert decoded.failed.tolist() == [0] and decoded.batch.num_rows == 0


def test_arrow_ipc_refuses_a_field_name_that_is_not_utf8() -> None:
    # Found by `make fuzz` (tests/fuzz/corpus/arrow_ipc_format/crash-a332cbd3...): pyarrow reads the
    # schema, and only decoding the name raised UnicodeDecodeError, past the error policy.
    good = ArrowIpc().encode_batch(pa.record_batch({"zq": [1, 2]}))
    at = good.index(b"zq")
    payload = good[:at] + b"\xa1q" + good[at + 2 :]
    with pytest.raises(SerializationError, match="not a valid Arrow IPC stream"):
        ArrowIpc().decode_batch(payload)
    decoded = ArrowIpc().decode(pa.array([good, payload], pa.binary()))
    assert decoded.failed.tolist() == [1] and decoded.batch.num_rows == 2
