"""NATS JetStream (nats-py): :class:`NatsJetStreamSource` (durable pull consumer, acks on checkpoint) and
:class:`NatsJetStreamSink` (``Nats-Msg-Id`` deduplication). Needs the ``nats`` extra; nats-py is
imported when a connector is built. nats-py is asyncio-only: every connector runs a private event
loop in a daemon thread and calls into it with ``run_coroutine_threadsafe`` (blocking calls have
timeouts). The module is called ``nats_jetstream`` so that it never shadows the ``nats`` package.

Source contract:

* One split per source: ``split_id`` = ``"<stream>/<durable>"``. A JetStream stream is a replayable
  log, so the position is the **stream sequence** of the last message returned (``int``).
* The durable pull consumer belongs to the source (``AckAll``, explicit ``ack_wait``). Opening a
  reader (re)creates it so that delivery starts right after the position: after ``position`` when
  one is given (the checkpoint is the truth), else after the consumer's ack floor when it exists
  (what the last committed checkpoint acknowledged), else at ``deliver_policy`` (``"all"``,
  ``"new"``, or ``start_sequence``). Recreating it means messages delivered to a crashed run are
  delivered again at once, not after ``ack_wait``. The reader is the only user of the durable.
* ``read_batch`` asks the consumer for up to ``max_rows`` messages and waits at most ``timeout``.
  By default (``raw_pull=True``) the reader pulls on its own plain NATS socket and a compiled kernel
  turns the received frames into Arrow columns (:mod:`arrowflow.connectors._nats_pull`: no Python
  object per message); with TLS, credentials, nkeys or a token in ``url``/``connect_options`` (which
  that socket does not implement) or ``raw_pull=False`` it uses nats-py's ``fetch`` (a ``Msg`` object
  and an awaited timer per message: several times slower). ``commit(snapshot)`` acknowledges the
  last message returned at or before ``snapshot``: with ``AckAll`` that acknowledges everything
  before it too. Nothing is acknowledged earlier, so a crash replays from the checkpoint:
  at-least-once, exactly-once with a transactional or idempotent sink. ``ack_wait`` must exceed the
  checkpoint interval, or the server redelivers messages still waiting for their checkpoint
  (duplicates).
* A lost connection loses the messages it was carrying to the reader, and a later ``AckAll`` would
  acknowledge them unseen. So when the pull socket fails (or nats-py reconnects, on its path), the
  next ``read_batch`` first recreates the consumer to deliver right after the last message returned:
  the lost messages come again, nothing is skipped.
* ``bounded=True`` stops at the stream's last sequence at planning time (or when no message
  matching the filter is pending).
* nats-py reconnects by itself (forever, by default); a read failing meanwhile returns ``None``.
* Payloads decoded by ``format`` (default ``Raw`` column ``value``); failures go to the error policy
  as rows ``payload, subject, sequence``. Metadata columns: ``_subject``, ``_sequence``,
  ``_timestamp``.

Sink contract (batching, retries, error policy: :class:`~arrowflow.writer.AsyncBatchWriter`):

* One message per row to ``subject`` or the row's ``subject_column``; payload ``value_column`` as
  is or ``value_columns`` (default: every column but ``subject_column``) encoded by ``format``
  (default JSON). A request publishes its messages
  asynchronously (``publish_async``) and waits for every ``PubAck`` (``publish_timeout``). Messages
  without an ack (timeout, no responders, a lost connection) are retried; an API error (no stream
  for the subject, message too large) sends the row to the error policy.
* A request whose messages all miss their ``PubAck`` within ``publish_timeout`` (a lost, reset
  or silent connection: nats-py alone notices a silent one only after ``ping_interval`` x
  ``max_outstanding_pings``, minutes by default) also makes the client reconnect at once, so the
  retry goes out on a fresh connection. ``metrics()`` adds ``timeouts`` (requests with a missing
  ``PubAck``), ``disconnects`` and ``reconnects`` (the client's) to the writer's ``retries``.
* Every message carries a ``Nats-Msg-Id`` header: the ``msg_id_column`` value, or
  ``"<run id>-<row number>"``. The server drops a message whose id it saw within the stream's
  ``duplicate_window``, so retries never duplicate. With ``msg_id_column`` the ids come from the
  data, so a replay after a crash is deduplicated too: the sink is ``idempotent`` (exactly-once
  within the duplicate window). Without it, a replay gets new ids (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._ext import load
from ..config import check_choice, check_positive, check_type, hide_secrets, reveal_secrets
from ..error_policy import ErrorPolicy, ErrorPolicyLike
from ..errors import ConfigurationError, ConnectorError
from ..formats import Format, Json, Raw, decode_with_policy
from ..formats.base import as_binary
from ..source import Position, Source, Split, SplitReader
from ..writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult
from ._nats_pull import Pulled, PullError, PullSocket, supported

__all__ = ["NatsJetStreamSink", "NatsJetStreamSource"]

log = logging.getLogger("arrowflow.nats")

T = TypeVar("T")

_META = {"_subject": pa.string(), "_sequence": pa.int64(), "_timestamp": pa.timestamp("us", tz="UTC")}


class _LoopThread:
    """A private asyncio loop in a daemon thread; :meth:`run` blocks the caller until a coroutine ends."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


