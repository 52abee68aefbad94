"""Turning fuzzer bytes into structured inputs: a byte cursor, payload lists, and hostile Arrow batches.

Every harness is a function of one ``bytes`` input (what atheris and the smoke mutator produce).
:class:`Cursor` reads choices out of it deterministically (running dry reads zeros), so a mutated
input is a mutated structure. :func:`hostile_batch` builds a ``RecordBatch`` whose buffers are taken
from the input and placed against guard pages: often valid, often not (offsets out of range but first
and last consistent, so Arrow's cheap validation passes; dictionary indices out of range; strings
that are not UTF-8; views into missing buffers), which is what an untrusted IPC stream or
``from_buffers`` can produce.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

import numpy as np
import pyarrow as pa
from guard import Guarded


class Cursor:
    """Reads ints, choices and byte strings from ``data`` (zeros once it runs dry)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return max(0, len(self.data) - self.pos)

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out + b"\0" * (n - len(out))

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def below(self, n: int) -> int:
        """An int in ``[0, n)`` (n >= 1)."""
        return (self.u8() if n <= 256 else self.u32()) % n

    def flag(self) -> bool:
        return bool(self.u8() & 1)

    def choice(self, items: list[Any]) -> Any:
        return items[self.below(len(items))]

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out


def split_payloads(cur: Cursor, blob: bytes, max_items: int = 16) -> list[bytes]:
    """``blob`` cut into up to ``max_items`` payloads at positions read from ``cur``."""
    n = 1 + cur.below(max_items)
    cuts = sorted({cur.below(len(blob) + 1) for _ in range(n - 1)})
    bounds = [0, *cuts, len(blob)]
    return [blob[a:b] for a, b in itertools.pairwise(bounds)]


def guarded_payloads(payloads: list[bytes], before: bool) -> tuple[pa.Array, Guarded]:
    """A ``binary`` array whose data buffer is the joined payloads against a guard page."""
    offsets = np.zeros(len(payloads) + 1, dtype=np.int32)
    np.cumsum([len(p) for p in payloads], out=offsets[1:])
    g = Guarded(b"".join(payloads), before=before)
    arr = pa.Array.from_buffers(pa.binary(), len(payloads), [None, pa.py_buffer(offsets), g.buffer()])
    return arr, g


# ------------------------------------------------------------------------------- hostile Arrow input

LEAVES: list[pa.DataType] = [
    pa.bool_(),
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.uint16(),
    pa.uint32(),
    pa.uint64(),
    pa.float16(),
    pa.float32(),
    pa.float64(),
    pa.string(),
    pa.large_string(),
    pa.binary(),
    pa.large_binary(),
    pa.binary(3),
    pa.binary(12),
    pa.date32(),
    pa.date64(),
    pa.timestamp("s"),
    pa.timestamp("ms", "UTC"),
    pa.timestamp("us"),
    pa.timestamp("ns", "Europe/Paris"),
    pa.time32("ms"),
    pa.time64("us"),
    pa.duration("ms"),
    pa.decimal128(10, 3),
    pa.decimal128(38, 0),
    pa.string_view(),
    pa.null(),
]


def arrow_type(cur: Cursor, depth: int = 0, leaves: list[pa.DataType] = LEAVES) -> pa.DataType:
    """A type: a leaf, or (up to depth 2) a list, large list, fixed-size list, struct, map or
    dictionary of types drawn the same way."""
    kind = cur.below(10) if depth < 2 else 0
    if kind <= 3:
        return cur.choice(leaves)  # type: ignore[no-any-return]
    inner = arrow_type(cur, depth + 1, leaves)
    if kind == 4:
        return pa.list_(inner)
    if kind == 5:
        return pa.large_list(inner)
    if kind == 6:
        return pa.list_(inner, 1 + cur.below(3))
    if kind == 7:
        fields = [inner, *(arrow_type(cur, depth + 1, leaves) for _ in range(cur.below(3)))]
        return pa.struct([(f"f{k}", t) for k, t in enumerate(fields)])
    if kind == 8:
        return pa.map_(pa.string(), inner)
    return pa.dictionary(cur.choice([pa.int8(), pa.int32(), pa.uint16()]), pa.string())


