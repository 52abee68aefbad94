"""Synthetic data (Flink's DataGen connector): :class:`DataGenSource`, bounded or unbounded.

Columns come from small frozen field generators (:class:`Sequence`, :class:`Uniform`,
:class:`Normal`, :class:`Zipf`, :class:`RandomString`, :class:`Choice`, :class:`Timestamps`,
:class:`Bool`), each with a ``null_rate``, or from one user function that receives the row indices
(``generator=``). Every random draw of a block (values, string lengths and bytes, null masks) is
made by one call of the compiled kernel :func:`arrowflow._ext.datagen.generate`, which releases the
GIL, builds no Python object per row and fills the columns on up to ``threads`` threads; numpy only
does sequences and inverse-CDF lookups (Zipf, weighted Choice).

Determinism. Rows are generated in *blocks* of ``batch_size`` rows: block ``b`` holds the global row
indices ``[b * batch_size, (b + 1) * batch_size)``. Field ``j`` of block ``b`` draws from counter-based
SplitMix64 streams keyed by ``stream_key(seed, b, j, stream)`` (``stream`` 0 for values and string
lengths, 1 for the null mask, 2 for string bytes, 3 for the normal sampler's rare extra draws), and
row ``r`` of the block uses counter ``r`` (see the kernel's docstring). So the values of row ``i``
depend only on ``seed``, ``batch_size``, the field's position and generator, and ``i`` — never on the
number of splits, on ``max_rows``, on ``threads`` or on where reading resumed. (Generating a prefix of
a block gives the prefix of the full block, so ``count`` does not change earlier rows either.) The
values are the same on every platform with IEEE doubles; :mod:`arrowflow._reference.datagen` is a
pure-Python oracle of the kernel.

Splits and positions. A bounded source (``count`` given) is cut into ``num_splits`` contiguous,
equal row ranges; an unbounded one gives split ``k`` the blocks ``k, k + n, k + 2n, ...``.
A position (``snapshot()``) is the global index of the next row the split will return, so reopening
from it regenerates exactly the remaining rows. ``commit`` is a no-op.

Rate limiting. ``rows_per_second`` (for the whole source, shared evenly by the splits) is a token
bucket per reader, starting empty and holding at most one second of tokens. ``read_batch`` waits
for tokens but never past its ``timeout``; it returns ``None`` when no row is allowed yet. The clock
and sleep function are injectable for tests.
"""

from __future__ import annotations

import functools
import math
import string
import time
from collections.abc import Callable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from .._ext import load as _load_kernel
from ..config import check_choice, check_non_negative, check_positive, check_type
from ..errors import ConfigurationError
from ..source import Position, Source, Split, SplitReader

__all__ = [
    "Bool",
    "Choice",
    "DataGenConfig",
    "DataGenSource",
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


def _threshold(p: float) -> int:
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
        return [("bits", key(STREAM_VALUES), _threshold(self.p), False)]

    def finish(
        self, results: list[Any], start: int, n: int, validity: pa.Buffer | None, null_count: int
    ) -> pa.Array:
        return self._fixed(results[0][0], n, validity, null_count)


FieldsLike = Mapping[str, FieldGenerator] | Seq[tuple[str, FieldGenerator]]


@dataclass(frozen=True, kw_only=True)
class DataGenConfig:
    """Options of :class:`DataGenSource` (see the module docstring)."""

    fields: tuple[tuple[str, FieldGenerator], ...] = ()
    count: int | None = None
    rows_per_second: float | None = None
    seed: int = 0
    batch_size: int = 65536
    num_splits: int = 1
    threads: int = 1
    generator: GeneratorFunction | None = None
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if bool(self.fields) == (self.generator is not None):
            raise ConfigurationError(
                "give either fields (a schema spec) or generator=, not both", option="fields"
            )
        names = [name for name, _ in self.fields]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"duplicate field names in {names}", option="fields")
        for name, gen in self.fields:
            check_type("fields", name, str)
            if not isinstance(gen, FieldGenerator):
                raise ConfigurationError(f"field {name!r}: {gen!r} is not a field generator", option="fields")
        if self.generator is not None and not callable(self.generator):
            raise ConfigurationError("generator must be callable(indices) -> batch", option="generator")
        check_type("count", self.count, int, allow_none=True)
        check_non_negative("count", self.count, allow_none=True)
        check_positive("rows_per_second", self.rows_per_second, allow_none=True)
        check_type("seed", self.seed, int)
        if self.seed < 0 or self.seed >= 2**128:
            raise ConfigurationError("seed must be within [0, 2**128)", option="seed")
        check_type("batch_size", self.batch_size, int)
        check_positive("batch_size", self.batch_size)
        check_type("num_splits", self.num_splits, int)
        check_positive("num_splits", self.num_splits)
        check_type("threads", self.threads, int)
        check_non_negative("threads", self.threads)


