"""NATS JetStream source: :class:`NatsJetStreamSource`.

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
  turns the received frames into Arrow columns (:mod:`arrowflow.connectors.nats._pull`: no Python
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
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..._ext import load
from ...config import REQUIRED
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format, Raw
from ...source import Position, Split, SplitReader, check_int_position, stop_position
from .._messaging import MessageSource, decode_messages
from ._client import LoopThread, connect
from ._pull import Pulled, PullError, PullSocket, supported
from .config import DEFAULT_URL, NatsJetStreamSourceConfig

log = logging.getLogger("arrowflow.nats")


class NatsJetStreamSource(MessageSource[NatsJetStreamSourceConfig]):
    """Reads a JetStream stream through a durable pull consumer. See the module docstring.

    ``raw_pull``: pull on the reader's own socket, frames parsed by a compiled kernel (default; used
    when the connection needs no TLS or credentials), or ``False``: nats-py's ``fetch``.
    """

    name = "nats"
    replayable = True

    def __init__(
        self,
        url: str | Sequence[str] = DEFAULT_URL,
        *,
        stream: str = REQUIRED,
        durable: str = REQUIRED,
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
        config: NatsJetStreamSourceConfig | None = None,
    ) -> None:
        self._init_messages(locals(), Raw(column="value"))

    @property
    def bounded(self) -> bool:
        return bool(self.config.bounded)

    def plan(self) -> list[Split]:
        """One split; a bounded read resolves the stream's last sequence here (one request)."""
        stop = None
        if self.bounded:
            loop = LoopThread("arrowflow-nats-plan")
            try:

                async def last_seq() -> int:
                    nc = await connect(self.url, self.connect_options, "plan")
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
                bounded=self.bounded,
                params={
                    "stream": self.stream,
                    "durable": self.durable,
                    "subject": self.subject,
                    "stop": stop,
                },
            )
        ]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        check_int_position(split, position, "a stream sequence >= 0")
        return _NatsReader(split, position, self)


class _NatsReader(SplitReader):
    def __init__(self, split: Split, position: Position, source: NatsJetStreamSource) -> None:
        super().__init__(split, position)
        self._source = source
        self._stream: str = split.params["stream"]
        self._durable: str = split.params["durable"]
        self._stop = stop_position(split)
        self._position: int | None = position
        #: (stream sequence, reply subject) of the last message of each batch returned, not yet acked.
        self._unacked: deque[tuple[int, str]] = deque()
        self._finished = False
        self._closed = False
        self._loop = LoopThread(f"arrowflow-nats-{split.split_id}")
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
        self._nc = await connect(src.url, src.connect_options, self.split.split_id, on_reconnected=self._lost)
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
        timestamps = got.numbers[:, 3]
        return decode_messages(
            src.format,
            src.error_policy,
            values,
            meta,
            src.metadata_columns,
            src.METADATA,
            {
                "_subject": lambda: subjects,
                "_sequence": lambda: seq_col,
                "_timestamp": lambda: pa.array(timestamps // 1000, pa.int64()),
            },
        )

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
