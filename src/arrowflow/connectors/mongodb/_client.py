"""The pymongo client, its error classes, and decoding documents into Arrow: what the MongoDB sink and
sources share.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ...config import Secret, reveal, reveal_secrets
from ...errors import ConnectorError

#: MongoDB's maximum BSON document size.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
#: Server error codes after which the same write may succeed (pymongo's retryable write codes).
RETRYABLE_CODES = frozenset(
    {6, 7, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 64, 50, 251}
)
DUPLICATE_KEY = 11000


def make_client(uri: Secret | str, options: Mapping[str, Any]) -> Any:
    import pymongo

    return pymongo.MongoClient(reveal(uri), **reveal_secrets(options))


def retryable(exc: BaseException) -> bool:
    """Connection loss, timeouts and errors the server labels retryable."""
    import pymongo.errors as pe

    if isinstance(exc, ConnectorError):
        return exc.retryable
    if isinstance(exc, (pe.AutoReconnect, pe.ConnectionFailure, pe.NetworkTimeout)):
        return True
    if isinstance(exc, pe.PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return True
    if isinstance(exc, pe.OperationFailure):
        return exc.code in RETRYABLE_CODES
    return isinstance(exc, OSError)


def wrap(exc: BaseException, what: str) -> ConnectorError:
    return ConnectorError(f"mongodb: {what}: {type(exc).__name__}: {exc}", retryable=retryable(exc))


def _convert(value: Any, t: pa.DataType) -> Any:
    """A decoded BSON value as pyarrow accepts it for type ``t`` (ObjectId, Decimal128, nesting)."""
    import bson
    from bson.decimal128 import Decimal128

    if value is None:
        return None
    if isinstance(value, bson.ObjectId):
        # Its 12 bytes into any binary column (as the bson_decode kernel does), else the hex text.
        binary = pa.types.is_fixed_size_binary(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)
        return value.binary if binary else str(value)
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, bson.DatetimeMS):
        value = value.as_datetime()
    if isinstance(value, _dt.datetime) and pa.types.is_date(t):
        return value.date()
    if pa.types.is_struct(t) and isinstance(value, Mapping):
        return {
            t.field(k).name: _convert(value.get(t.field(k).name), t.field(k).type)
            for k in range(t.num_fields)
        }
    if pa.types.is_map(t) and isinstance(value, Mapping):
        return [(k, _convert(v, t.item_type)) for k, v in value.items()]
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and isinstance(
        value, list
    ):
        return [_convert(v, t.value_type) for v in value]
    if isinstance(value, bson.Int64):
        return int(value)
    return value


def _infer(value: Any) -> Any:
    import bson
    from bson.decimal128 import Decimal128

    if isinstance(value, bson.ObjectId):
        return value.binary
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, Mapping):
        return {k: _infer(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_infer(v) for v in value]
    return value


def decode_documents(docs: Sequence[Mapping[str, Any]], schema: pa.Schema | None) -> pa.RecordBatch:
    """Decoded BSON documents -> a batch with ``schema`` (missing fields are null; extra ones dropped).

    The general decoder, used for pages and change-stream batches the ``bson_decode`` kernel declines
    (nested, decimal, date columns, values that do not fit their column) and when ``schema`` is None.
    ``bson.decode_all`` makes one Python object per value; each column is then converted by
    ``pa.array(values, type)`` in C++, falling back to a value-by-value conversion only for a column
    holding BSON-specific values (ObjectId, Decimal128, ...) or dates. Measured on the 8-column
    benchmark table: ~45-60k rows/s for decode_all + this in an earlier run, 120-260k rows/s in the
    ``bson-decode`` workload (load-dependent; decode_all is most of it), 20x+ below the kernel. With
    ``schema=None`` pyarrow infers the types.
    """
    if schema is None:
        rows = [{k: _infer(v) for k, v in d.items()} for d in docs]
        # Every field of every document, in order of first appearance (Table.from_pylist would take
        # the first document's fields only: the others' extra fields, or all rows after an empty
        # first document, would be lost).
        names = list(dict.fromkeys(k for row in rows for k in row))
        if not names:  # documents without fields: still one row each
            return pa.RecordBatch.from_struct_array(pa.array([{}] * len(rows), pa.struct([])))
        return pa.RecordBatch.from_arrays([pa.array([r.get(k) for r in rows]) for k in names], names=names)
    columns = []
    for f in schema:
        values = [d.get(f.name) for d in docs]
        try:
            # pyarrow converts plain values (int, float, str, bytes, bool, datetime, lists, dicts) in C++.
            column = pa.array(values, f.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            # ObjectId, Decimal128, DatetimeMS, datetime -> date, ...: converted value by value.
            column = pa.array([_convert(v, f.type) for v in values], f.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def decode_page(
    raw: bytes | memoryview, schema: pa.Schema | None, codec: Any = None
) -> tuple[pa.RecordBatch, str, str | None]:
    """Concatenated BSON documents (a ``find_raw_batches`` page, the bodies of a change-stream batch)
    -> ``(batch, decoded_by, kernel_declined)``.

    The ``bson_decode`` kernel decodes the page when ``schema`` is given and every value fits it
    (``decoded_by="kernel"``); otherwise ``bson.decode_all`` (with ``codec``, pymongo's
    ``CodecOptions``) + :func:`decode_documents` (``"python"``; ``kernel_declined`` says why when
    the kernel declined). Malformed BSON, at any depth, raises ``ValueError`` before
    ``bson.decode_all`` sees it: the kernel checks the structure of a page it declines, and
    ``check_documents`` that of a page decoded without a schema (pymongo's C decoder bounds nested
    values by the rest of the buffer, not their document, and can read past it).
    """
    import bson

    from ..._ext import bson_decode

    if schema is not None:
        fast, declined = bson_decode.decode_documents(raw, schema)
        if fast is not None:
            return fast, "kernel", None
    else:
        bson_decode.check_documents(raw)
        declined = None
    docs = bson.decode_all(raw, codec) if codec is not None else bson.decode_all(raw)
    return decode_documents(docs, schema), "python", declined


# ----------------------------------------------------------------------------------------- source


def extjson(value: Any) -> str:
    from bson import json_util

    return json_util.dumps(value, json_options=json_util.CANONICAL_JSON_OPTIONS)


def from_extjson(text: str) -> Any:
    from bson import json_util

    return json_util.loads(text, json_options=json_util.CANONICAL_JSON_OPTIONS)
