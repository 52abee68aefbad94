"""The conformance suite over HybridSource: collection -> Parquet files -> a source built from the end."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from arrowflow.connectors import CollectionSource
from arrowflow.connectors.filesystem import FileSource
from arrowflow.connectors.hybrid import HybridSource
from arrowflow.source import Source
from arrowflow.testing import SourceConformance


class TestHybridThreeSources(SourceConformance):
    """A fixed collection, then files, then a collection built by a factory from the files' end state."""

    def make_source(self, data: pa.Table) -> Source:
        d = Path(tempfile.mkdtemp(prefix="af-hybrid-"))
        self.add_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))
        pq.write_table(data.slice(300, 400), d / "middle.parquet", row_group_size=150)

        def last(end: dict[str, Any]) -> Source:
            # The files' end state says how many rows they held: the rest starts there.
            start = 300 + end["state"]["rows"]
            return CollectionSource(data.slice(start), batch_size=70)

        return HybridSource(
            [
                CollectionSource(data.slice(0, 300), batch_size=64),
                FileSource(str(d), split_row_groups=False),
                last,
            ],
            bounded=True,
        )


class TestHybridMultiSplitInner(SourceConformance):
    """Inner sources with several splits, read round robin inside the single hybrid split."""

    ordered_per_split = False

    def make_source(self, data: pa.Table) -> Source:
        return HybridSource(
            [
                CollectionSource(data.slice(0, 500), split_count=3, batch_size=40),
                lambda: CollectionSource(data.slice(500), split_count=2, batch_size=33),
            ],
            bounded=True,
        )
