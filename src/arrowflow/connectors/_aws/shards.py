"""Shard splits of the AWS stream sources (Kinesis, DynamoDB Streams): planning, parents before
children, and the rate-limited GetRecords loop of one shard's reader.

Both services list shards with ``ShardId`` / ``ParentShardId`` (Kinesis also
``AdjacentParentShardId`` after a merge), read a shard with GetShardIterator + GetRecords, and end a
closed shard by returning no ``NextShardIterator``. What differs (listing, iterator parameters,
record layout) stays in each connector.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import pyarrow as pa

from ...config import ConfigAttributes, check_at_most, check_positive, check_type, post_init_bases
from ...retry import ExponentialBackoff
from ...source import Position, Source, Split, SplitReader
from .config import AwsConfig, error_code, is_retryable_aws_error

__all__ = ["ShardPollingOptions", "ShardReader", "ShardedSource", "shard_parents"]


@dataclass(frozen=True, kw_only=True)
class ShardPollingOptions:
    """The polling options of a shard source's configuration (inherit it; set
    ``MAX_RECORDS_PER_CALL`` and ``API``, the service's GetRecords limit and name)."""

    MAX_RECORDS_PER_CALL: ClassVar[int] = 10_000
    API: ClassVar[str] = "GetRecords"

    poll_interval: float = 0.5
    """Seconds between GetRecords calls of a shard that returned nothing (caught up)."""
    min_call_interval: float = 0.2
    """Seconds two calls of one shard are at least apart (the services allow 5 per second per shard)."""
    shard_discovery_interval: float | None = 10.0
    """Seconds between listings that find new shards after resharding (``None`` = never)."""
    max_records_per_call: int = 10_000
    """GetRecords ``Limit`` at most (and at most ``max_rows`` of the read)."""
    initial_backoff: float = 0.2
    """Throttling: the first wait, in seconds (full jitter, doubling)."""
    max_backoff: float = 5.0
    """Throttling: the longest wait, in seconds."""

    def __post_init__(self) -> None:
        post_init_bases(super())
        check_positive("poll_interval", self.poll_interval)
        check_positive("min_call_interval", self.min_call_interval)
        check_positive("shard_discovery_interval", self.shard_discovery_interval, allow_none=True)
        check_type("max_records_per_call", self.max_records_per_call, int)
        check_positive("max_records_per_call", self.max_records_per_call)
        check_at_most(
            "max_records_per_call", self.max_records_per_call, self.MAX_RECORDS_PER_CALL, f"{self.API} limit"
        )
        self.backoff()  # the backoff numbers, checked as every backoff is

    def backoff(self) -> ExponentialBackoff:
        """The throttling backoff."""
        return ExponentialBackoff(
            initial_delay=self.initial_backoff, max_delay=self.max_backoff, multiplier=2.0
        )


C = TypeVar("C", bound=ShardPollingOptions)


def shard_parents(shard: Mapping[str, Any]) -> list[str]:
    """The parent shard ids of a listed shard (none, one, or two after a merge)."""
    return [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]


