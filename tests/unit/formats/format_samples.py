"""Sample data for the format tests: the 8-column shape used everywhere (with some nulls)."""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa

from arrowflow.sink import Sink


def eight_columns(n: int = 50, *, seed: int = 1, nulls: bool = True) -> pa.RecordBatch:
    """int64, float64, string (15-25 chars), bool, timestamp[us], int32, string (6-10), float64."""
    rng = np.random.default_rng(seed)
    letters = np.array(list('abcdefghijklmnopqrstuvwxyz "\\é\n'))

    def words(lo: int, hi: int) -> list[str]:
        return ["".join(rng.choice(letters, rng.integers(lo, hi + 1))) for _ in range(n)]

    mask = (rng.random(n) < 0.1) if nulls else np.zeros(n, dtype=bool)
    base = datetime.datetime(2024, 5, 1)
    columns = {
        "id": pa.array(np.arange(n, dtype=np.int64) * 7919 - 100),
        "score": pa.array(rng.normal(size=n) * 1e6, mask=mask),
        "name": pa.array(words(15, 25)),
        "flag": pa.array(rng.random(n) < 0.5, mask=np.roll(mask, 1)),
        "ts": pa.array(
            [base + datetime.timedelta(microseconds=int(x)) for x in rng.integers(0, 10**12, n)],
            pa.timestamp("us"),
        ),
        "small": pa.array(rng.integers(-(2**31), 2**31 - 1, n).astype(np.int32), mask=np.roll(mask, 2)),
        "code": pa.array(words(6, 10), mask=np.roll(mask, 3)),
        "ratio": pa.array(rng.random(n)),
    }
    return pa.RecordBatch.from_pydict(columns)


class CollectingSink(Sink):
    """A dead-letter target that keeps what it receives (a test double of the *target*, not of arrowflow)."""

    def __init__(self) -> None:
        self.received: list[pa.RecordBatch] = []

    def write(self, batch: pa.RecordBatch) -> None:
        self.received.append(batch)

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.received)
