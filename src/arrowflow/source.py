"""Source contracts: a :class:`Source` plans :class:`Split` s and opens a :class:`SplitReader` per split.

The contract every source keeps (the conformance suite in :mod:`arrowflow.testing` checks it):

* ``Source.plan()`` is cheap and returns JSON-serializable splits (a partition, a shard, a file, an
  id range). ``Source.open(split, position)`` opens a reader that starts *after* ``position`` (a
  value previously returned by ``SplitReader.snapshot()``), or at the split's start when ``None``.
* ``SplitReader.read_batch(max_rows, timeout)`` returns a ``pyarrow.RecordBatch`` of at most
  ``max_rows`` rows, or ``None`` when nothing is ready. It never blocks for longer than ``timeout``
  seconds. A bounded split sets ``finished`` once its last batch has been returned.
* ``snapshot()`` is the JSON-serializable position after the last batch returned: reopening the split
  from it neither re-reads nor skips a row (for replayable sources).
* ``Source.replayable`` declares whether a restart from a checkpoint gets exactly the rows after its
  positions again; a pipeline refuses ``guarantee="exactly-once"`` with a source that is not.
* ``commit(snapshot)`` acknowledges upstream (Kafka offsets, AMQP acks) once a checkpoint holding that
  snapshot is durable. It must tolerate being called with an older snapshot than the latest.
* ``close()`` releases resources; it is idempotent and may not run at all after a crash.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .errors import ConfigurationError, ConnectorError

if TYPE_CHECKING:
    import pandas
    import polars

__all__ = ["Position", "Source", "Split", "SplitReader", "check_int_position", "stop_position"]

#: A JSON-serializable value: what ``snapshot()`` returns and ``open()`` takes back.
Position = Any


@dataclass(frozen=True, kw_only=True)
class Split:
    """One independently readable part of a source (a partition, a shard, a file, an id range).

    ``split_id`` is unique within a source and stable across runs: checkpoints key positions by it.
    ``params`` holds whatever the source needs to open the split; it must be JSON-serializable.
    """

    split_id: str
    bounded: bool = True
    params: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.split_id)

    def to_json(self) -> dict[str, Any]:
        return {"split_id": self.split_id, "bounded": self.bounded, "params": dict(self.params)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Split:
        return cls(
            split_id=data["split_id"], bounded=data.get("bounded", True), params=data.get("params", {})
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


def check_int_position(split: Split, position: Position, what: str, *, minimum: int | None = 0) -> None:
    """For ``open(split, position)`` of a source whose position is a number: ``position`` is
    ``None`` or an ``int`` (not a ``bool``) of at least ``minimum`` (``None``: any); else a
    :class:`~arrowflow.errors.ConnectorError` ``split '<id>': a position is <what>, got <position>``."""
    if position is None:
        return
    if (
        isinstance(position, bool)
        or not isinstance(position, int)
        or (minimum is not None and position < minimum)
    ):
        raise ConnectorError(f"split {split.split_id!r}: a position is {what}, got {position!r}")


def stop_position(split: Split) -> int | None:
    """The position a bounded split of a log ends at, ``params["stop"]`` (a Kafka offset, a JetStream
    sequence), or ``None`` when the split has no end."""
    stop = split.params.get("stop")
    return int(stop) if stop is not None else None


class SplitReader(ABC):
    """Reads one split. See the module docstring for the contract."""

    def __init__(self, split: Split, position: Position = None) -> None:
        self.split = split
        self.start_position = position

    @abstractmethod
    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        """The next batch of at most ``max_rows`` rows, or ``None`` if nothing is ready within ``timeout``."""

    @property
    @abstractmethod
    def finished(self) -> bool:
        """True once a bounded split has returned its last batch (always False for unbounded splits)."""

    @abstractmethod
    def snapshot(self) -> Position:
        """The JSON-serializable position after the last batch returned."""

    def commit(self, snapshot: Position) -> None:  # noqa: B027 - optional hook
        """Acknowledge upstream everything up to ``snapshot`` (called after a durable checkpoint)."""

    def lag(self) -> int | None:
        """Rows (or messages) known to be waiting upstream, if the source can tell; else ``None``."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Idempotent."""

    def __enter__(self) -> SplitReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Source(ABC):
    """Plans splits and opens readers for them. Also usable directly, without a pipeline."""

    #: A short name shown in metrics and the CLI.
    name: str = "source"
    #: True when a pipeline restarted from a checkpoint gets every row after the checkpoint's
    #: positions again and none before them: a log read by offset or sequence number (Kafka,
    #: Kinesis, JetStream, Redis streams), files, tables and query results, a seeded generator, or a
    #: queue that redelivers unacknowledged messages and drops, by an id kept in the checkpoint, the
    #: ones already delivered (RabbitMQ with ``dedup``). Only such a source can feed an
    #: ``exactly-once`` pipeline: the runner refuses the others (sockets, push endpoints, in-process
    #: queues, MQTT, Pub/Sub, plain iterators) with a :class:`ConfigurationError`. False by default, so
    #: a new source must claim it; a source whose replayability depends on its options makes this a
    #: property.
    replayable: bool = False

    @property
    @abstractmethod
    def bounded(self) -> bool:
        """True if every split ends (a file, a table, a collection); False for streams."""

    @property
    def schema(self) -> pa.Schema | None:
        """The schema of the batches, when known before reading."""
        return None

    @abstractmethod
    def plan(self) -> list[Split]:
        """The splits to read. Cheap: no data is read."""

    @abstractmethod
    def open(self, split: Split, position: Position = None) -> SplitReader:
        """A reader for ``split`` starting after ``position`` (``None``: the split's start)."""

    def discover(self, known: Sequence[Split]) -> list[Split]:
        """Splits that appeared since planning (new partitions, new files).

        ``known`` are the splits read so far.
        """
        return []

    #: How often (seconds) a runner should call :meth:`discover`; ``None`` disables discovery.
    discovery_interval: float | None = None

    # -- direct use, without a pipeline -------------------------------------------------------------

    def batches(
        self,
        max_rows: int = 65536,
        timeout: float = 1.0,
        *,
        positions: Mapping[str, Position] | None = None,
        idle_timeout: float | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Iterate over the batches of every split, round robin.

        For a bounded source the iterator ends when every split is finished. For an unbounded one it
        runs until the caller stops iterating, or until no batch arrived for ``idle_timeout`` seconds.
        ``positions`` maps split ids to saved positions to resume from.
        """
        if max_rows <= 0:
            raise ConfigurationError(f"max_rows must be > 0, got {max_rows!r}", option="max_rows")
        positions = positions or {}
        splits = self.plan()
        readers = [self.open(s, positions.get(s.split_id)) for s in splits]
        last_data = time.monotonic()
        next_discovery = (
            time.monotonic() + self.discovery_interval if self.discovery_interval is not None else None
        )
        try:
            while True:
                active = [r for r in readers if not r.finished]
                if self.bounded and not active:
                    return
                got = False
                per_reader_timeout = timeout / max(len(active), 1)
                for reader in active:
                    batch = reader.read_batch(max_rows, per_reader_timeout)
                    if batch is not None and batch.num_rows:
                        got = True
                        yield batch
                now = time.monotonic()
                if got:
                    last_data = now
                elif idle_timeout is not None and now - last_data >= idle_timeout:
                    return
                if next_discovery is not None and now >= next_discovery:
                    for s in self.discover([r.split for r in readers]):
                        readers.append(self.open(s, positions.get(s.split_id)))
                    next_discovery = now + (self.discovery_interval or 0.0)
                if not active and not got:
                    time.sleep(min(timeout, 0.05))
        finally:
            for reader in readers:
                reader.close()

    def _require_bounded(self, what: str) -> None:
        if not self.bounded:
            raise ConfigurationError(
                f"{what}() needs a bounded source; {type(self).__name__} is unbounded "
                "(iterate with batches(idle_timeout=...) instead)",
                option="bounded",
            )

    def read_all(self, max_rows: int = 65536) -> pa.Table:
        """Read every split to the end into one table (bounded sources only)."""
        self._require_bounded("read_all")
        batches = list(self.batches(max_rows=max_rows))
        schema = batches[0].schema if batches else self.schema
        if schema is None:
            return pa.table({})
        return pa.Table.from_batches(batches, schema=schema)

    def to_polars(self) -> polars.DataFrame:
        """Read everything into a polars DataFrame (needs ``polars``)."""
        import polars as pl

        table = self.read_all()
        return pl.from_arrow(table)  # type: ignore[return-value]

    def to_pandas(self) -> pandas.DataFrame:
        """Read everything into a pandas DataFrame (needs ``pandas``)."""
        return self.read_all().to_pandas()