class _Builder:
    """Buffers against guard pages (alternating sides), kept alive with the arrays."""

    def __init__(self, cur: Cursor, hostile: bool) -> None:
        self.cur = cur
        self.hostile = hostile
        self.side = False

    def buf(self, raw: bytes) -> pa.Buffer:
        self.side = not self.side
        return Guarded(raw, before=self.side).buffer()

    def validity(self, n: int) -> pa.Buffer | None:
        if self.cur.below(3):
            return None
        return self.buf(self.cur.take((n + 7) // 8))

    def offsets(self, n: int, total: int, large: bool) -> pa.Buffer:
        """n + 1 offsets from 0 to ``total``: ascending, or (hostile) anything in between."""
        width = np.int64 if large else np.int32
        if self.hostile and self.cur.below(3) == 0:
            raw = np.frombuffer(self.cur.take(8 * (n + 1)), dtype=np.int64).copy()
            mid = raw.astype(width)
        else:
            mid = np.sort(np.array([self.cur.below(total + 1) for _ in range(n + 1)], dtype=np.int64))
        values = mid.astype(width)
        values[0], values[n] = 0, total
        return self.buf(values.tobytes())

    def text(self, size: int) -> bytes:
        raw = self.cur.take(size)
        if self.hostile and self.cur.below(3) == 0:
            return raw  # maybe not UTF-8
        return bytes(b & 0x7F or 0x61 for b in raw)  # ASCII, never NUL

    def array(self, t: pa.DataType, n: int, nullable: bool = True) -> pa.Array:
        cur = self.cur
        if pa.types.is_null(t):
            return pa.nulls(n)
        if pa.types.is_dictionary(t):
            k = 1 + cur.below(4)
            dictionary = self.array(t.value_type, k)
            raw = np.frombuffer(cur.take(4 * n), dtype=np.uint32)
            if not self.hostile or cur.below(3):
                raw = raw % k
            indices = pa.Array.from_buffers(
                t.index_type,
                n,
                [self.validity(n), self.buf(raw.astype(t.index_type.to_pandas_dtype()).tobytes())],
            )
            return pa.DictionaryArray.from_arrays(indices, dictionary, safe=False)
        # Map keys never get nulls, even in hostile mode: pyarrow aborts the process (a failed
        # ARROW_CHECK in MapArray's constructor) on null keys before our code sees the array.
        validity = self.validity(n) if nullable else None
        if pa.types.is_boolean(t):
            return pa.Array.from_buffers(t, n, [validity, self.buf(cur.take((n + 7) // 8))])
        if pa.types.is_string_view(t):
            return self._string_view(n, validity)
        if (
            pa.types.is_binary(t)
            or pa.types.is_string(t)
            or pa.types.is_large_binary(t)
            or pa.types.is_large_string(t)
        ):
            large = pa.types.is_large_binary(t) or pa.types.is_large_string(t)
            total = cur.below(4 * n + 1)
            data = (
                self.text(total) if pa.types.is_string(t) or pa.types.is_large_string(t) else cur.take(total)
            )
            return pa.Array.from_buffers(t, n, [validity, self.offsets(n, total, large), self.buf(data)])
        if pa.types.is_fixed_size_list(t):
            child = self.array(t.value_type, n * t.list_size)
            return pa.Array.from_buffers(t, n, [validity], children=[child])
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t):
            m = cur.below(2 * n + 1)
            if pa.types.is_map(t):
                keys = self.array(t.key_type, m, nullable=False)
                items = self.array(t.item_type, m)
                child = pa.StructArray.from_arrays([keys, items], fields=[t.key_field, t.item_field])
            else:
                child = self.array(t.value_type, m)
            return pa.Array.from_buffers(
                t, n, [validity, self.offsets(n, m, pa.types.is_large_list(t))], children=[child]
            )
        if pa.types.is_struct(t):
            children = [self.array(t.field(k).type, n) for k in range(t.num_fields)]
            return pa.Array.from_buffers(t, n, [validity], children=children)
        width = (
            t.byte_width if pa.types.is_fixed_size_binary(t) or pa.types.is_decimal(t) else t.bit_width // 8
        )
        return pa.Array.from_buffers(t, n, [validity, self.buf(cur.take(width * n))])

    def _string_view(self, n: int, validity: pa.Buffer | None) -> pa.Array:
        cur = self.cur
        data = self.text(cur.below(8 * n + 16) + 13)
        views = bytearray()
        for _ in range(n):
            length = cur.below(len(data) + 1) if not self.hostile or cur.below(2) else cur.u32() & 0x7FFFFFFF
            if length <= 12:
                views += struct.pack("<i", length) + data[:length].ljust(12, b"\0")
            else:
                start = (
                    cur.below(max(1, len(data) - length + 1)) if length <= len(data) else cur.u32() & 0x7FFF
                )
                buffer_index = 0 if not self.hostile or cur.below(4) else cur.below(3)
                views += struct.pack(
                    "<i4sii", length, data[start : start + 4].ljust(4, b"\0"), buffer_index, start
                )
        return pa.Array.from_buffers(pa.string_view(), n, [validity, self.buf(bytes(views)), self.buf(data)])


def hostile_batch(cur: Cursor, leaves: list[pa.DataType] = LEAVES, columns: int = 3) -> pa.RecordBatch | None:
    """A batch of up to ``columns`` columns read from ``cur``; None when pyarrow itself refuses the
    buffers (its cheap validation of sizes), which is not an input our code ever sees."""
    hostile = cur.flag()
    n = cur.below(9)
    types = [arrow_type(cur, 0, leaves) for _ in range(1 + cur.below(columns))]
    builder = _Builder(cur, hostile)
    try:
        arrays = [builder.array(t, n) for t in types]
        if cur.below(4) == 0 and n:
            start = cur.below(n)
            arrays = [a.slice(start) for a in arrays]
        return pa.record_batch(arrays, names=[f"c{k}" for k in range(len(arrays))])
    except (
        pa.ArrowInvalid,
        pa.ArrowNotImplementedError,
        pa.ArrowTypeError,
        ValueError,
        IndexError,
        OverflowError,
    ):
        return None


def is_valid(obj: pa.RecordBatch | pa.Array) -> bool:
    """Whether Arrow's full validation passes."""
    try:
        obj.validate(full=True)
        return True
    except (pa.ArrowInvalid, pa.ArrowIndexError):
        return False
