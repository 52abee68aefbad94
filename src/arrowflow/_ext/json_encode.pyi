"""Type stub for the compiled JSON encoding kernel (ext/json_encode.pyx)."""

from collections.abc import Mapping, Sequence

import pyarrow as pa

__all__ = ["QUOTE_KEY", "encode_ndjson", "encode_rows"]

QUOTE_KEY: bytes

def encode_rows(
    batch: pa.RecordBatch,
    *,
    columns: Sequence[str] | None = None,
    field_names: Mapping[str, str] | None = None,
    nulls: str = "null",
    nan: str = "error",
    threads: int = 0,
    terminator: bytes = b"",
) -> pa.BinaryArray:
    """One JSON object per row (keys in column order) as a BinaryArray without nulls.

    ``terminator``: empty, or one byte (any, NUL included) appended to every document. Each selected
    column passes Arrow's full validation first (offsets and dictionary indices in range, strings
    UTF-8): invalid Arrow data raises ``ValueError`` naming the column instead of being trusted.
    """

def encode_ndjson(
    batch: pa.RecordBatch,
    *,
    columns: Sequence[str] | None = None,
    field_names: Mapping[str, str] | None = None,
    nulls: str = "null",
    nan: str = "error",
    threads: int = 0,
) -> pa.Buffer:
    """The same documents as encode_rows, each followed by b"\\n", in one buffer."""
