"""Slow, obviously-correct Python reference of :mod:`arrowflow._ext.remote_write` (test oracle only).

Same signatures and results as the kernel: :func:`encode_labels` returns ``(labels, errors, bad)``
and :func:`encode_write_request` the WriteRequest bytes. :func:`write_request_class` builds the
remote-write 1.0 protobuf messages at run time with the ``protobuf`` package (no generated module),
for tests and the benchmark baseline.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["encode_labels", "encode_write_request", "write_request_class"]

_LABEL = re.compile(rb"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_METRIC = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64 -> two's complement, as protobuf does
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def _as_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else bytes(value)


def _row_labels(pairs: list[tuple[bytes, bytes]]) -> tuple[bytes, int]:
    pairs = [(k, v) for k, v in pairs if v]
    pairs.sort(key=lambda kv: kv[0])
    # The first problem in name order wins (the kernel checks while it scans the sorted pairs).
    for i, (k, v) in enumerate(pairs):
        if i and pairs[i - 1][0] == k:
            return b"", 2
        if k == b"__name__" and not _METRIC.match(v):
            return b"", 4
    if b"__name__" not in [k for k, _ in pairs]:
        return b"", 1
    return b"".join(_field(0x0A, _field(0x0A, k) + _field(0x12, v)) for k, v in pairs), 0


def encode_labels(
    num_rows: int, columns: Sequence[tuple[bytes, Any]], label_map: Any = None
) -> tuple[pa.Array, np.ndarray, int]:
    """See :func:`arrowflow._ext.remote_write.encode_labels`."""
    col_values: list[tuple[bytes, list[bytes | None]]] = []
    for name, values in columns:
        if isinstance(values, bytes):
            col_values.append((name, [values for _ in range(num_rows)]))
        else:
            col_values.append((name, [_as_bytes(v) for v in values.to_pylist()]))
    maps = label_map.to_pylist() if label_map is not None else [None] * num_rows
    out: list[bytes] = []
    errs = np.zeros(num_rows, dtype=np.int8)
    for i in range(num_rows):
        pairs: list[tuple[bytes, bytes]] = [(name, v) for name, vals in col_values if (v := vals[i])]
        err = 0
        for k, v in maps[i] or []:
            kb, vb = _as_bytes(k), _as_bytes(v)
            if not vb:
                continue
            assert kb is not None
            if not _LABEL.match(kb):
                err = 3
                break
            pairs.append((kb, vb))
        if err:
            out.append(b"")
            errs[i] = err
            continue
        encoded, err = _row_labels(pairs)
        out.append(encoded)
        errs[i] = err
    return pa.array(out, pa.large_binary()), errs, int((errs != 0).sum())


def encode_write_request(
    series_labels: Any, series: Any, values: Any, timestamps: Any, order: Any = None
) -> bytes:
    """See :func:`arrowflow._ext.remote_write.encode_write_request`."""
    labels = [bytes(v) for v in series_labels.to_pylist()]
    s = np.asarray(series, dtype=np.int64).tolist()
    v = np.asarray(values, dtype=np.float64).tolist()
    t = np.asarray(timestamps, dtype=np.int64).tolist()
    idx = list(range(len(s))) if order is None else np.asarray(order, dtype=np.int64).tolist()
    out = bytearray()
    i = 0
    while i < len(idx):
        sid = s[idx[i]]
        body = bytearray(labels[sid])
        while i < len(idx) and s[idx[i]] == sid:
            k = idx[i]
            sample = b""
            packed = struct.pack("<d", v[k])
            if packed != b"\0" * 8:
                sample += b"\x09" + packed
            if t[k]:
                sample += b"\x10" + _varint(t[k])
            body += _field(0x12, sample)
            i += 1
        out += _field(0x0A, bytes(body))
    return bytes(out)


def write_request_class() -> type:
    """The ``prometheus.WriteRequest`` message class, defined at run time (needs ``protobuf``)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="arrowflow_remote_write.proto", package="prometheus")
    fdp.syntax = "proto3"
    F = descriptor_pb2.FieldDescriptorProto

    def msg(name: str, fields: list[tuple[str, int, int, str | None, bool]]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, type_name, repeated in fields:
            f = m.field.add(name=fname, number=number, type=ftype)
            f.label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
            if type_name:
                f.type_name = type_name

    msg("Label", [("name", 1, F.TYPE_STRING, None, False), ("value", 2, F.TYPE_STRING, None, False)])
    msg("Sample", [("value", 1, F.TYPE_DOUBLE, None, False), ("timestamp", 2, F.TYPE_INT64, None, False)])
    msg(
        "TimeSeries",
        [
            ("labels", 1, F.TYPE_MESSAGE, ".prometheus.Label", True),
            ("samples", 2, F.TYPE_MESSAGE, ".prometheus.Sample", True),
        ],
    )
    msg("WriteRequest", [("timeseries", 1, F.TYPE_MESSAGE, ".prometheus.TimeSeries", True)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))
