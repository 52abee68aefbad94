"""Pure-Python reference of :mod:`arrowflow._ext.bson_decode` (a test oracle, never used at run time).

``bson.decode_all`` (pymongo) followed by :func:`arrowflow.connectors.mongodb.decode_documents`: the
path ``MongoSource`` took before the kernel, and still takes when the kernel answers "slow path". The
kernel must return an equal batch whenever it returns one. Errors are reported as ``ValueError``
(pymongo's ``InvalidBSON`` for malformed input).

Known differences, outside what the tests generate: the kernel does not look inside fields it skips,
so an invalid string or a broken embedded document in a field that is not in the schema raises here
but not in the kernel.

Needs ``pymongo`` (for ``bson``).
"""

from __future__ import annotations

import pyarrow as pa


def decode_documents(raw: bytes | bytearray | memoryview, schema: pa.Schema) -> pa.RecordBatch:
    """The batch the general path makes from ``raw`` (raises ``ValueError`` for malformed BSON)."""
    import bson
    from bson.errors import InvalidBSON

    from ..connectors.mongodb import decode_documents as convert

    try:
        docs = bson.decode_all(bytes(raw))
    except InvalidBSON as exc:
        raise ValueError(f"malformed BSON: {exc}") from exc
    return convert(docs, schema)
