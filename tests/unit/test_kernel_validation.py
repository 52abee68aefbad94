"""Every kernel that indexes Arrow buffers refuses invalid Arrow data with ``ValueError`` (issue 19).

Invalid arrays are built the ways a user or an untrusted IPC stream can build them: ``from_buffers``
with offsets that pass the cheap validation (first and last in range) but not the full one, a
dictionary with ``safe=False`` indices, string bytes that are not UTF-8. Without the validation
(``ext/_validate.pxi``) the row loops read outside the buffers (a crash) or write the bytes as text.
Arrays that break only a value rule of Arrow's full validation (a date64 that is not a whole day)
are still accepted: the kernels write such values as they are and never index with them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from arrowflow._ext import avro_encode, bson_encode, bulk, json_encode, kafka_produce, murmur2, remote_write


def _bad_offsets(t: pa.DataType) -> pa.Array:
    """Two values whose middle offset points a gigabyte past the two data bytes."""
    large = t in (pa.large_binary(), pa.large_string())
    offsets = np.array([0, 1 << 30, 2], np.int64 if large else np.int32)
    return pa.Array.from_buffers(t, 2, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"ab")])


def _bad_utf8() -> pa.Array:
    return pa.array([b"ok", b"\xff\xfe"], pa.binary()).view(pa.string())


def _bad_dictionary() -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array([0, 1 << 20], pa.int32()), pa.array(["x"]), safe=False)


def _avro(column: pa.Array) -> Any:
    kind = avro_encode.KINDS["string" if pa.types.is_string(column.type) else "bytes"]
    return avro_encode.encode([column], [kind], [0], [0], [(0, 0)], [(1, 1)], b"")


def _bson(column: pa.Array) -> Any:
    return bson_encode.encode_documents(pa.record_batch({"c": column}))


def _json(column: pa.Array) -> Any:
    return json_encode.encode_rows(pa.record_batch({"c": column}))


def _labels(column: pa.Array) -> Any:
    return remote_write.encode_labels(len(column), [(b"__name__", column)])


def _series_labels(column: pa.Array) -> Any:
    return remote_write.encode_write_request(column, np.zeros(1, np.int64), np.ones(1), np.zeros(1, np.int64))


def _murmur2(column: pa.Array) -> Any:
    return murmur2.murmur2(column)


def _produce(column: pa.Array) -> Any:
    binary = column.view(pa.binary()) if pa.types.is_string(column.type) else column
    return kafka_produce.produce_rows(lambda *a: None, "t", binary, None, np.full(len(binary), -1, np.int32))


def _bulk_ids(column: pa.Array) -> Any:
    return bulk.encode_entries(None, action="delete", ids=column)


KERNELS: dict[str, Callable[[pa.Array], Any]] = {
    "avro_encode": _avro,
    "bson": _bson,
    "json": _json,
    "remote_write.encode_labels": _labels,
    "remote_write.encode_write_request": _series_labels,
    "murmur2": _murmur2,
    "kafka_produce": _produce,
    "bulk": _bulk_ids,
}
# Kernels that write text (the others copy or hash bytes: UTF-8 does not matter to them).
TEXT_KERNELS = ["avro_encode", "bson", "json", "remote_write.encode_labels", "bulk"]
DICTIONARY_KERNELS = ["bson", "json", "remote_write.encode_labels", "murmur2", "bulk"]


OFFSET_TYPES = [pa.binary(), pa.string(), pa.large_binary(), pa.large_string()]
# kafka_produce takes binary only (a TypeError otherwise, tested with the Kafka sink).
OFFSET_CASES = [(n, t) for n in KERNELS for t in OFFSET_TYPES if n != "kafka_produce" or t == pa.binary()]


@pytest.mark.parametrize(("name", "t"), OFFSET_CASES)
def test_offsets_out_of_range_are_refused(name: str, t: pa.DataType) -> None:
    with pytest.raises(ValueError, match="invalid Arrow data"):
        KERNELS[name](_bad_offsets(t))


@pytest.mark.parametrize("name", TEXT_KERNELS)
def test_text_that_is_not_utf8_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"invalid Arrow data|not valid UTF-8"):
        KERNELS[name](_bad_utf8())


@pytest.mark.parametrize("name", DICTIONARY_KERNELS)
def test_dictionary_indices_out_of_range_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid Arrow data"):
        KERNELS[name](_bad_dictionary())


@pytest.mark.parametrize("name", KERNELS)
def test_valid_input_still_encodes(name: str) -> None:
    text = pa.array([b"ok", b"\xc3\xa9"]).view(pa.string())
    KERNELS[name](text if name != "kafka_produce" else pa.array([b"x"]))


@pytest.mark.parametrize("encode", [_json, _bson])
def test_value_rules_of_full_validation_are_not_applied(encode: Callable[[pa.Array], Any]) -> None:
    # A date64 that is not a whole day breaks only a value rule (also nested): still encoded.
    odd = pa.array([1, 86_400_000], pa.int64()).view(pa.date64())
    with pytest.raises(pa.ArrowInvalid):
        odd.validate(full=True)
    encode(odd)
    encode(pa.StructArray.from_arrays([odd, pa.array(["a", "b"])], names=["d", "s"]))
    # Null-typed nested children are validated as they are (pyarrow 26's view of such a tree comes
    # out broken: a column holding both them and a value-rule breach is refused, a documented limit).
    nested = pa.array([None, None, None], pa.list_(pa.list_(pa.null(), 2), 2))
    encode(nested.slice(3, 0))
    encode(pa.StructArray.from_arrays([pa.array([1, 2]), nested.slice(1)], names=["d", "n"]))
