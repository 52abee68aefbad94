"""Type stubs for the compiled ``arrowflow._ext.json_decode`` kernel (source: ``ext/json_decode.pyx``)."""

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

__all__ = ["scan"]

def scan(
    data: np.ndarray,
    offsets: np.ndarray,
    keys: Sequence[bytes],
    kinds: Sequence[int],
    strict: bool = False,
    threads: int = 0,
) -> tuple[list[pa.LargeStringArray] | None, str | None, int]:
    """Scan one JSON object per payload into one text column per key (see ``ext/json_decode.pyx``).

    ``(columns, None, -1)`` when every payload fits the fast path, else ``(None, reason, row)`` for
    the first that does not (``reason``: ``"syntax"``, ``"mismatch"``, ``"duplicate"``,
    ``"unexpected"`` or ``"unsupported"``). Kinds: 0 string, 1 number, 2 boolean. Releases the GIL;
    ``threads=0`` scans calls of >= 65,536 payloads on two threads (1: never, >= 2: always).

    Validation: ``offsets`` are checked here after their cast to int64 (ascending, within ``data``;
    else ``ValueError``). UTF-8 is not: the caller guarantees that every payload is valid UTF-8
    (``Json._decode_flat``, the only caller, validates them all in one vectorized call first), so
    the text columns are valid ``large_string`` arrays.
    """
