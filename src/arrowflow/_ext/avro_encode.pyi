"""Type stubs for the compiled ``arrowflow._ext.avro_encode`` kernel (source: ``ext/avro_encode.pyx``)."""

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

__all__ = ["ERRORS", "KINDS", "encode", "source"]

#: The program's kind codes by Avro type / logical type name.
KINDS: dict[str, int]
#: The failure codes by name.
ERRORS: dict[str, int]

def source(t: pa.DataType) -> int:
    """The buffer layout the kernel reads for Arrow type ``t`` (0 when it cannot read it)."""

def encode(
    columns: Sequence[pa.Array],
    kinds: Sequence[int],
    unions: Sequence[int],
    params: Sequence[int],
    bounds: Sequence[tuple[int, int]],
    scales: Sequence[tuple[int, int]],
    header: bytes,
) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray] | None:
    """Encode one Avro record per row (see ``ext/avro_encode.pyx``).

    ``(payloads, ok, err_code, err_field)``: a ``pa.BinaryArray`` (failed rows null and empty), the
    bool mask of the rows encoded, and per row the failure code and field index (meaningful where
    ``ok`` is False). ``None`` when the output could pass 2 GiB. Releases the GIL for the row loop.
    """
