"""DataGenSource passes the source conformance suite, with field generators and with a generator function."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from arrowflow.connectors.datagen import Choice, DataGenSource, RandomString, Sequence, Uniform
from arrowflow.source import Source
from arrowflow.testing import SourceConformance


def _datagen(**kwargs: object) -> DataGenSource:
    fields = {
        "id": Sequence(),
        "x": Uniform(0, 1000, "int64", null_rate=0.1),
        "s": RandomString((0, 12)),
        "c": Choice(["a", "b", "c"]),
    }
    return DataGenSource(fields, count=1000, batch_size=128, seed=11, **kwargs)  # type: ignore[arg-type]


class TestDataGenFields(SourceConformance):
    """The data *is* what DataGen generates; the source must reproduce it split by split."""

    def make_data(self) -> pa.Table:
        return _datagen().read_all()

    def make_source(self, data: pa.Table) -> Source:
        return _datagen(num_splits=3)


class TestDataGenFunction(SourceConformance):
    """A generator function serving the suite's own table by row index."""

    def make_source(self, data: pa.Table) -> Source:
        def rows(idx: np.ndarray) -> pa.Table:
            return data.take(pa.array(idx))

        return DataGenSource(generator=rows, count=data.num_rows, batch_size=100, num_splits=4)
