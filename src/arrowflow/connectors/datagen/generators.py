"""The field generators of :class:`~arrowflow.connectors.datagen.DataGenSource`: frozen specs of
one column each, drawn by the compiled kernel (the determinism contract is in the package docstring)."""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import KW_ONLY, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from ...config import check_choice, check_non_negative, check_positive, check_type
from ...errors import ConfigurationError

__all__ = [
    "Bool",
    "Choice",
    "FieldGenerator",
    "GeneratorFunction",
    "Normal",
    "RandomString",
    "Sequence",
    "Timestamps",
    "Uniform",
    "Zipf",
]

#: ``fn(row_indices: np.ndarray[int64]) -> RecordBatch | Table | Mapping[str, array-like]``. It must be
#: a pure function of the indices for restarts to regenerate the same rows.
GeneratorFunction = Callable[[np.ndarray], Any]

#: Random stream numbers within a field (see the module docstring).
STREAM_VALUES, STREAM_NULLS, STREAM_BYTES, STREAM_EXTRA = 0, 1, 2, 3

#: A kernel spec (see :func:`arrowflow._ext.datagen.generate`).
KernelSpec = tuple[Any, ...]


_EPOCH = datetime(1970, 1, 1)


def bit_threshold(p: float) -> int:
    """``p`` as a threshold on 32 random bits: true with probability ``p`` quantized to 2**-32."""
    return min(max(int(p * 2**32), 0), 2**32)


@dataclass(frozen=True)
class FieldGenerator:
    """Base of the field generators. ``null_rate`` is the probability that a value is null.

    A generator describes its random draws as kernel specs (:meth:`kernel_specs`, given the stream
    keys of its field in the current block) and turns the kernel's results into an Arrow array
    (:meth:`finish`). Generators that draw nothing (sequences) only implement :meth:`finish`.
    """

    _: KW_ONLY
    null_rate: float = 0.0

    def __post_init__(self) -> None:
        rate = self.null_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ConfigurationError(f"null_rate must be within [0, 1], got {rate!r}", option="null_rate")

    def arrow_type(self) -> pa.DataType:
        raise NotImplementedError

    def kernel_specs(self, key: Callable[[int], int], start: int) -> list[KernelSpec]:
        """The kernel columns of the rows ``start ..``; ``key(stream)`` is the field's stream key."""
        return []

    def finish(
        self, results: list[Any], start: int, n: int, validity: pa.Buffer | None, null_count: int
    ) -> pa.Array:
        """The array of rows ``start .. start + n - 1`` from the kernel ``results`` of
        :meth:`kernel_specs` (in order) and the validity bitmap (``None``: no nulls)."""
        raise NotImplementedError

    @functools.cached_property
    def _type(self) -> pa.DataType:
        return self.arrow_type()

    def _fixed(self, values: Any, n: int, validity: pa.Buffer | None, null_count: int) -> pa.Array:
        buf = values if isinstance(values, pa.Buffer) else pa.py_buffer(values)
        return pa.Array.from_buffers(self._type, n, [validity, buf], null_count=null_count)


@dataclass(frozen=True)
class Sequence(FieldGenerator):
    """``start + step * i`` for global row index ``i`` (int64, wrapping modulo ``2**64``)."""

    start: int = 0
    step: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_type("start", self.start, int)
        check_type("step", self.step, int)

    def arrow_type(self) -> pa.DataType:
        return pa.int64()

    def kernel_specs(self, key: Callable[[int], int], start: int) -> list[KernelSpec]:
        return [("seq", self.start + self.step * start, self.step)]

    def finish(
        self, results: list[Any], start: int, n: int, validity: pa.Buffer | None, null_count: int
    ) -> pa.Array:
        return self._fixed(results[0], n, validity, null_count)


_INT_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_FLOAT_TYPES = ("float32", "float64")


@dataclass(frozen=True)
class Uniform(FieldGenerator):
    """Uniform numbers: integers in ``[low, high]`` (both inclusive), floats in ``[low, high)``.

    Integers: ``low + floor(w * span / 2**64)`` of a 64-bit random word ``w`` (bias at most
    ``span / 2**64``); floats: ``low + (high - low) * u`` with 53 random bits in ``u``.
    """

    low: float = 0
    high: float = 1
    type: str = "float64"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("type", self.type, _INT_TYPES + _FLOAT_TYPES)
        check_type("low", self.low, (int, float))
        check_type("high", self.high, (int, float))
        if self.high < self.low:
            raise ConfigurationError(f"high ({self.high}) must be >= low ({self.low})", option="high")
        if self.type in _INT_TYPES:
            info = np.iinfo(self.type)
            for option, value in (("low", self.low), ("high", self.high)):
                if not info.min <= int(value) <= info.max:
                    raise ConfigurationError(
                        f"{option}={value!r} does not fit {self.type} [{info.min}, {info.max}]",
                        option=option,
                    )
        elif not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ConfigurationError("low and high must be finite", option="low")

    def arrow_type(self) -> pa.DataType:
        return pa.from_numpy_dtype(np.dtype(self.type))

    def kernel_specs(self, key: Callable[[int], int], start: int) -> list[KernelSpec]:
        width = np.dtype(self.type).itemsize
        if self.type in _INT_TYPES:
            return [("int", key(STREAM_VALUES), int(self.low), int(self.high), width)]
        return [("float", key(STREAM_VALUES), float(self.low), float(self.high), width)]

    def finish(
        self, results: list[Any], start: int, n: int, validity: pa.Buffer | None, null_count: int
    ) -> pa.Array:
        return self._fixed(results[0], n, validity, null_count)


