"""The source and its reader: see the package docstring for the contract."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from ..._ext import load as _load_kernel
from ...config import resolve_config
from ...errors import ConfigurationError
from ...source import Position, Source, Split, SplitReader
from .config import DataGenConfig, FieldsLike
from .generators import STREAM_NULLS, FieldGenerator, GeneratorFunction, KernelSpec, bit_threshold

__all__ = ["DataGenReader", "DataGenSource"]


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
        config: DataGenConfig | None = None,
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
        self.config = resolve_config(DataGenConfig, config, {**locals(), "fields": pairs})
        pairs = self.config.fields
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
                specs.append(("bits", key(STREAM_NULLS), bit_threshold(gen.null_rate), True))
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
