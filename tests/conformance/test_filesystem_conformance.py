"""The conformance suite over the FileSystem connector: FileSource per format, FileSink per format.

Source data is written with pyarrow's own writers (not with FileSink), and the sink's output is read
back with ``pyarrow.dataset`` (not with FileSource), so each side is checked against an independent
implementation.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from arrowflow.connectors.filesystem import FileSink, FileSource
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance


class _TmpDir:
    def tmpdir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="af-fs-"))
        self.add_cleanup(lambda: shutil.rmtree(path, ignore_errors=True))  # type: ignore[attr-defined]
        return path


def _thirds(data: pa.Table) -> list[pa.Table]:
    n = data.num_rows
    return [data.slice(0, n // 3), data.slice(n // 3, n // 3), data.slice(2 * (n // 3))]


# -- sources --------------------------------------------------------------------------------------


class TestFileSourceParquet(_TmpDir, SourceConformance):
    """Three files of many row groups: one split per row group."""

    def make_source(self, data: pa.Table) -> Source:
        d = self.tmpdir()
        for i, part in enumerate(_thirds(data)):
            pq.write_table(part, d / f"f{i}.parquet", row_group_size=128)
        (d / "_SUCCESS").write_text("")  # hidden: never read
        (d / ".hidden.parquet").write_bytes(b"not parquet")
        return FileSource(str(d), batch_size=50)


class TestFileSourceParquetWholeFiles(_TmpDir, SourceConformance):
    def make_source(self, data: pa.Table) -> Source:
        d = self.tmpdir()
        for i, part in enumerate(_thirds(data)):
            pq.write_table(part, d / f"f{i}.parquet", row_group_size=100)
        return FileSource(str(d / "*.parquet"), split_row_groups=False, batch_size=64)


class TestFileSourceParquetHive(_TmpDir, SourceConformance):
    """Hive directories ``flag=true|false`` (the column is not in the files) become a bool column."""

    def make_source(self, data: pa.Table) -> Source:
        d = self.tmpdir()
        for value in (True, False):
            rows = data.filter(pa.compute.equal(data["flag"], value)).drop_columns(["flag"])
            sub = d / f"flag={str(value).lower()}"
            sub.mkdir()
            pq.write_table(rows, sub / "data.parquet", row_group_size=200)
        return FileSource(str(d), partitioning=pa.schema([("flag", pa.bool_())]))


class TestFileSourceArrow(_TmpDir, SourceConformance):
    def make_source(self, data: pa.Table) -> Source:
        d = self.tmpdir()
        for i, part in enumerate(_thirds(data)):
            with ipc.new_file(d / f"f{i}.arrow", part.schema) as w:
                w.write_table(part, max_chunksize=90)
        # An IPC *stream* file is read too.
        return FileSource(str(d), format="feather")


class TestFileSourceArrowStream(_TmpDir, SourceConformance):
    def make_source(self, data: pa.Table) -> Source:
        d = self.tmpdir()
        with ipc.new_stream(d / "s.arrows", data.schema) as w:
            w.write_table(data, max_chunksize=77)
        return FileSource(str(d / "s.arrows"), format="arrow")


class TestFileSourceCsv(_TmpDir, SourceConformance):
    def make_source(self, data: pa.Table) -> Source:
        d = self.tmpdir()
        for i, part in enumerate(_thirds(data)):
            pacsv.write_csv(part, d / f"f{i}.csv")
        return FileSource(str(d), format="csv", schema=data.schema)


class TestFileSourceNdjson(_TmpDir, SourceConformance):
    def make_source(self, data: pa.Table) -> Source:
        d = self.tmpdir()
        for i, part in enumerate(_thirds(data)):
            with open(d / f"f{i}.ndjson", "w", encoding="utf-8") as f:
                for row in part.to_pylist():
                    row["ts"] = row["ts"].isoformat()
                    f.write(json.dumps(row) + "\n")
        return FileSource(str(d), format="ndjson", schema=data.schema)


class TestFileSourceText(_TmpDir, SourceConformance):
    def make_data(self) -> pa.Table:
        return super().make_data().select(["name"]).rename_columns(["line"])

    def make_source(self, data: pa.Table) -> Source:
        d = self.tmpdir()
        for i, part in enumerate(_thirds(data)):
            text = "\n".join(part.column("line").to_pylist())
            # CRLF endings in one file and no final newline in another.
            if i == 1:
                text = text.replace("\n", "\r\n") + "\r\n"
            (d / f"f{i}.txt").write_bytes(text.encode("utf-8"))
        return FileSource(str(d), format="text")


# -- sinks ----------------------------------------------------------------------------------------


class _FileSinkConformance(_TmpDir, SinkConformance):
    has_error_policy = False
    # One sink writes its part files in name order (zero-padded counter) and pyarrow.dataset lists
    # them sorted, so the read-back keeps the written order.
    ordered = True
    format = "parquet"
    options: dict[str, Any] = {}

    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self.dir = self.tmpdir()
        return FileSink(str(self.dir), format=self.format, **self.options)

    def read_back(self) -> pa.Table:
        fmt = {"arrow": "ipc"}.get(self.format, self.format)
        dataset = ds.dataset(str(self.dir), format=fmt)
        return dataset.to_table()


class TestFileSinkParquet(_FileSinkConformance):
    options = {"compression": "zstd"}


class TestFileSinkParquetRolling(_FileSinkConformance):
    """Small rolling limits: many files per epoch, still every row exactly once."""

    from arrowflow.connectors.filesystem import RollingPolicy

    options = {"rolling": RollingPolicy(max_rows=150, max_bytes=4000)}


class TestFileSinkArrow(_FileSinkConformance):
    format = "arrow"
    options = {"compression": "lz4"}
