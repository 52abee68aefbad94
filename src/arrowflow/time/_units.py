"""Event-time units: durations, event times and watermarks as int64 microseconds since the epoch.

Everything in :mod:`arrowflow.time` measures time in integer microseconds (UTC epoch for instants):
Arrow's ``timestamp[us]`` resolution, exact in int64 for +-292,000 years, and fine enough that a
``timestamp[ns]`` column loses nothing a window boundary can see (windows are whole microseconds).

* :func:`duration_us` reads a duration: ``datetime.timedelta``, a number of seconds (``int``/``float``,
  like every other interval in arrowflow), or a polars-style string ``"500ms"``, ``"10s"``, ``"1m"``,
  ``"1h30m"``, ``"1d"``, ``"1w"`` (units ``us``, ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``; ``ns`` when a
  whole number of microseconds). Calendar units (``mo``, ``y``) have no fixed length and are refused.
* :func:`event_time_us` turns a column into int64 microseconds: ``timestamp`` of any unit (``ns`` floored
  to ``us``), ``date32``/``date64`` (midnight UTC) and integers, read as epoch **milliseconds** (Kafka's
  and Flink's convention). Nulls stay null. No Python object per row.
* :data:`MIN_WATERMARK` ("nothing known yet") and :data:`MAX_WATERMARK` ("end of input").
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._arrays import as_array
from ..errors import ConfigurationError

__all__ = [
    "MAX_WATERMARK",
    "MIN_WATERMARK",
    "DurationLike",
    "duration_us",
    "event_time_bounds",
    "event_time_us",
    "to_datetime",
]

#: The watermark before any event time is known (no row is late against it).
MIN_WATERMARK = -(2**63)
#: The watermark at the end of a bounded input: every window is complete.
MAX_WATERMARK = 2**63 - 1

DurationLike = timedelta | int | float | str

_UNIT_US = {"ns": None, "us": 1, "µs": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}
_UNIT_US.update({"d": 86_400_000_000, "w": 604_800_000_000})
_PART = re.compile(r"(\d+)(ns|us|µs|ms|s|m|h|d|w)")
_SCALE = {"s": 1_000_000, "ms": 1_000, "us": 1}


def duration_us(value: Any, option: str, *, allow_zero: bool = True) -> int:
    """``value`` (see the module docstring) in whole microseconds; a :class:`ConfigurationError`
    naming ``option`` for anything else, for a negative duration, or for zero unless ``allow_zero``."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{option} must be a duration, got {value!r}", option=option)
    if isinstance(value, timedelta):
        us = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    elif isinstance(value, int):
        us = value * 1_000_000
    elif isinstance(value, float):
        if not np.isfinite(value):
            raise ConfigurationError(f"{option} must be finite, got {value!r}", option=option)
        us = round(value * 1_000_000)
    elif isinstance(value, str):
        us = _parse(value.strip(), option)
    else:
        raise ConfigurationError(
            f"{option} must be a timedelta, seconds or a string like '10s', got {type(value).__name__}",
            option=option,
        )
    if us < 0 or (us == 0 and not allow_zero):
        raise ConfigurationError(
            f"{option} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}", option=option
        )
    return us


def _parse(text: str, option: str) -> int:
    pos, total_ns = 0, 0
    if not text:
        raise ConfigurationError(f"{option}: empty duration", option=option)
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            raise ConfigurationError(
                f"{option}: cannot read duration {text!r} (use e.g. '500ms', '10s', '1m', '1h30m', '1d'; "
                "calendar units such as 'mo' and 'y' have no fixed length)",
                option=option,
            )
        n, unit = int(m.group(1)), m.group(2)
        scale = _UNIT_US[unit]
        total_ns += n if scale is None else n * scale * 1000
        pos = m.end()
    if total_ns % 1000:
        raise ConfigurationError(f"{option}: {text!r} is not a whole number of microseconds", option=option)
    return total_ns // 1000


def event_time_us(values: pa.Array | pa.ChunkedArray, what: str = "event time") -> pa.Array:
    """``values`` as int64 microseconds since the epoch (see the module docstring); nulls kept.

    Raises ``TypeError`` naming ``what`` for a column of another type.
    """
    arr = as_array(values)
    t = arr.type
    if pa.types.is_timestamp(t):
        raw = arr.view(pa.int64())
        if t.unit == "ns":
            return _floor_div(raw, 1000)
        return raw if t.unit == "us" else pc.multiply_checked(raw, _SCALE[t.unit])
    if pa.types.is_date32(t):
        return pc.multiply_checked(arr.view(pa.int32()).cast(pa.int64()), 86_400_000_000)
    if pa.types.is_date64(t):
        return pc.multiply_checked(arr.view(pa.int64()), 1000)
    if pa.types.is_integer(t):
        return pc.multiply_checked(arr.cast(pa.int64()), 1000)
    raise TypeError(f"{what} must be a timestamp, date or int64 epoch-milliseconds column, got {t}")


def _floor_div(raw: pa.Array, d: int) -> pa.Array:
    # pc.divide truncates toward zero; before 1970 that would round up, so floor with numpy.
    filled = raw.fill_null(0).to_numpy(zero_copy_only=False)
    out = np.floor_divide(filled, d)
    return pa.array(out, mask=raw.is_null().to_numpy(zero_copy_only=False) if raw.null_count else None)


def event_time_bounds(values: pa.Array | pa.ChunkedArray, what: str = "event time") -> tuple[int, int] | None:
    """``(min, max)`` of the non-null event times of ``values`` in microseconds, or ``None`` if none.

    Computed on the column as it is (``pc.min_max`` over its values, then two scalars converted), so a
    ``timestamp[us]`` column costs one pass and no copy.
    """
    arr = as_array(values)
    if len(arr) == arr.null_count:
        return None
    t = arr.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_integer(t):
        width = pa.int32() if pa.types.is_date32(t) else pa.int64()
        raw = arr if pa.types.is_integer(t) else arr.view(width)
        mm = pc.min_max(raw)
        lo, hi = int(mm["min"].as_py()), int(mm["max"].as_py())
        return _scalar_us(lo, t), _scalar_us(hi, t)
    raise TypeError(f"{what} must be a timestamp, date or int64 epoch-milliseconds column, got {t}")


def _scalar_us(v: int, t: pa.DataType) -> int:
    if pa.types.is_timestamp(t):
        return v // 1000 if t.unit == "ns" else v * _SCALE[t.unit]
    if pa.types.is_date32(t):
        return v * 86_400_000_000
    return v * 1000  # date64 and integer epoch milliseconds


def to_datetime(us: int | None) -> datetime | None:
    """A watermark or event time as an aware UTC ``datetime`` (``None`` for none / MIN / MAX)."""
    if us is None or us in (MIN_WATERMARK, MAX_WATERMARK):
        return None
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)
