"""Type stubs for the compiled ``arrowflow._ext.avro_decode`` kernel (source: ``ext/avro_decode.pyx``)."""

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

__all__ = ["KINDS", "decode"]

#: The program's kind codes by Avro type / logical type name.
KINDS: dict[str, int]

def decode(
    data: np.ndarray,
    offsets: np.ndarray,
    skip: np.ndarray | None,
    ids: Sequence[int] | None,
    kinds: Sequence[int],
    unions: Sequence[int],
    params: Sequence[int],
    types: Sequence[pa.DataType],
    symbols: Sequence[pa.Array | None],
) -> tuple[list[pa.Array], np.ndarray] | tuple[None, None]:
    """Decode the flat Avro records the strict decoder takes (see ``ext/avro_decode.pyx``).

    ``(columns, ok)``: one array per field holding the decoded payloads' values, and the bool mask
    of the payloads decoded (the others are left to the caller). ``(None, None)`` when a
    string/bytes column would pass 2 GiB. Releases the GIL for the row loop.

    Validation: ``offsets`` are checked after their cast to int64 (ascending, within ``data``; else
    ``ValueError``); no byte outside a payload is read; strings are checked as strict UTF-8 and enum
    indices against the symbol count (else the payload is left to the caller).
    """
