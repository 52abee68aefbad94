"""Type stub of the compiled ``arrowflow._ext.remote_write`` kernel (see ``ext/remote_write.pyx``)."""

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

ERRORS: dict[int, str]

def encode_labels(
    num_rows: int,
    columns: Sequence[tuple[bytes, pa.Array | pa.ChunkedArray | bytes]],
    label_map: pa.MapArray | pa.ChunkedArray | None = None,
) -> tuple[pa.LargeBinaryArray, np.ndarray, int]: ...
def encode_write_request(
    series_labels: pa.Array,
    series: np.ndarray,
    values: np.ndarray,
    timestamps: np.ndarray,
    order: np.ndarray | None = None,
) -> bytes: ...
