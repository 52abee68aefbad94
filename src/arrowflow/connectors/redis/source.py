"""Redis sources: streams through a consumer group, and pub/sub channels.

:class:`RedisStreamSource` (at-least-once; exactly-once with a transactional or idempotent sink):

* One split per stream (``split_id`` = the stream name), unbounded. The group is created on first
  open (``XGROUP CREATE ... MKSTREAM``, from ``start_id``: ``"0"`` = the whole stream, ``"$"`` = new
  entries only); an existing group is reused.
* Position: the id (``"<ms>-<seq>"``) of the last entry returned, or the position the reader was
  opened with. Entries are read with ``XREADGROUP GROUP <group> <consumer> COUNT <max_rows>``, so the
  server never delivers more than was returned.
* Recovery: a reader first reads its own consumer's pending entries list (PEL), from id ``0``:
  entries delivered to a previous run and never acknowledged. Those at or before the opened position
  are in a durable checkpoint already: they are acknowledged and skipped. The rest are returned
  again, then the reader switches to new entries (``>``). The consumer name must therefore be stable
  across restarts (default ``"arrowflow"``: one reader per group).
* ``commit(snapshot)`` sends ``XACK`` for every entry returned up to ``snapshot``; nothing is
  acknowledged earlier. A failed ``XACK`` is logged (the entries stay pending and are skipped on the
  next recovery, as above).
* ``read_batch`` blocks at most ``timeout`` (``XREADGROUP BLOCK``, capped at half of
  ``socket_timeout``). A lost connection, a reply missing after ``socket_timeout`` (a hung server,
  a black-holed network) or a server still loading after a restart makes it return ``None`` after
  a backoff and reconnect on the next call: the run rides out a server restart (entries the server
  lost are gone, of course; run Redis with ``appendonly yes``). :meth:`RedisStreamSource.metrics`
  counts the reconnects and timeouts. A read whose reply was lost may still have delivered entries
  to the consumer, even after the reconnect (a request the network delayed); for 20 reply timeouts
  after a failure the reader looks for such entries in its pending list (``XPENDING``) and claims
  them back (``XCLAIM``); later ones are returned by the next restart's PEL recovery.
* Payloads: the ``value_field`` field of each entry, decoded by ``format`` (default ``Raw`` binary
  column ``value``); entries without it, or that fail to decode, go to the error policy as rows
  ``payload, stream, id``. Metadata columns on request: ``_stream``, ``_id``, ``_timestamp`` (the
  id's milliseconds).

:class:`RedisPubSubSource` (**at-most-once**): one unbounded split subscribed to ``channels`` and
``patterns``. Redis pub/sub keeps nothing: messages published while no reader is subscribed (before
the first ``read_batch``, during a restart or a reconnect) are lost, and there is nothing to
acknowledge. The position is the count of messages returned (informational only).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import REQUIRED
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format, Raw
from ...retry import ExponentialBackoff
from ...source import Position, Split, SplitReader
from .._messaging import MessageSource, decode_messages
from ._client import DEFAULT_URL, RedisConnection, is_transient
from .config import PUBSUB_META, STREAM_META, RedisPubSubSourceConfig, RedisStreamSourceConfig, parse_id

__all__ = ["RedisPubSubSource", "RedisStreamSource", "RedisStreamSourceConfig", "parse_id"]

log = logging.getLogger("arrowflow.redis")

#: After a failed read, lost-reply deliveries are watched for this many reply timeouts (or, without
#: one, this many seconds): see ``_StreamReader._orphans``.
_ORPHAN_WATCH_FACTOR = 20
_ORPHAN_WATCH_DEFAULT = 10.0


class _Reconnecting:
    """Shared by the readers: a client that is rebuilt after a transient failure, with backoff."""

    def __init__(self, connection: RedisConnection, what: str) -> None:
        self._connection = connection
        self._what = what
        self._client: Any = None
        self._failures = 0
        self._backoff = ExponentialBackoff(initial_delay=0.05, max_delay=2.0, multiplier=2.0)
        self.counters = {"reconnects": 0, "timeouts": 0}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._connection.client()
        return self._client

    def ok(self) -> None:
        self._failures = 0

    def failed(self, exc: BaseException, budget: float) -> None:
        """Log, drop the client, and sleep a backoff (at most ``budget`` seconds); re-raise fatal errors."""
        if not is_transient(exc):
            raise ConnectorError(f"redis: {self._what} failed: {exc}", retryable=False) from exc
        import redis

        self._failures += 1
        self.counters["reconnects"] += 1
        if isinstance(exc, (redis.TimeoutError, TimeoutError)):
            self.counters["timeouts"] += 1
        log.warning("redis: %s failed (%s); reconnecting", self._what, exc)
        self.drop()
        time.sleep(min(max(budget, 0.0), self._backoff.delay(self._failures)))

    def drop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception as exc:  # already broken
                log.debug("redis: closing client: %s", exc)
            self._client = None


class RedisStreamSource(MessageSource[RedisStreamSourceConfig]):
    """Reads Redis streams through a consumer group. See the module docstring for the contract."""

    name = "redis-stream"
    replayable = True

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        streams: Sequence[str] | str = REQUIRED,
        group: str = REQUIRED,
        consumer: str = "arrowflow",
        start_id: str = "0",
        format: Format | None = None,
        value_field: str = "data",
        metadata_columns: Sequence[str] = (),
        sentinels: Sequence[tuple[str, int]] = (),
        service_name: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        error_policy: ErrorPolicyLike = "fail",
        socket_timeout: float | None = 10.0,
        connect_timeout: float | None = 5.0,
        config: RedisStreamSourceConfig | None = None,
    ) -> None:
        self._init_messages(locals(), Raw(column="value"))
        self._readers: list[_StreamReader] = []

    def metrics(self) -> dict[str, int]:
        """Summed over the readers opened: ``reconnects`` (clients dropped after a failed command:
        a lost, reset or silent connection) and ``timeouts`` (commands without a reply within
        ``socket_timeout``)."""
        out = {"reconnects": 0, "timeouts": 0}
        for reader in list(self._readers):
            for key, value in reader._conn.counters.items():
                out[key] += value
        return out

    def plan(self) -> list[Split]:
        c = self.config
        return [
            Split(split_id=s, bounded=False, params={"stream": s, "group": c.group, "consumer": c.consumer})
            for s in c.streams
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        if position is not None:
            try:
                parse_id(position)
            except (ValueError, AttributeError, TypeError):
                raise ConnectorError(
                    f"split {split.split_id!r}: a position is a stream id, got {position!r}"
                ) from None
        reader = _StreamReader(split, position, self)
        self._readers.append(reader)
        return reader


class _StreamReader(SplitReader):
    def __init__(self, split: Split, position: Position, source: RedisStreamSource) -> None:
        super().__init__(split, position)
        self._source = source
        self._stream: str = split.params["stream"]
        self._group: str = split.params["group"]
        self._consumer: str = split.params["consumer"]
        self._conn = _Reconnecting(source.config, f"reading stream {self._stream!r}")
        self._position: str | None = position
        self._floor = parse_id(position) if position is not None else None
        # Reading the PEL first; ``_pel_from`` is the id after which the next PEL read starts.
        self._pel_from: str | None = "0"
        # (last id of a batch, ids of the batch) not yet acknowledged, oldest first; the same ids as a set.
        self._unacked: deque[tuple[tuple[int, int], list[bytes]]] = deque()
        self._returned: set[bytes] = set()
        # After a failed command: look for entries its lost reply delivered (see _orphans).
        self._watch_after: str | None = None
        self._watch_until = 0.0
        self._group_ready = False
        self._closed = False

    def _ensure_group(self, client: Any) -> None:
        import redis

        if self._group_ready:
            return
        try:
            client.xgroup_create(self._stream, self._group, id=self._source.config.start_id, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed:
            return None
        started = time.monotonic()
        try:
            client = self._conn.client
            self._ensure_group(client)
            while self._pel_from is not None:
                entries = self._read(client, self._pel_from, max_rows, None)
                if not entries:
                    self._pel_from = None
                    break
                self._pel_from = entries[-1][0].decode()
                entries = self._skip_checkpointed(client, entries)
                if entries:
                    self._conn.ok()
                    return self._to_batch(entries)
                if time.monotonic() - started >= timeout:
                    return None
            if self._watch_after is not None:
                orphans = self._orphans(client)
                if orphans:
                    self._conn.ok()
                    return self._to_batch(orphans)
            block = int(max(0.0, timeout - (time.monotonic() - started)) * 1000)
            limit = self._source.config.read_timeout
            if limit is not None:
                # The server holds a blocking read for `block` ms: stay well within the reply
                # timeout, so that only a silent server times out.
                block = min(block, int(limit * 500))
            entries = self._read(client, ">", max_rows, block if block > 0 else None)
            self._conn.ok()
        except Exception as exc:
            self._conn.failed(exc, timeout - (time.monotonic() - started))
            # After a reconnect the PEL is read again: entries delivered by a read whose reply was lost
            # are pending on the server and must not be skipped. A read the network delayed may even
            # be executed later (after this reconnect): watch for those for a while (_orphans).
            self._pel_from = "0"
            if self._watch_after is None:
                self._watch_after = self._position or "0"
            self._watch_until = time.monotonic() + _ORPHAN_WATCH_FACTOR * (
                self._source.config.read_timeout or _ORPHAN_WATCH_DEFAULT
            )
            return None
        if not entries:
            return None
        return self._to_batch(entries)

    def _orphans(self, client: Any) -> list[Any]:
        """Entries pending for this consumer after the last id returned before a failure that this
        reader never returned: delivered by a read whose reply never arrived, possibly executed
        after the reconnect (a delayed request). They are claimed back (``XCLAIM``, which returns
        them) so the run does not wait for a restart's PEL recovery to see them. Checked on every
        read until the watch window after the last failure ends."""
        assert self._watch_after is not None
        if time.monotonic() > self._watch_until:
            self._watch_after = None
            return []
        pending = client.xpending_range(
            self._stream,
            self._group,
            "(" + self._watch_after if self._watch_after != "0" else "-",
            "+",
            len(self._returned) + 1000,
            consumername=self._consumer,
        )
        floor = self._floor
        lost = [
            p["message_id"]
            for p in pending
            if p["message_id"] not in self._returned and (floor is None or parse_id(p["message_id"]) > floor)
        ]
        if not lost:
            return []
        log.warning(
            "redis: %d entries of %r were delivered by a lost reply; claiming them", len(lost), self._stream
        )
        claimed = client.xclaim(self._stream, self._group, self._consumer, 0, lost)
        return [e for e in claimed if e[1] is not None]

    def _read(self, client: Any, from_id: str, count: int, block_ms: int | None) -> list[Any]:
        reply = client.xreadgroup(
            self._group, self._consumer, {self._stream: from_id}, count=count, block=block_ms
        )
        if not reply:
            return []
        # [[stream, [(id, {field: value}), ...]]]; a PEL entry deleted by XTRIM/XDEL comes back as (id, None).
        entries: list[Any] = reply[0][1]
        return entries

    def _skip_checkpointed(self, client: Any, entries: list[Any]) -> list[Any]:
        """Drop (and acknowledge) pending entries at or before the opened position."""
        if self._floor is None:
            return entries
        floor = self._floor
        done = [e[0] for e in entries if parse_id(e[0]) <= floor]
        if not done:
            return entries
        client.xack(self._stream, self._group, *done)
        return [e for e in entries if parse_id(e[0]) > floor]

    def _to_batch(self, entries: list[Any]) -> pa.RecordBatch:
        src = self._source
        field = src.config.value_field.encode()
        n = len(entries)
        ids = [e[0] for e in entries]
        values = pa.array([e[1].get(field) if e[1] else None for e in entries], pa.binary())
        id_col = pa.array(ids, pa.binary()).cast(pa.string())
        stream_col = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n, np.int32)), pa.array([self._stream])
        ).cast(pa.string())
        meta = pa.RecordBatch.from_arrays([stream_col, id_col], names=["stream", "id"])
        last = parse_id(ids[-1])
        self._unacked.append((last, ids))
        self._returned.update(ids)
        self._position = ids[-1].decode()
        return decode_messages(
            src.format,
            src.error_policy,
            values,
            meta,
            src.config.metadata_columns,
            STREAM_META,
            {
                "_stream": lambda: stream_col,
                "_id": lambda: id_col,
                "_timestamp": lambda: np.fromiter((parse_id(i)[0] for i in ids), np.int64, n),
            },
        )

    @property
    def finished(self) -> bool:
        return False

    def snapshot(self) -> Position:
        return self._position

    def commit(self, snapshot: Position) -> None:
        """``XACK`` every entry returned up to ``snapshot`` (older snapshots are fine)."""
        if snapshot is None or self._closed:
            return
        upto = parse_id(snapshot)
        ids: list[bytes] = []
        while self._unacked and self._unacked[0][0] <= upto:
            ids.extend(self._unacked.popleft()[1])
        self._returned.difference_update(ids)
        if not ids:
            return
        try:
            client = self._conn.client
            for start in range(0, len(ids), 10_000):
                client.xack(self._stream, self._group, *ids[start : start + 10_000])
        except Exception as exc:  # the entries stay pending; recovery skips them by position
            log.warning("redis: XACK on %r up to %s failed: %s", self._stream, snapshot, exc)
            self._conn.drop()

    def lag(self) -> int | None:
        """Entries not yet delivered to the group (``XINFO GROUPS`` lag, Redis >= 7)."""
        try:
            for g in self._conn.client.xinfo_groups(self._stream):
                if g.get("name") in (self._group, self._group.encode()):
                    lag = g.get("lag")
                    return int(lag) if lag is not None else None
        except Exception:
            return None
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._conn.drop()


class RedisPubSubSource(MessageSource[RedisPubSubSourceConfig]):
    """Reads Redis pub/sub channels (at-most-once). See the module docstring."""

    name = "redis-pubsub"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        channels: Sequence[str] = (),
        patterns: Sequence[str] = (),
        format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        sentinels: Sequence[tuple[str, int]] = (),
        service_name: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        error_policy: ErrorPolicyLike = "fail",
        socket_timeout: float | None = 10.0,
        connect_timeout: float | None = 5.0,
        config: RedisPubSubSourceConfig | None = None,
    ) -> None:
        self._init_messages(locals(), Raw(column="value"))

    @property
    def connection(self) -> RedisConnection:
        """The connection options (0.1.0's attribute; the configuration holds them)."""
        return self.config.connection  # type: ignore[no-any-return]

    def plan(self) -> list[Split]:
        return [
            Split(
                split_id="pubsub",
                bounded=False,
                params={"channels": list(self.channels), "patterns": list(self.patterns)},
            )
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        return _PubSubReader(split, position, self)


class _PubSubReader(SplitReader):
    """Subscribes when opened; messages are read in ``read_batch`` from redis-py's socket buffer."""

    def __init__(self, split: Split, position: Position, source: RedisPubSubSource) -> None:
        super().__init__(split, position)
        self._source = source
        self._count = int(position) if isinstance(position, int) else 0
        self._start = position
        self._conn = _Reconnecting(source.config, "pub/sub")
        self._pubsub: Any = None
        self._closed = False
        self._subscribe()

    def _subscribe(self) -> None:
        ps = self._conn.client.pubsub(ignore_subscribe_messages=True)
        if self._source.channels:
            ps.subscribe(*self._source.channels)
        if self._source.patterns:
            ps.psubscribe(*self._source.patterns)
        self._pubsub = ps

    @property
    def subscribed(self) -> bool:
        """True once the server confirmed the subscriptions (messages published after it arrive)."""
        return self._pubsub is not None and self._pubsub.subscribed

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed:
            return None
        started = time.monotonic()
        msgs: list[dict[str, Any]] = []
        try:
            if self._pubsub is None:
                self._subscribe()
            ps = self._pubsub
            while len(msgs) < max_rows:
                left = timeout - (time.monotonic() - started)
                m = ps.get_message(timeout=max(left, 0.0) if not msgs else 0.0)
                if m is None:
                    if msgs or left <= 0:
                        break
                    continue
                if m.get("type") in ("message", "pmessage"):
                    msgs.append(m)
            self._conn.ok()
        except Exception as exc:
            # Resubscribe on the next call; whatever was published meanwhile is lost (at-most-once).
            self._pubsub = None
            self._conn.failed(exc, timeout - (time.monotonic() - started))
        if not msgs:
            return None
        return self._to_batch(msgs)

    def _to_batch(self, msgs: list[dict[str, Any]]) -> pa.RecordBatch:
        src = self._source
        n = len(msgs)
        values = pa.array([m["data"] for m in msgs], pa.binary())
        channels = pa.array([m["channel"] for m in msgs], pa.binary()).cast(pa.string())
        patterns = pa.array([m.get("pattern") for m in msgs], pa.binary()).cast(pa.string())
        meta = pa.RecordBatch.from_arrays([channels], names=["channel"])
        self._count += n
        metadata = {"_channel": lambda: channels, "_pattern": lambda: patterns}
        return decode_messages(
            src.format, src.error_policy, values, meta, src.metadata_columns, PUBSUB_META, metadata
        )

    @property
    def finished(self) -> bool:
        return False

    def snapshot(self) -> Position:
        return self._count if self._count or self._start is not None else self._start

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception as exc:  # already disconnected
                log.debug("redis: closing pubsub: %s", exc)
        self._conn.drop()
