"""What a broker sink sends for a row: :class:`PayloadSpec` encodes a batch into one entry per row.

An *entry* (a row of the ``pa.StructArray`` :meth:`PayloadSpec.encode` returns) holds:

* ``payload`` (binary, always): ``value_column`` as is (binary/string; any other type cast to
  string), or the row encoded by ``format`` (default JSON) over ``value_columns``. Without
  ``value_columns`` the format gets every column but the addressing ones (``routing_column``,
  ``key_column``, ``headers_column``), unless it picks its own (a format with ``columns``, e.g.
  ``Json(columns=[...])``, gets the whole batch).
* ``routing`` (string, with ``routing_column``): where the row goes (a topic, routing key, subject,
  destination). A fixed destination stays with the sink and is not in the entries.
* ``key`` (string, with ``key_column``): a message key / ordering key (null = none).
* ``id`` (string, with ``id_column`` or ``generate_ids``): the message id; generated ids are
  ``"<run id>-<row number>"`` (unique per row of one sink, the same on every retry of the row).
* ``headers``: with ``headers_column``, that ``map<string, string>`` column; with
  ``header_columns``, a struct of those columns (kept as they are, or cast to string with
  ``headers_as_text``).

Rows that cannot be sent are returned as failures, never sent: a row the format could not encode, a
null ``value_column`` value, a null id, or a routing value ``routing_valid`` rejects (default: null).
Every failure carries its reason; the sink's error policy receives them
(:class:`~arrowflow.writer.Encoded`). No Python object is built per row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import check_type, post_init_bases
from ...errors import ConfigurationError
from ...formats import Format, Json
from ...formats.base import as_binary
from ...writer import Encoded

__all__ = [
    "Outgoing",
    "PayloadOptions",
    "PayloadSpec",
    "RowIds",
    "check_columns",
    "non_empty",
    "payload_columns",
]

_MAP = pa.map_(pa.string(), pa.string())


def non_empty(values: pa.Array) -> pa.Array:
    """``routing_valid`` for destinations that must be non-empty strings (null or ``""`` fail)."""
    return pc.and_kleene(values.is_valid(), pc.greater(pc.binary_length(values), 0)).fill_null(False)


def payload_columns(
    names: Sequence[str],
    value_columns: Sequence[str] | None,
    fmt: Format | None,
    addressing: Sequence[str | None],
) -> list[str]:
    """The columns a payload format encodes, of a batch with columns ``names``: ``value_columns``
    when given; every column when the format picks its own (a format with ``columns``, e.g.
    ``Json(columns=[...])``); else every column but the ``addressing`` ones (routing, key, ...)."""
    if value_columns is not None:
        return list(value_columns)
    if getattr(fmt, "columns", None) is not None:
        return list(names)
    return [c for c in names if c not in addressing]


def check_columns(batch: pa.RecordBatch, columns: Sequence[str | None], what: str, option: str) -> None:
    """Every named one of ``columns`` is in ``batch``; else a :class:`ConfigurationError` naming
    ``option`` (``what``: the sink, e.g. ``"kafka sink"``)."""
    names = set(batch.schema.names)
    missing = [c for c in columns if c is not None and c not in names]
    if missing:
        raise ConfigurationError(f"{what}: columns {missing} are not in the batch", option=option)


class RowIds:
    """Generated message ids ``"<run id>-<row number>"``: one run id per sink, rows numbered as written."""

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex[:16]
        self._next = 0

    def take(self, n: int) -> pa.Array:
        """The ids of the next ``n`` rows (a string array)."""
        numbers = pa.array(np.arange(self._next, self._next + n, dtype=np.int64)).cast(pa.string())
        self._next += n
        return pc.binary_join_element_wise(pa.scalar(self.run_id + "-"), numbers, pa.scalar(""))


class _Failures:
    """Failed row indices with one reason each; the first reason found for a row wins."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rows: list[np.ndarray] = []
        self.errors: list[str] = []
        self._seen = np.zeros(n, dtype=bool)

    def add(self, rows: np.ndarray, errors: list[str] | str) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return
        fresh = ~self._seen[rows]
        if not fresh.all():
            rows = rows[fresh]
            if not isinstance(errors, str):
                errors = [e for e, f in zip(errors, fresh.tolist(), strict=True) if f]
        self._seen[rows] = True
        self.rows.append(rows)
        self.errors.extend([errors] * len(rows) if isinstance(errors, str) else errors)

    def add_mask(self, bad: pa.Array, error: str) -> None:
        """Rows where the boolean array ``bad`` is true (null counts as false)."""
        mask = np.asarray(bad.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        self.add(np.flatnonzero(mask), error)

    def result(self, entries: pa.StructArray) -> pa.StructArray | Encoded:
        if not self.rows:
            return entries
        failed = np.concatenate(self.rows)
        order = np.argsort(failed, kind="stable")
        failed = failed[order]
        errors = [self.errors[i] for i in order.tolist()]
        return Encoded(entries=entries.filter(pa.array(~self._seen)), failed=failed, errors=errors)


@dataclass(frozen=True, kw_only=True)
class PayloadSpec:
    """Which columns make a message and how (see the module docstring).

    The broker's configuration validates its own option names and builds this; it is not a
    user-facing option itself, so it checks only what the brokers share.
    """

    format: Format | None = None
    value_column: str | None = None
    value_columns: tuple[str, ...] | None = None
    routing_column: str | None = None
    routing_valid: Callable[[pa.Array], pa.Array] | None = None
    routing_error: str = "null routing value"
    key_column: str | None = None
    id_column: str | None = None
    generate_ids: bool = False
    header_columns: tuple[str, ...] = ()
    headers_as_text: bool = False
    headers_column: str | None = None
    headers_option: str = "headers_column"
    #: Columns that address a message rather than hold its data (left out of the default payload).
    addressing: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        used = (self.routing_column, self.key_column, self.headers_column)
        object.__setattr__(self, "addressing", tuple(c for c in used if c is not None))

    @property
    def encoder(self) -> Format:
        """The format of the payload (JSON unless one was given)."""
        return self.format if self.format is not None else Json()

    def payload_columns(self, names: list[str]) -> list[str]:
        """The columns the format encodes, of a batch with columns ``names``."""
        return payload_columns(names, self.value_columns, self.format, self.addressing)

    def encode(self, batch: pa.RecordBatch, ids: RowIds | None = None) -> pa.StructArray | Encoded:
        """One entry per row of ``batch`` (or :class:`~arrowflow.writer.Encoded` when rows failed).

        ``ids`` numbers the rows when ``generate_ids`` (it advances by ``batch.num_rows``).
        """
        n = batch.num_rows
        failures = _Failures(n)
        if self.value_column is not None:
            col = batch.column(self.value_column)
            if not (pa.types.is_binary(col.type) or pa.types.is_string(col.type)):
                col = col.cast(pa.string())
            payloads = as_binary(col)
            failures.add_mask(col.is_null(), "null value")
        else:
            enc = self.encoder.encode(batch.select(self.payload_columns(batch.schema.names)))
            payloads = as_binary(enc.payloads)
            failures.add(np.asarray(enc.failed, np.int64), enc.errors)
        if pa.types.is_large_binary(payloads.type):
            payloads = payloads.cast(pa.binary())
        arrays: list[pa.Array] = [payloads]
        names = ["payload"]
        if self.routing_column is not None:
            routing = batch.column(self.routing_column).cast(pa.string())
            valid = self.routing_valid(routing) if self.routing_valid is not None else routing.is_valid()
            failures.add_mask(pc.invert(valid), self.routing_error)
            arrays.append(routing)
            names.append("routing")
        if self.key_column is not None:
            arrays.append(batch.column(self.key_column).cast(pa.string()))
            names.append("key")
        if self.id_column is not None or self.generate_ids:
            if self.id_column is not None:
                message_ids = batch.column(self.id_column).cast(pa.string())
            else:
                message_ids = (ids or RowIds()).take(n)
            failures.add_mask(message_ids.is_null(), "null message id")
            arrays.append(message_ids)
            names.append("id")
        headers = self._headers(batch)
        if headers is not None:
            arrays.append(headers)
            names.append("headers")
        return failures.result(pa.StructArray.from_arrays(arrays, names=names))

    def _headers(self, batch: pa.RecordBatch) -> pa.Array | None:
        if self.headers_column is not None:
            column = batch.column(self.headers_column)
            if not pa.types.is_map(column.type):
                raise ConfigurationError(
                    f"{self.headers_option} {self.headers_column!r} must be map<string, string>, "
                    f"not {column.type}",
                    option=self.headers_option,
                )
            return column.cast(_MAP)
        if self.header_columns:
            columns = [batch.column(c) for c in self.header_columns]
            if self.headers_as_text:
                columns = [c.cast(pa.string()) for c in columns]
            return pa.StructArray.from_arrays(columns, list(self.header_columns))
        return None


@dataclass(frozen=True)
class Outgoing:
    """A request's entries unpacked for a client that sends one message at a time.

    ``payload(i)`` slices one contiguous copy of the payload bytes (one copy per request, not per
    row); ``routing``, ``keys``, ``ids`` and ``headers`` are Python lists when the entries have them
    (else ``None``). This is the boundary where a client library wants Python objects.
    """

    n: int
    data: bytes
    offsets: list[int]
    routing: list[str] | None = None
    keys: list[str | None] | None = None
    ids: list[str] | None = None
    headers: list[Any] | None = None

    @classmethod
    def of(
        cls, entries: pa.StructArray, *, fields: tuple[str, ...] = ("routing", "key", "id", "headers")
    ) -> Outgoing:
        """Unpack ``entries`` (only the ``fields`` named, of those present)."""
        n = len(entries)
        payloads = entries.field("payload")
        bufs = payloads.buffers()
        offsets = np.frombuffer(bufs[1], np.int32)[payloads.offset : payloads.offset + n + 1].tolist()
        data = bufs[2].to_pybytes() if bufs[2] is not None else b""
        present = {entries.type.field(i).name for i in range(entries.type.num_fields)}

        def listed(name: str) -> list[Any] | None:
            return entries.field(name).to_pylist() if name in present and name in fields else None

        return cls(n, data, offsets, listed("routing"), listed("key"), listed("id"), listed("headers"))

    def payload(self, i: int) -> bytes:
        return self.data[self.offsets[i] : self.offsets[i + 1]]

    def sizes(self) -> np.ndarray:
        """Payload bytes per entry."""
        return np.diff(np.asarray(self.offsets, np.int64))


@dataclass(frozen=True, kw_only=True)
class PayloadOptions:
    """The payload options every broker sink's configuration starts with (inherit it)."""

    format: Format | None = None
    """How a row becomes a payload (default :class:`~arrowflow.formats.Json`, the compiled kernel);
    excludes ``value_column``."""
    value_column: str | None = None
    """A binary/string column sent as the payload as it is (other types cast to string; a null
    value sends the row to the error policy); excludes ``value_columns`` and ``format``."""
    value_columns: Sequence[str] | None = None
    """The columns ``format`` encodes (default: every column but the ones that address the message:
    the routing, key and headers columns; a format with its own ``columns`` gets every column)."""

    def __post_init__(self) -> None:
        post_init_bases(super())
        check_type("format", self.format, Format, allow_none=True)
        check_type("value_column", self.value_column, str, allow_none=True)
        if self.value_column is not None and (self.value_columns is not None or self.format is not None):
            raise ConfigurationError(
                "value_column is sent as is; it excludes value_columns and format", option="value_column"
            )
        if self.value_columns is not None:
            columns = (
                (self.value_columns,) if isinstance(self.value_columns, str) else tuple(self.value_columns)
            )
            if not all(isinstance(c, str) for c in columns):
                raise ConfigurationError("value_columns must be column names", option="value_columns")
            object.__setattr__(self, "value_columns", columns)

    def payload_spec(self, **addressing: Any) -> PayloadSpec:
        """The :class:`PayloadSpec` of these options plus the broker's ``addressing`` fields."""
        return PayloadSpec(
            format=self.format,
            value_column=self.value_column,
            value_columns=self.value_columns,  # type: ignore[arg-type]
            **addressing,
        )
