"""Print batches to stdout or stderr (Flink's ``print()`` / ``printToErr()``), for debugging.

* ``mode="table"``: an aligned text table of at most ``max_rows`` rows per batch, then a line saying
  how many rows were not shown. Only the shown rows are formatted (so a large batch costs little).
* ``mode="ndjson"``: every row as one JSON line (the compiled ``arrowflow._ext.json_encode`` kernel).
* ``prefix`` (Flink's sink identifier) starts every printed line as ``"<prefix>> "``.

``stream`` is ``"stdout"``, ``"stderr"`` (looked up on every write, so redirection and test capture
work) or any object with ``write``/``flush``. ``write`` blocks only as long as the stream does;
``flush`` flushes the stream; ``close`` does not close it. Writing after ``close`` raises
:class:`~arrowflow.errors.ArrowflowError`. Not idempotent (each write prints).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc

from ..config import check_choice, check_positive, check_type
from ..errors import ArrowflowError, ConfigurationError
from ..sink import Sink

__all__ = ["PrintSink", "PrintSinkConfig", "format_table"]


@dataclass(frozen=True, kw_only=True)
class PrintSinkConfig:
    """Options of :class:`PrintSink`."""

    stream: Any = "stdout"
    mode: str = "table"
    max_rows: int = 20
    prefix: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stream, str):
            check_choice("stream", self.stream, ("stdout", "stderr"))
        elif not (hasattr(self.stream, "write") and hasattr(self.stream, "flush")):
            raise ConfigurationError(
                "stream must be 'stdout', 'stderr' or a text stream with write() and flush()",
                option="stream",
            )
        check_choice("mode", self.mode, ("table", "ndjson"))
        check_type("max_rows", self.max_rows, int)
        check_positive("max_rows", self.max_rows)
        check_type("prefix", self.prefix, str, allow_none=True)


def _cells(column: pa.Array) -> list[str]:
    """Display text of each value (``null`` for nulls); ``column`` is already cut to the shown rows."""
    try:
        text = pc.cast(column, pa.string()) if not pa.types.is_string(column.type) else column
        values = text.to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        values = [None if v is None else repr(v) for v in column.to_pylist()]
    return ["null" if v is None else str(v).replace("\n", "\\n") for v in values]


def format_table(batch: pa.RecordBatch, max_rows: int = 20) -> list[str]:
    """The lines of an aligned text table showing the first ``max_rows`` rows of ``batch``."""
    shown = batch.slice(0, max_rows)
    names = batch.schema.names
    columns = [_cells(shown.column(i)) for i in range(batch.num_columns)]
    widths = [max([len(name), *(len(c) for c in col)]) for name, col in zip(names, columns, strict=True)]
    numeric = [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in batch.schema
    ]
    lines = [" | ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip()]
    lines.append("-+-".join("-" * w for w in widths))
    for r in range(shown.num_rows):
        cells = (
            col[r].rjust(w) if num else col[r].ljust(w)
            for col, w, num in zip(columns, widths, numeric, strict=True)
        )
        lines.append(" | ".join(cells).rstrip())
    hidden = batch.num_rows - shown.num_rows
    if hidden:
        lines.append(f"... {hidden} more row{'s' if hidden != 1 else ''} ({batch.num_rows} in this batch)")
    return lines


class PrintSink(Sink):
    """Prints batches as tables or NDJSON; see the module docstring."""

    name = "print"
    idempotent = False

    def __init__(
        self,
        *,
        stream: str | TextIO = "stdout",
        mode: str = "table",
        max_rows: int = 20,
        prefix: str | None = None,
    ) -> None:
        self.config = PrintSinkConfig(stream=stream, mode=mode, max_rows=max_rows, prefix=prefix)
        self._lock = threading.Lock()
        self._rows = 0
        self._batches = 0

    def _stream(self) -> TextIO:
        s = self.config.stream
        if s == "stdout":
            return sys.stdout
        if s == "stderr":
            return sys.stderr
        return s  # type: ignore[no-any-return]

    def _render(self, batch: pa.RecordBatch) -> str:
        prefix = f"{self.config.prefix}> " if self.config.prefix is not None else ""
        if self.config.mode == "table":
            return "".join(f"{prefix}{line}\n" for line in format_table(batch, self.config.max_rows))
        from .._ext import load

        raw = load("json_encode").encode_ndjson(batch)
        data = bytes(raw) if not isinstance(raw, bytes) else raw
        if prefix:
            # One C-level replace instead of a loop over rows.
            p = prefix.encode()
            data = p + data[:-1].replace(b"\n", b"\n" + p) + data[-1:] if data else data
        return data.decode("utf-8")

    def write(self, batch: pa.RecordBatch) -> None:
        with self._lock:
            if self._closed:
                raise ArrowflowError("PrintSink: write() after close()")
            if batch.num_rows == 0:
                return
            self._stream().write(self._render(batch))
            self._rows += batch.num_rows
            self._batches += 1

    def flush(self) -> None:
        with self._lock:
            self._stream().flush()

    def metrics(self) -> dict[str, int]:
        return {"rows": self._rows, "batches": self._batches}