class DataGenSource(Source):
    """Generated rows; bounded when ``count`` is given. See the module docstring for the contract.

    ``schema_spec``/``fields``: a mapping ``name -> generator`` or a list of ``(name, generator)``
    pairs. ``generator``: a :data:`GeneratorFunction` used instead of fields. ``threads``: threads
    that fill the columns of one block (``0``: two for blocks of >= 8192 rows, else one); the
    values never depend on it. The default is one: a single core already makes about 30M rows/s
    of the benchmark table (when it has the core to itself), and on a busy machine a second
    thread that is scheduled late makes the block wait for it (measured on the shared 2-core
    box: the median per-block rate fell from ~33M to ~18-21M rows/s with two threads).
    """

    name = "datagen"
    replayable = True

    def __init__(
        self,
        schema_spec: FieldsLike | None = None,
        *,
        fields: FieldsLike | None = None,
        count: int | None = None,
        rows_per_second: float | None = None,
        seed: int = 0,
        batch_size: int = 65536,
        num_splits: int = 1,
        threads: int = 1,
        generator: GeneratorFunction | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if schema_spec is not None and fields is not None:
            raise ConfigurationError("give schema_spec or fields=, not both", option="fields")
        spec = schema_spec if schema_spec is not None else fields
        pairs: tuple[tuple[str, FieldGenerator], ...] = ()
        if spec is not None:
            items = spec.items() if isinstance(spec, Mapping) else spec
            try:
                pairs = tuple((name, gen) for name, gen in items)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    "fields must be a mapping or a list of (name, generator) pairs", option="fields"
                ) from exc
        self.config = DataGenConfig(
            fields=pairs,
            count=count,
            rows_per_second=rows_per_second,
            seed=seed,
            batch_size=batch_size,
            num_splits=num_splits,
            threads=threads,
            generator=generator,
            clock=clock,
            sleep=sleep,
        )
        self._schema = pa.schema([pa.field(name, gen.arrow_type()) for name, gen in pairs]) if pairs else None

    @property
    def bounded(self) -> bool:
        return self.config.count is not None

    @property
    def schema(self) -> pa.Schema | None:
        return self._schema

    def plan(self) -> list[Split]:
        cfg = self.config
        n = cfg.num_splits
        if cfg.count is None:
            return [
                Split(split_id=f"datagen-{k}-of-{n}", bounded=False, params={"index": k, "num_splits": n})
                for k in range(n)
            ]
        # Even row ranges: a split may start inside a block (its reader generates that block and
        # slices it), which keeps every split busy even when count is small against batch_size.
        splits = []
        for k in range(n):
            lo, hi = k * cfg.count // n, (k + 1) * cfg.count // n
            splits.append(
                Split(
                    split_id=f"datagen-{k}-of-{n}",
                    params={"index": k, "num_splits": n, "start": lo, "end": hi},
                )
            )
        return splits

    def open(self, split: Split, position: Position = None) -> DataGenReader:
        return DataGenReader(self, split, position)

    def generate_block(self, block: int, start: int, n: int) -> pa.RecordBatch:
        """Rows ``start .. start + n - 1`` (``start`` at the beginning of ``block``; ``n`` <= block size)."""
        cfg = self.config
        if cfg.generator is not None:
            return _as_batch(cfg.generator(np.arange(start, start + n, dtype=np.int64)))
        assert self._schema is not None
        kernel = _kernel()
        stream_key = kernel.stream_key
        seed = cfg.seed
        specs: list[KernelSpec] = []
        plan: list[tuple[FieldGenerator, int, int, bool]] = []
        for j, (_, gen) in enumerate(cfg.fields):

            def key(stream: int, j: int = j) -> int:
                return stream_key(seed, block, j, stream)  # type: ignore[no-any-return]

            own = gen.kernel_specs(key, start)
            nullable = gen.null_rate > 0
            plan.append((gen, len(specs), len(own), nullable))
            specs.extend(own)
            if nullable:
                # A set bit means valid: null when the 32 random bits fall below the null rate.
                specs.append(("bits", key(STREAM_NULLS), _threshold(gen.null_rate), True))
        results = kernel.generate(specs, n, cfg.threads)
        arrays = []
        for gen, first, count, nullable in plan:
            validity, null_count = None, 0
            if nullable:
                validity, valid = results[first + count]
                null_count = n - valid
            arrays.append(gen.finish(results[first : first + count], start, n, validity, null_count))
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)


