"""Type stubs for the compiled ``arrowflow._ext.bson_decode`` kernel (source: ``ext/bson_decode.pyx``)."""

import numpy as np
import pyarrow as pa

__all__ = ["decode_documents", "document_offsets"]

def decode_documents(
    raw: bytes | bytearray | memoryview, schema: pa.Schema
) -> tuple[pa.RecordBatch | None, str | None]:
    """Concatenated BSON documents -> a batch with ``schema`` (see ``ext/bson_decode.pyx``).

    ``(batch, None)``, or ``(None, reason)`` when a column type or a value needs the caller's general
    path (``bson.decode_all`` + ``decode_documents``). Malformed BSON raises ``ValueError``. Releases
    the GIL.
    """

def document_offsets(raw: bytes | bytearray | memoryview) -> np.ndarray:
    """int64 offsets of the documents in ``raw`` (``n + 1`` entries); ``ValueError`` if malformed."""