async def _connect(
    url: str | Sequence[str],
    options: Mapping[str, Any],
    what: str,
    events: dict[str, int] | None = None,
    on_reconnected: Callable[[], None] | None = None,
) -> Any:
    """A connected nats-py client; ``events`` (when given) counts ``disconnects`` and ``reconnects``;
    ``on_reconnected`` runs after each reconnect (before a user's own ``reconnected_cb``)."""
    import nats

    async def on_error(exc: Exception) -> None:
        log.warning("nats %s: %s", what, exc)

    async def on_disconnect() -> None:
        log.info("nats %s: disconnected (closed, or reconnecting)", what)
        if events is not None:
            events["disconnects"] += 1

    async def on_reconnect() -> None:
        log.info("nats %s: reconnected", what)
        if events is not None:
            events["reconnects"] += 1

    opts: dict[str, Any] = {
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
    }
    opts.update(reveal_secrets(options))
    if on_reconnected is not None:
        user_cb = opts.get("reconnected_cb")

        async def reconnected() -> None:
            on_reconnected()
            if user_cb is not None:
                await user_cb()

        opts["reconnected_cb"] = reconnected
    servers = [url] if isinstance(url, str) else list(url)
    return await nats.connect(servers, **opts)


def _check_url(url: str | Sequence[str]) -> None:
    urls = [url] if isinstance(url, str) else list(url)
    if not urls or not all(isinstance(u, str) and "://" in u for u in urls):
        raise ConfigurationError(
            f"url must be nats://host:port (or a list of them), got {url!r}", option="url"
        )


# ----------------------------------------------------------------------------------------- source