@dataclass(frozen=True)
class Normal(FieldGenerator):
    """Normally distributed float64 values (a ziggurat sampler in the kernel)."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_type("mean", self.mean, (int, float))
        check_non_negative("std", self.std)

    def arrow_type(self) -> pa.DataType:
        return pa.float64()

    def kernel_specs(self, key: Callable[[int], int], start: int) -> list[KernelSpec]:
        return [("normal", key(STREAM_VALUES), key(STREAM_EXTRA), float(self.mean), float(self.std))]

    def finish(
        self, results: list[Any], start: int, n: int, validity: pa.Buffer | None, null_count: int
    ) -> pa.Array:
        return self._fixed(results[0], n, validity, null_count)


def _unit_spec(key: int) -> KernelSpec:
    """Uniform float64 in [0, 1) (for inverse-CDF sampling)."""
    return ("float", key, 0.0, 1.0, 8)


def _unit_values(buf: pa.Buffer, n: int) -> np.ndarray:
    return np.frombuffer(buf, dtype=np.float64, count=n)


@functools.lru_cache(maxsize=16)
def _zipf_cdf(a: float, n: int) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -a
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


@dataclass(frozen=True)
class Zipf(FieldGenerator):
    """Zipf-distributed int64 ranks in ``[1, n]``: ``P(k)`` proportional to ``k ** -a`` (any ``a > 0``)."""

    a: float = 1.1
    n: int = 1000

    MAX_N: ClassVar[int] = 10_000_000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("a", self.a)
        check_type("n", self.n, int)
        if not 1 <= self.n <= self.MAX_N:
            raise ConfigurationError(f"n must be within [1, {self.MAX_N}], got {self.n}", option="n")

    def arrow_type(self) -> pa.DataType:
        return pa.int64()

    def kernel_specs(self, key: Callable[[int], int], start: int) -> list[KernelSpec]:
        return [_unit_spec(key(STREAM_VALUES))]

    def finish(
        self, results: list[Any], start: int, n: int, validity: pa.Buffer | None, null_count: int
    ) -> pa.Array:
        # Inverse-CDF sampling over the bounded support (numpy's zipf is unbounded and needs a > 1).
        u = _unit_values(results[0], n)
        ranks = np.searchsorted(_zipf_cdf(float(self.a), self.n), u, side="right")
        return self._fixed(np.minimum(ranks, self.n - 1).astype(np.int64) + 1, n, validity, null_count)


@dataclass(frozen=True)
class RandomString(FieldGenerator):
    """Random ASCII strings: ``length`` is a fixed length or an inclusive ``(min, max)`` range.

    Lengths are uniform in the range; characters are drawn from ``alphabet`` (duplicates count
    twice). An alphabet whose size is a power of two (the default: the 64 URL-safe base64
    characters) is exactly uniform and the fastest (bit fields of a random word); any other size
    is within ``len(alphabet)**d / 2**64 < 2**-16`` of uniform per character (see the kernel).
    """

    length: int | tuple[int, int] = (8, 16)
    alphabet: str = string.ascii_letters + string.digits + "-_"

    def __post_init__(self) -> None:
        super().__post_init__()
        length = self.length
        if isinstance(length, list):
            object.__setattr__(self, "length", tuple(length))
            length = self.length
        if isinstance(length, int) and not isinstance(length, bool):
            ok = length >= 0
        else:
            ok = (
                isinstance(length, tuple)
                and len(length) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in length)
                and 0 <= length[0] <= length[1]
            )
        if not ok:
            raise ConfigurationError(
                f"length must be an int >= 0 or a (min, max) pair, got {length!r}", option="length"
            )
        if not isinstance(self.alphabet, str) or not self.alphabet or not self.alphabet.isascii():
            raise ConfigurationError("alphabet must be a non-empty ASCII string", option="alphabet")

    def arrow_type(self) -> pa.DataType:
        return pa.string()

    def _bounds(self) -> tuple[int, int]:
        if isinstance(self.length, int):
            return self.length, self.length
        return self.length

    def kernel_specs(self, key: Callable[[int], int], start: int) -> list[KernelSpec]:
        lo, hi = self._bounds()
        # Lengths and bytes come from their own streams, so both stay prefix-consistent.
        return [("string", key(STREAM_VALUES), key(STREAM_BYTES), lo, hi, self.alphabet.encode("ascii"))]

    def finish(
        self, results: list[Any], start: int, n: int, validity: pa.Buffer | None, null_count: int
    ) -> pa.Array:
        offsets, data, large = results[0]
        return pa.Array.from_buffers(
            pa.large_string() if large else pa.string(), n, [validity, offsets, data], null_count=null_count
        )


@dataclass(frozen=True)
class Choice(FieldGenerator):
    """Picks from ``values`` (uniformly, or by ``weights``); ``dictionary=True`` dictionary-encodes."""

    values: Seq[Any] = ()
    weights: Seq[float] | None = None
    dictionary: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ConfigurationError("values must not be empty", option="values")
        if self.weights is not None:
            w = tuple(float(x) for x in self.weights)
            if len(w) != len(self.values) or any(x < 0 for x in w) or sum(w) <= 0:
                raise ConfigurationError(
                    "weights must be one non-negative number per value, not all zero", option="weights"
                )
            object.__setattr__(self, "weights", w)
        check_type("dictionary", self.dictionary, bool)

    @functools.cached_property
    def _dictionary(self) -> pa.Array:
        return pa.array(list(self.values))

    @functools.cached_property
    def _cdf(self) -> np.ndarray:
        cdf = np.cumsum(np.asarray(self.weights, dtype=np.float64))
        return cdf / cdf[-1]

    def arrow_type(self) -> pa.DataType:
        if self.dictionary:
            return pa.dictionary(pa.int32(), self._dictionary.type)
        return self._dictionary.type

    def kernel_specs(self, key: Callable[[int], int], start: int) -> list[KernelSpec]:
        if self.weights is None:
            return [("int", key(STREAM_VALUES), 0, len(self.values) - 1, 4)]
        return [_unit_spec(key(STREAM_VALUES))]

    def finish(
        self, results: list[Any], start: int, n: int, validity: pa.Buffer | None, null_count: int
    ) -> pa.Array:
        if self.weights is None:
            index_buf = results[0]
        else:
            idx = np.searchsorted(self._cdf, _unit_values(results[0], n), side="right")
            index_buf = pa.py_buffer(np.minimum(idx, len(self.values) - 1).astype(np.int32))
        indices = pa.Array.from_buffers(pa.int32(), n, [validity, index_buf], null_count=null_count)
        if self.dictionary:
            return pa.DictionaryArray.from_arrays(indices, self._dictionary)
        return self._dictionary.take(indices)


@dataclass(frozen=True)
class Timestamps(FieldGenerator):
    """``start + step * i`` as ``timestamp[unit]``; ``start``: datetime or int, ``step``: timedelta or int."""

    start: datetime | int = 0
    step: timedelta | int = 1
    unit: str = "us"
    tz: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("unit", self.unit, ("s", "ms", "us", "ns"))
        check_type("start", self.start, (datetime, int))
        check_type("step", self.step, (timedelta, int))

    def arrow_type(self) -> pa.DataType:
        return pa.timestamp(self.unit, tz=self.tz)

    @functools.cached_property
    def _origin_and_step(self) -> tuple[int, int]:
        # Exact integer arithmetic (pa.scalar of a datetime would import pandas). A naive start is
        # taken as UTC, an aware one is converted to UTC; finer digits than the unit are dropped.
        per_us = {"s": (1, 1_000_000), "ms": (1, 1000), "us": (1, 1), "ns": (1000, 1)}[self.unit]

        def units(delta: timedelta) -> int:
            us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            return us * per_us[0] // per_us[1]

        t0 = self.start
        if isinstance(t0, datetime):
            epoch = _EPOCH if t0.tzinfo is None else _EPOCH.replace(tzinfo=timezone.utc)
            t0 = units(t0 - epoch)
        dt = self.step
        if isinstance(dt, timedelta):
            dt = units(dt)
        return int(t0), int(dt)

    def kernel_specs(self, key: Callable[[int], int], start: int) -> list[KernelSpec]:
        t0, dt = self._origin_and_step
        return [("seq", t0 + dt * start, dt)]

    def finish(
        self, results: list[Any], start: int, n: int, validity: pa.Buffer | None, null_count: int
    ) -> pa.Array:
        return self._fixed(results[0], n, validity, null_count)


@dataclass(frozen=True)
class Bool(FieldGenerator):
    """Booleans that are true with probability ``p`` (quantized to 2**-32)."""

    p: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not 0 <= self.p <= 1:
            raise ConfigurationError(f"p must be within [0, 1], got {self.p!r}", option="p")

    def arrow_type(self) -> pa.DataType:
        return pa.bool_()

    def kernel_specs(self, key: Callable[[int], int], start: int) -> list[KernelSpec]:
        return [("bits", key(STREAM_VALUES), bit_threshold(self.p), False)]

    def finish(
        self, results: list[Any], start: int, n: int, validity: pa.Buffer | None, null_count: int
    ) -> pa.Array:
        return self._fixed(results[0][0], n, validity, null_count)
