"""Type stubs for the compiled ``arrowflow._ext.bson_decode`` kernel (source: ``ext/bson_decode.pyx``)."""

import numpy as np
import pyarrow as pa

__all__ = ["check_documents", "decode_documents", "document_offsets"]

def decode_documents(
    raw: bytes | bytearray | memoryview, schema: pa.Schema
) -> tuple[pa.RecordBatch | None, str | None]:
    """Concatenated BSON documents -> a batch with ``schema`` (see ``ext/bson_decode.pyx``).

    ``(batch, None)``, or ``(None, reason)`` when a column type or a value needs the caller's general
    path (``bson.decode_all`` + ``decode_documents``). Malformed BSON, at any depth, raises
    ``ValueError``, also before a ``(None, reason)`` answer: the bytes handed to the general path are
    well formed. Releases the GIL.
    """

def check_documents(raw: bytes | bytearray | memoryview) -> int:
    """The number of documents in ``raw``; ``ValueError`` unless every one is structurally valid at
    every depth (what to call before ``bson.decode_all`` on bytes the kernel did not see)."""

def document_offsets(raw: bytes | bytearray | memoryview) -> np.ndarray:
    """int64 offsets of the documents in ``raw`` (``n + 1`` entries); ``ValueError`` if malformed."""