class NatsJetStreamSource(Source):
    """Reads a JetStream stream through a durable pull consumer. See the module docstring.

    ``raw_pull``: pull on the reader's own socket, frames parsed by a compiled kernel (default; used
    when the connection needs no TLS or credentials), or ``False``: nats-py's ``fetch``.
    """

    name = "nats"
    replayable = True

    def __init__(
        self,
        url: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        stream: str,
        durable: str,
        subject: str | None = None,
        deliver_policy: str = "all",
        start_sequence: int | None = None,
        bounded: bool = False,
        ack_wait: float = 300.0,
        max_ack_pending: int = 100_000,
        format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        connect_options: Mapping[str, Any] | None = None,
        request_timeout: float = 10.0,
        raw_pull: bool = True,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        _check_url(url)
        check_type("raw_pull", raw_pull, bool)
        self.raw_pull = raw_pull
        self.url = url
        for opt, value in (("stream", stream), ("durable", durable)):
            check_type(opt, value, str)
            if not value or any(c in value for c in " .*>"):
                raise ConfigurationError(
                    f"{opt} {value!r} must be a non-empty name without . * > or spaces", option=opt
                )
        check_type("subject", subject, str, allow_none=True)
        check_choice("deliver_policy", deliver_policy, ("all", "new", "by_start_sequence"))
        if (deliver_policy == "by_start_sequence") != (start_sequence is not None):
            raise ConfigurationError(
                "start_sequence goes with deliver_policy='by_start_sequence'", option="start_sequence"
            )
        if start_sequence is not None:
            check_type("start_sequence", start_sequence, int)
            check_positive("start_sequence", start_sequence)
        check_type("bounded", bounded, bool)
        check_positive("ack_wait", ack_wait)
        check_type("max_ack_pending", max_ack_pending, int)
        check_positive("max_ack_pending", max_ack_pending)
        check_positive("request_timeout", request_timeout)
        self.stream = stream
        self.durable = durable
        self.subject = subject
        self.deliver_policy = deliver_policy
        self.start_sequence = start_sequence
        self._bounded = bounded
        self.ack_wait = float(ack_wait)
        self.max_ack_pending = max_ack_pending
        self.request_timeout = float(request_timeout)
        self.metadata_columns = tuple(metadata_columns)
        for m in self.metadata_columns:
            check_choice("metadata_columns", m, tuple(_META))
        check_type("format", format, Format, allow_none=True)
        self.format: Format = format if format is not None else Raw(column="value")
        self.connect_options = hide_secrets(dict(connect_options or {}))
        self.error_policy = ErrorPolicy.resolve(error_policy, name="nats source")

    @property
    def bounded(self) -> bool:
        return self._bounded

    @property
    def schema(self) -> pa.Schema | None:
        s = getattr(self.format, "schema", None)
        if s is None:
            return None
        return pa.schema([*s, *(pa.field(m, _META[m]) for m in self.metadata_columns)])

    def plan(self) -> list[Split]:
        """One split; a bounded read resolves the stream's last sequence here (one request)."""
        stop = None
        if self._bounded:
            loop = _LoopThread("arrowflow-nats-plan")
            try:

                async def last_seq() -> int:
                    nc = await _connect(self.url, self.connect_options, "plan")
                    try:
                        info = await nc.jetstream().stream_info(self.stream)
                        return int(info.state.last_seq)
                    finally:
                        await nc.close()

                stop = loop.run(last_seq(), self.request_timeout * 2)
            except Exception as exc:
                raise ConnectorError(
                    f"nats: stream info of {self.stream!r} failed: {exc}", retryable=True
                ) from exc
            finally:
                loop.stop()
        return [
            Split(
                split_id=f"{self.stream}/{self.durable}",
                bounded=self._bounded,
                params={
                    "stream": self.stream,
                    "durable": self.durable,
                    "subject": self.subject,
                    "stop": stop,
                },
            )
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        if position is not None and (
            isinstance(position, bool) or not isinstance(position, int) or position < 0
        ):
            raise ConnectorError(
                f"split {split.split_id!r}: a position is a stream sequence >= 0, got {position!r}"
            )
        return _NatsReader(split, position, self)


class _NatsReader(SplitReader):
    def __init__(self, split: Split, position: Position, source: NatsJetStreamSource) -> None:
        super().__init__(split, position)
        self._source = source
        self._stream: str = split.params["stream"]
        self._durable: str = split.params["durable"]
        stop = split.params.get("stop")
        self._stop: int | None = int(stop) if stop is not None else None
        self._position: int | None = position
        #: (stream sequence, reply subject) of the last message of each batch returned, not yet acked.
        self._unacked: deque[tuple[int, str]] = deque()
        self._finished = False
        self._closed = False
        self._loop = _LoopThread(f"arrowflow-nats-{split.split_id}")
        self._nc: Any = None
        self._sub: Any = None
        self._pull: PullSocket | None = None
        #: Whether this reader reads through its own pull socket (else nats-py's fetch).
        self._raw = False
        #: Set when a connection carrying messages to the reader was lost: the next read recreates
        #: the consumer right after the last message returned (see the module docstring).
        self._reset = False
        try:
            self._loop.run(self._setup(), source.request_timeout * 3)
            if source.raw_pull and supported(source.connect_options, self._server()):
                self._raw = True
                self._open_pull()
        except BaseException as exc:
            self.close()
            if isinstance(exc, ConnectorError):
                raise
            raise ConnectorError(f"nats: opening {split.split_id!r} failed: {exc}", retryable=True) from exc
        if self._stop is not None and (self._position or 0) >= self._stop:
            self._finished = True

    def _lost(self) -> None:
        """nats-py reconnected (on its loop thread): what it was delivering meanwhile is gone."""
        if not self._raw:
            self._reset = True

    async def _setup(self) -> None:
        src = self._source
        self._nc = await _connect(
            src.url, src.connect_options, self.split.split_id, on_reconnected=self._lost
        )
        self._js = self._nc.jetstream(timeout=src.request_timeout)
        await self._create_consumer()
        self._sub = await self._js.pull_subscribe_bind(durable=self._durable, stream=self._stream)

    async def _create_consumer(self) -> None:
        """(Re)create the durable so that it delivers right after the position (see the module docstring)."""
        import nats.js.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        src = self._source
        js = self._js
        start: int | None = None
        if self._position is not None:
            start = self._position + 1
        existing = None
        try:
            existing = await js.consumer_info(self._stream, self._durable)
        except nats.js.errors.NotFoundError:
            existing = None
        if existing is not None:
            if start is None:
                start = int(existing.ack_floor.stream_seq) + 1 if existing.ack_floor else 1
            await js.delete_consumer(self._stream, self._durable)
        cfg: dict[str, Any] = {
            "durable_name": self._durable,
            "ack_policy": AckPolicy.ALL,
            "ack_wait": src.ack_wait,
            "max_ack_pending": src.max_ack_pending,
        }
        if src.subject:
            cfg["filter_subject"] = src.subject
        if start is not None:
            cfg["deliver_policy"] = DeliverPolicy.BY_START_SEQUENCE
            cfg["opt_start_seq"] = max(1, start)
        elif src.deliver_policy == "new":
            cfg["deliver_policy"] = DeliverPolicy.NEW
        elif src.deliver_policy == "by_start_sequence":
            cfg["deliver_policy"] = DeliverPolicy.BY_START_SEQUENCE
            cfg["opt_start_seq"] = src.start_sequence
        else:
            cfg["deliver_policy"] = DeliverPolicy.ALL
        await js.add_consumer(self._stream, ConsumerConfig(**cfg))

    def _server(self) -> Any:
        """The URL (parsed) of the server nats-py is connected to."""
        return self._nc.connected_url

    def _open_pull(self) -> None:
        url = self._server()
        self._pull = PullSocket(
            url.hostname or "127.0.0.1",
            url.port or 4222,
            self._stream,
            self._durable,
            timeout=self._source.request_timeout,
            name=f"arrowflow {self.split.split_id}",
        )

    def _restart(self) -> None:
        """Recreate the consumer after the position (and the pull socket); raises on failure."""
        if self._pull is not None:
            self._pull.close()
            self._pull = None
        self._loop.run(self._create_consumer(), self._source.request_timeout * 3)
        self._reset = False
        if self._raw:
            self._open_pull()

    async def _fetch(self, n: int, timeout: float) -> list[Any]:
        import nats.errors

        try:
            msgs: list[Any] = await self._sub.fetch(n, timeout=timeout)
            return msgs
        except nats.errors.TimeoutError:
            return []

    def _read(self, want: int, timeout: float) -> Pulled | None:
        """Up to ``want`` messages as columns (see ``_ext.nats_frames``), ``None`` when none came."""
        if self._raw:
            assert self._pull is not None
            return self._pull.fetch(want, timeout)
        msgs = self._loop.run(self._fetch(want, timeout), timeout + self._source.request_timeout)
        if not msgs:
            return None
        # nats-py's path: its Msg objects exist already; one list per column.
        replies = pa.array([m.reply for m in msgs], pa.string())
        return Pulled(
            pa.array([m.data for m in msgs], pa.binary()),
            pa.array([m.subject for m in msgs], pa.string()),
            replies,
            load("nats_frames").ack_numbers(replies),
        )

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed or self._finished:
            return None
        want = max_rows
        if self._stop is not None:
            want = max(1, min(max_rows, self._stop - (self._position or 0)))
        try:
            if self._reset or (self._raw and self._pull is None):
                self._restart()
            got = self._read(want, max(timeout, 0.01))
        except Exception as exc:  # disconnected: nats-py reconnects by itself, the pull socket here
            log.warning("nats: read on %s failed: %s", self.split.split_id, exc)
            if isinstance(exc, PullError):
                self._reset = True
            time.sleep(min(max(timeout, 0.0), 0.5))
            return None
        if got is None:
            if self._stop is not None:
                self._check_bounded_end()
            return None
        seqs = np.ascontiguousarray(got.numbers[:, 1])
        if self._stop is not None and seqs[-1] >= self._stop:
            keep = int(np.searchsorted(seqs, self._stop, side="right"))
            got = Pulled(got.payloads[:keep], got.subjects[:keep], got.replies[:keep], got.numbers[:keep])
            seqs = seqs[:keep]
            self._finished = True
            if not keep:
                return None
        return self._to_batch(got, seqs)

    def _check_bounded_end(self) -> None:
        try:
            info = self._loop.run(
                self._js.consumer_info(self._stream, self._durable), self._source.request_timeout * 2
            )
        except Exception as exc:
            log.debug("nats: consumer info: %s", exc)
            return
        if int(info.num_pending) == 0:
            self._finished = True

    def _to_batch(self, got: Pulled, seqs: np.ndarray) -> pa.RecordBatch:
        src = self._source
        values, subjects = got.payloads, got.subjects
        n = len(values)
        seq_col = pa.array(seqs)
        self._position = int(seqs[-1])
        self._unacked.append((self._position, got.replies[n - 1].as_py()))
        meta = pa.RecordBatch.from_arrays([subjects, seq_col], names=["subject", "sequence"])
        batch, rows = decode_with_policy(src.format, values, src.error_policy, meta)
        take = None if len(rows) == n else pa.array(rows, pa.int64())
        for name in src.metadata_columns:
            if name == "_subject":
                col = subjects
            elif name == "_sequence":
                col = seq_col
            else:
                col = pa.array(got.numbers[:, 3] // 1000, pa.int64()).cast(_META["_timestamp"])
            batch = batch.append_column(pa.field(name, _META[name]), col if take is None else col.take(take))
        return batch

    @property
    def finished(self) -> bool:
        return self._finished

    def snapshot(self) -> Position:
        return self._position

    def commit(self, snapshot: Position) -> None:
        """Acknowledge (AckAll) the last message returned at or before ``snapshot``."""
        if snapshot is None or self._closed:
            return
        last = None
        while self._unacked and self._unacked[0][0] <= snapshot:
            last = self._unacked.popleft()[1]
        if last is None:
            return

        async def ack() -> None:
            await self._nc.publish(last, b"")  # an empty message on the reply subject is an ack
            await self._nc.flush(timeout=self._source.request_timeout)

        try:
            self._loop.run(ack(), self._source.request_timeout * 2)
        except Exception as exc:  # the next commit's ack covers these too (AckAll)
            log.warning("nats: ack up to %s on %s failed: %s", snapshot, self.split.split_id, exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pull is not None:
            self._pull.close()
        if self._nc is not None:
            try:
                self._loop.run(self._nc.close(), 10)
            except Exception as exc:  # already closed or unreachable
                log.debug("nats: close: %s", exc)
        self._loop.stop()


# ------------------------------------------------------------------------------------------- sink


class NatsJetStreamSink(AsyncBatchWriter):
    """Publishes one JetStream message per row with ``Nats-Msg-Id``. See the module docstring."""

    name = "nats"

    def __init__(
        self,
        url: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        subject: str | None = None,
        subject_column: str | None = None,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        msg_id_column: str | None = None,
        publish_timeout: float = 10.0,
        connect_options: Mapping[str, Any] | None = None,
        batching: BatchingConfig | None = None,
        error_policy: ErrorPolicyLike = "fail",
    ) -> None:
        _check_url(url)
        if (subject is None) == (subject_column is None):
            raise ConfigurationError("give exactly one of subject or subject_column", option="subject")
        if subject is not None and (not subject or any(c in subject for c in " *>")):
            raise ConfigurationError(
                f"subject {subject!r} must be non-empty, without wildcards", option="subject"
            )
        if value_column is not None and (value_columns is not None or format is not None):
            raise ConfigurationError(
                "value_column is sent as is; it excludes value_columns and format", option="value_column"
            )
        check_type("msg_id_column", msg_id_column, str, allow_none=True)
        check_positive("publish_timeout", publish_timeout)
        check_type("format", format, Format, allow_none=True)
        self.url = url
        self.subject = subject
        self.subject_column = subject_column
        self.value_column = value_column
        self.value_columns = tuple(value_columns) if value_columns is not None else None
        self.format: Format = format if format is not None else Json()
        self.msg_id_column = msg_id_column
        self.idempotent = msg_id_column is not None
        self.publish_timeout = float(publish_timeout)
        self.connect_options = hide_secrets(dict(connect_options or {}))
        config = batching or BatchingConfig(max_request_rows=4000, max_in_flight=2, max_time_in_buffer=1.0)
        super().__init__(config, error_policy=error_policy, name="nats sink")
        self._run_id = uuid.uuid4().hex[:16]
        self._next_row = 0
        # Updated on the event loop's thread only (callbacks and _publish); read by metrics().
        self._events = {"timeouts": 0, "disconnects": 0, "reconnects": 0}
        self._loop = _LoopThread("arrowflow-nats-sink")
        try:
            self._nc: Any = self._loop.run(_connect(url, self.connect_options, "sink", self._events), 30)
        except BaseException as exc:
            self._loop.stop()
            raise ConnectorError(f"nats: connecting to {url!r} failed: {exc}", retryable=True) from exc
        self._js = self._nc.jetstream(timeout=self.publish_timeout)

    def encode(self, batch: pa.RecordBatch) -> pa.Array | Encoded:
        n = batch.num_rows
        used = {self.subject_column}
        if self.value_column is not None:
            col = batch.column(self.value_column)
            if not (pa.types.is_binary(col.type) or pa.types.is_string(col.type)):
                col = col.cast(pa.string())
            payloads = as_binary(col)
            failed = np.flatnonzero(~np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool))
            errors = ["null value"] * len(failed)
        else:
            if self.value_columns is not None:
                cols = list(self.value_columns)
            elif getattr(self.format, "columns", None) is not None:
                cols = batch.schema.names
            else:
                cols = [c for c in batch.schema.names if c not in used]
            enc = self.format.encode(batch.select(cols))
            payloads, failed, errors = (
                as_binary(enc.payloads),
                np.asarray(enc.failed, np.int64),
                list(enc.errors),
            )
        if pa.types.is_large_binary(payloads.type):
            payloads = payloads.cast(pa.binary())
        if self.msg_id_column is not None:
            ids = batch.column(self.msg_id_column).cast(pa.string())
        else:
            # "<run>-<row number>": unique per row of this sink, the same on every retry of the row.
            numbers = pa.array(np.arange(self._next_row, self._next_row + n, dtype=np.int64)).cast(
                pa.string()
            )
            ids = pc.binary_join_element_wise(pa.scalar(self._run_id + "-"), numbers, pa.scalar(""))
        self._next_row += n
        subjects = (
            batch.column(self.subject_column).cast(pa.string())
            if self.subject_column is not None
            else pa.nulls(n, pa.string())
        )
        bad = ids.is_null()
        if self.subject_column is not None:
            bad = pc.or_(bad, pc.equal(pc.binary_length(subjects).fill_null(0), 0))
        bad_rows = np.flatnonzero(np.asarray(bad.to_numpy(zero_copy_only=False), bool))
        if len(bad_rows):
            extra = np.setdiff1d(bad_rows, failed)
            failed = np.concatenate([failed, extra]).astype(np.int64)
            errors = errors + ["null message id or subject"] * len(extra)
            order = np.argsort(failed, kind="stable")
            failed, errors = failed[order], [errors[i] for i in order]
        entries = pa.StructArray.from_arrays([subjects, payloads, ids], names=["subject", "payload", "id"])
        if len(failed) == 0:
            return entries
        good = np.setdiff1d(np.arange(n, dtype=np.int64), failed, assume_unique=True)
        return Encoded(entries=entries.take(pa.array(good)), failed=failed, errors=errors)

    def entry_sizes(self, entries: pa.Array) -> np.ndarray:
        sizes: np.ndarray = super().entry_sizes(entries.field("payload"))
        return sizes + super().entry_sizes(entries.field("id"))

    def submit(self, entries: pa.Array) -> SubmitResult | None:
        n = len(entries)
        if n == 0:
            return None
        payloads = entries.field("payload")
        bufs = payloads.buffers()
        offsets = np.frombuffer(bufs[1], np.int32)[payloads.offset : payloads.offset + n + 1].tolist()
        data = bufs[2].to_pybytes() if bufs[2] is not None else b""
        ids = entries.field("id").to_pylist()
        subjects = entries.field("subject").to_pylist() if self.subject_column is not None else None
        outcome = self._loop.run(self._publish(data, offsets, ids, subjects), self.publish_timeout * 2 + 5)
        failed = [i for i, r in enumerate(outcome) if r is not None]
        if not failed:
            return None
        return SubmitResult(
            failed=np.asarray(failed, np.int64),
            errors=[str(outcome[i][0]) for i in failed],  # type: ignore[index]
            retryable=np.asarray([outcome[i][1] for i in failed]),  # type: ignore[index]
        )

    async def _publish(
        self, data: bytes, offsets: list[int], ids: list[str], subjects: list[str] | None
    ) -> list[tuple[str, bool] | None]:
        import nats.js.errors

        js, const = self._js, self.subject
        futures: list[Any] = []
        outcome: list[tuple[str, bool] | None] = [None] * len(ids)
        for i, msg_id in enumerate(ids):
            subject = subjects[i] if subjects is not None else const
            try:
                fut = await js.publish_async(
                    subject, data[offsets[i] : offsets[i + 1]], headers={"Nats-Msg-Id": msg_id}
                )
            except Exception as exc:  # not connected, or the pending limit stalled
                outcome[i] = (f"{type(exc).__name__}: {exc}", True)
                fut = None
            futures.append(fut)
        live = [f for f in futures if f is not None]
        if live:
            _, pending = await asyncio.wait(live, timeout=self.publish_timeout)
            for f in pending:
                f.cancel()
            if pending:
                self._events["timeouts"] += 1
                if len(pending) == len(live):
                    # Not one PubAck: treat the connection as dead (it may be silent rather than
                    # closed) and reconnect now; the retry's ids deduplicate what did arrive.
                    log.warning("nats sink: no PubAck within %s s; reconnecting", self.publish_timeout)
                    try:
                        await self._nc.force_reconnect()
                    except Exception as exc:  # already closed or reconnecting
                        log.debug("nats sink: force_reconnect: %s", exc)
        for i, fut in enumerate(futures):
            if fut is None:
                continue
            if fut.cancelled():
                outcome[i] = ("no PubAck within publish_timeout", True)
                continue
            err = fut.exception()
            if err is None:
                continue
            # An API error (no stream, message too large) will fail again; the rest may not.
            fatal = isinstance(err, nats.js.errors.APIError) and not isinstance(
                err, nats.js.errors.ServiceUnavailableError
            )
            outcome[i] = (f"{type(err).__name__}: {err}", not fatal)
        return outcome

    def metrics(self) -> dict[str, int]:
        """:meth:`AsyncBatchWriter.metrics` plus ``timeouts``, ``disconnects`` and ``reconnects``
        (see the module docstring)."""
        out = super().metrics()
        out.update(self._events)
        return out

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            try:
                self._loop.run(self._nc.close(), 10)
            except Exception as exc:
                log.debug("nats sink: close: %s", exc)
            self._loop.stop()