@functools.cache
def _kernel() -> Any:
    return _load_kernel("datagen")


def _as_batch(result: Any) -> pa.RecordBatch:
    if isinstance(result, pa.RecordBatch):
        return result
    if isinstance(result, pa.Table):
        return (
            result.combine_chunks().to_batches()[0]
            if result.num_rows
            else pa.RecordBatch.from_pylist([], schema=result.schema)
        )
    if isinstance(result, Mapping):
        return pa.RecordBatch.from_pydict(dict(result))
    raise TypeError(f"generator must return a RecordBatch, Table or mapping, got {type(result).__name__}")


class _TokenBucket:
    """Rows allowed by ``rate`` rows/s; holds at most one second of tokens; starts empty."""

    def __init__(self, rate: float, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.clock = clock
        self.sleep = sleep
        self.tokens = 0.0
        self.last = clock()

    def _refill(self) -> float:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        return now

    def take(self, want: int, timeout: float) -> int:
        """Up to ``want`` rows, waiting at most ``timeout`` seconds for at least one (or ~20 ms worth)."""
        now = self._refill()
        deadline = now + max(timeout, 0.0)
        # Waiting for ~20 ms worth of rows avoids a stream of one-row batches at high rates.
        target = min(want, max(1, int(self.rate * 0.02)))
        # The epsilon absorbs float rounding in the refill arithmetic, which would otherwise leave
        # the bucket a hair short of ``target`` and spin on ever smaller sleeps.
        while self.tokens + 1e-9 < target and now < deadline:
            self.sleep(min(deadline - now, (target - self.tokens) / self.rate))
            before, now = now, self._refill()
            if now <= before:  # a clock that does not advance cannot fill the bucket
                break
        got = min(want, int(self.tokens + 1e-9))
        self.tokens -= got
        return got


class DataGenReader(SplitReader):
    """Reads one DataGen split. Never blocks except for rate limiting (bounded by ``timeout``)."""

    def __init__(self, source: DataGenSource, split: Split, position: Position = None) -> None:
        super().__init__(split, position)
        self.source = source
        cfg = source.config
        self._bs = cfg.batch_size
        self._index = int(split.params["index"])
        self._n = int(split.params["num_splits"])
        self._end: int | None = split.params.get("end") if cfg.count is not None else None
        first = int(split.params["start"]) if cfg.count is not None else self._index * self._bs
        if position is not None:
            pos = int(position)
            if pos < first or (self._end is not None and pos > self._end) or not self._owns(pos):
                raise ConfigurationError(
                    f"position {pos} is not within split {split.split_id}", option="position"
                )
            first = pos
        self._pos = first
        self._cache: tuple[int, pa.RecordBatch] | None = None
        rate = cfg.rows_per_second
        self._bucket = _TokenBucket(rate / self._n, cfg.clock, cfg.sleep) if rate is not None else None

    def _owns(self, pos: int) -> bool:
        if self._end is not None:
            return True
        block = pos // self._bs
        # The first row of the next owned block is also a valid position (end of an owned block).
        return block % self._n == self._index or (
            pos % self._bs == 0 and (block - 1) % self._n == self._index
        )

    @property
    def finished(self) -> bool:
        return self._end is not None and self._pos >= self._end

    def snapshot(self) -> Position:
        return self._pos

    def lag(self) -> int | None:
        return None if self._end is None else self._end - self._pos

    def _normalize(self) -> None:
        # An unbounded split jumps from the end of block b to the start of block b + n.
        if self._end is None:
            block = self._pos // self._bs
            if block % self._n != self._index:
                self._pos = (block + self._n - 1) * self._bs

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self.finished:
            return None
        self._normalize()
        block, offset = divmod(self._pos, self._bs)
        count = self.source.config.count
        block_rows = self._bs if count is None else min(self._bs, count - block * self._bs)
        n = min(max_rows, block_rows - offset)
        if self._end is not None:
            n = min(n, self._end - self._pos)
        if self._bucket is not None:
            n = self._bucket.take(n, timeout)
            if n == 0:
                return None
        if self._cache is None or self._cache[0] != block:
            if offset == 0 and n == block_rows:
                batch = self.source.generate_block(block, self._pos, n)
                self._pos += n
                return batch
            self._cache = (block, self.source.generate_block(block, block * self._bs, block_rows))
        batch = self._cache[1].slice(offset, n)
        self._pos += n
        if offset + n >= block_rows:
            self._cache = None
        return batch

    def close(self) -> None:
        self._cache = None