class ShardedSource(ConfigAttributes, Source, Generic[C]):
    """An unbounded source with one split per shard; children wait for their parents.

    Subclasses implement :meth:`_list_shards` (every shard the service lists) and may add
    parameters to every split with :meth:`_split_params`. A shard is *known* once it was listed
    and *ended* once a reader read it to its end; :meth:`_parents_done` is true when every parent
    is ended or not known (no longer listed: expired or trimmed).
    """

    replayable = True
    #: The boto3 service the shards are read from.
    service: ClassVar[str]

    def __init__(self, config: C, *, aws: AwsConfig | Mapping[str, Any] | None, client: Any) -> None:
        self.config = config
        self.aws = AwsConfig.coerce(aws)
        self._client = client
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._ended: set[str] = set()
        self.discovery_interval = config.shard_discovery_interval

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config!r}, aws={self.aws!r})"

    #: A stream: no split ends (a class constant, not a property).
    bounded = False

    @property
    def client(self) -> Any:
        """The boto3 client of the source's service (created on first use)."""
        with self._lock:
            if self._client is None:
                self._client = self.aws.client(self.service, max_pool_connections=16)
            return self._client

    def _list_shards(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _split_params(self) -> dict[str, Any]:
        """Parameters every split carries besides ``shard_id`` and ``parents``."""
        return {}

    def _splits(self, shards: list[dict[str, Any]]) -> list[Split]:
        extra = self._split_params()
        splits = [
            Split(
                split_id=s["ShardId"],
                bounded=False,
                params={**extra, "shard_id": s["ShardId"], "parents": shard_parents(s)},
            )
            for s in shards
        ]
        with self._lock:
            self._known.update(s.split_id for s in splits)
        return splits

    def plan(self) -> list[Split]:
        return self._splits(self._list_shards())

    def discover(self, known: Sequence[Split]) -> list[Split]:
        ids = {s.split_id for s in known}
        return [s for s in self._splits(self._list_shards()) if s.split_id not in ids]

    def _mark_ended(self, shard_id: str) -> None:
        with self._lock:
            self._ended.add(shard_id)

    def _parents_done(self, parents: Sequence[str]) -> bool:
        with self._lock:
            return all(p in self._ended or p not in self._known for p in parents)


S = TypeVar("S", bound="ShardedSource[Any]")


class ShardReader(SplitReader, Generic[S]):
    """One shard of a :class:`ShardedSource`: position, parents gate, call pacing and throttling.

    Position: ``{"sequence_number": <last returned or null>, "closed": <shard read to its end>}``.
    :meth:`read_batch` returns nothing while the shard is ended or a parent is not done, sleeps at
    most ``timeout`` to keep calls ``min_call_interval`` apart, makes at most one GetRecords call,
    renews an expired iterator from the position and backs off from retryable errors with full
    jitter; other errors raise. Subclasses give ``sequence_parameter``, :meth:`_stream_params`,
    :meth:`_last_sequence`, :meth:`_to_batch`, and may change :meth:`_start_params` and
    :meth:`_idle_delay` (the wait after an empty answer).
    """

    log: ClassVar[logging.Logger]
    label: ClassVar[str]  # names the shard in log lines, e.g. "kinesis shard"
    #: Whether GetShardIterator answering no iterator means the shard is closed and read to its end
    #: (DynamoDB Streams); otherwise the missing iterator goes to GetRecords as it is.
    end_without_iterator: ClassVar[bool] = False
    #: GetShardIterator's name of the sequence number to start after (Kinesis:
    #: ``StartingSequenceNumber``, DynamoDB Streams: ``SequenceNumber``).
    sequence_parameter: ClassVar[str]

    def __init__(self, source: S, split: Split, position: Position) -> None:
        super().__init__(split, position)
        self._src = source
        self._shard = str(split.params["shard_id"])
        self._parents = list(split.params.get("parents") or [])
        pos = position or {}
        self._seq: str | None = pos.get("sequence_number")
        self._ended = bool(pos.get("closed", False))
        if self._ended:
            source._mark_ended(self._shard)
        self._iterator: str | None = None
        self._next_call = 0.0
        self._throttled = 0
        self._backoff = source.config.backoff()

    @property
    def finished(self) -> bool:
        return False

    def snapshot(self) -> Position:
        return {"sequence_number": self._seq, "closed": self._ended}

    def _stream_params(self) -> dict[str, Any]:
        """GetShardIterator's parameters that name the stream (``ShardId`` is added)."""
        raise NotImplementedError

    def _start_params(self) -> dict[str, Any]:
        """GetShardIterator's parameters for a shard read without a position: ``start_position``."""
        return {"ShardIteratorType": self._src.config.start_position}

    def _new_iterator(self) -> str | None:
        """A shard iterator just after the position, else at the start (GetShardIterator); ``None``
        when the service answers none."""
        params = {**self._stream_params(), "ShardId": self._shard}
        if self._seq is not None:
            params.update({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", self.sequence_parameter: self._seq})
        else:
            params.update(self._start_params())
        it = self._src.client.get_shard_iterator(**params).get("ShardIterator")
        return str(it) if it else None

    def _last_sequence(self, records: list[dict[str, Any]]) -> str:
        raise NotImplementedError

    def _to_batch(self, records: list[dict[str, Any]]) -> pa.RecordBatch:
        raise NotImplementedError

    def _idle_delay(self, response: Mapping[str, Any]) -> float:
        """Seconds to the next call after an answer without records."""
        return float(self._src.config.poll_interval)

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._ended or (self._parents and not self._src._parents_done(self._parents)):
            time.sleep(min(timeout, 0.05))
            return None
        wait = self._next_call - time.monotonic()
        if wait > 0:
            if wait > timeout:
                time.sleep(max(timeout, 0.0))
                return None
            time.sleep(wait)
        cfg = self._src.config
        from botocore.exceptions import ClientError

        try:
            if self._iterator is None:
                self._iterator = self._new_iterator()
                if self._iterator is None and self.end_without_iterator:
                    self._close_shard()  # a closed shard with nothing after the position
                    return None
            response = self._src.client.get_records(
                ShardIterator=self._iterator, Limit=min(max_rows, cfg.max_records_per_call)
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == "ExpiredIteratorException":
                self._iterator = None
                self._next_call = time.monotonic()
                return None
            if is_retryable_aws_error(exc):
                self._throttled += 1
                self._next_call = time.monotonic() + self._backoff.delay(self._throttled)
                self.log.debug("%s %s throttled (%s), backing off", self.label, self._shard, code)
                return None
            raise
        self._throttled = 0
        records = response.get("Records") or []
        self._iterator = response.get("NextShardIterator")
        now = time.monotonic()
        if self._iterator is None:
            self._close_shard()
        if not records:
            self._next_call = now + self._idle_delay(response)
            return None
        self._next_call = now + cfg.min_call_interval
        self._seq = self._last_sequence(records)
        return self._to_batch(records)

    def _close_shard(self) -> None:
        # A closed shard read to its end: its children may start.
        self._ended = True
        self._src._mark_ended(self._shard)
