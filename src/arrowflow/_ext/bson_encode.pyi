"""Type stub for the compiled BSON encoding kernel (ext/bson_encode.pyx)."""

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

__all__ = ["encode_documents", "encode_documents_checked"]

def encode_documents(
    batch: pa.RecordBatch,
    *,
    columns: Sequence[str] | None = None,
    field_names: Mapping[str, str] | None = None,
    object_id: str | Sequence[str] | None = None,
    nulls: str = "null",
) -> pa.BinaryArray:
    """One BSON document per row (keys in column order) as a BinaryArray without nulls."""

def encode_documents_checked(
    batch: pa.RecordBatch,
    *,
    columns: Sequence[str] | None = None,
    field_names: Mapping[str, str] | None = None,
    object_id: str | Sequence[str] | None = None,
    nulls: str = "null",
) -> tuple[pa.BinaryArray, np.ndarray, list[str]]:
    """(documents of the encodable rows, int64 indices of the rows left out, one error per left-out row)."""
