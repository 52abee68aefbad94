"""ActiveMQ source over STOMP 1.2 (stomp.py): a queue or topic, acknowledged on checkpoint commit.

Contract:

* One split per source, ``split_id`` = the destination. A queue is not replayable: a message leaves
  it when acknowledged; unacknowledged messages are redelivered when the connection ends.
* ``SUBSCRIBE`` with ``ack=client-individual`` (or ``client``, cumulative) and
  ``activemq.prefetchSize=prefetch`` (the broker stops delivering once that many messages are
  unacknowledged, so size it to a checkpoint interval). stomp.py's receiver thread buffers frames;
  ``read_batch`` waits at most ``timeout`` for them.
* The position is ``{"session": <token>, "seq": <messages returned on it>}``. ``commit(snapshot)``
  acknowledges every message returned up to ``seq`` on the same session: one ``ACK`` frame per
  message (``client-individual``; the frames go out in one socket write) or one cumulative ``ACK``
  (``client``). A snapshot of an older session acknowledges nothing: the broker redelivers those.
* Guarantee: **at-least-once** (a crash or reconnect redelivers what the last committed checkpoint
  did not acknowledge). Topics deliver only to live subscriptions unless ``subscription_name`` (with
  ``client_id``) makes the subscription durable.
* Connection loss: ``read_batch`` returns ``None`` and reconnects (``reconnect_backoff``) on later
  calls.
* Payloads are decoded by ``format`` (default ``Raw`` column ``value``); failures go to the error
  policy as rows ``payload, message_id``. Metadata columns: ``_destination``, ``_message_id``,
  ``_timestamp`` (ms), ``_redelivered``, ``_headers`` (map of every frame header).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ...config import REQUIRED, Secret
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format
from ...retry import ExponentialBackoff
from ...source import Position, Split, SplitReader
from .._messaging import RECONNECT_BACKOFF, MessageReader, MessageSource
from ._client import Connection, connect
from .config import ActiveMQSourceConfig

__all__ = ["ActiveMQSource"]

log = logging.getLogger("arrowflow.activemq")


class ActiveMQSource(MessageSource[ActiveMQSourceConfig]):
    """Subscribes to a queue or topic; acknowledges on checkpoint commit. See the module docstring."""

    name = "activemq"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 61613,
        *,
        destination: str = REQUIRED,
        ack: str = "client-individual",
        prefetch: int = 10_000,
        client_id: str | None = None,
        subscription_name: str | None = None,
        selector: str | None = None,
        username: str | None = None,
        password: str | Secret | None = None,
        connect_headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        reconnect_backoff: ExponentialBackoff = RECONNECT_BACKOFF,
        error_policy: ErrorPolicyLike = "fail",
        config: ActiveMQSourceConfig | None = None,
    ) -> None:
        self._init_messages(locals())

    def plan(self) -> list[Split]:
        dest = self.config.destination
        return [Split(split_id=dest, bounded=False, params={"destination": dest})]

    def open(self, split: Split, position: Position = None) -> SplitReader:
        if position is not None and not (isinstance(position, dict) and isinstance(position.get("seq"), int)):
            raise ConnectorError(f"split {split.split_id!r}: not an activemq position: {position!r}")
        return _StompReader(split, position, self)


class _StompReader(MessageReader):
    def __init__(self, split: Split, position: Position, source: ActiveMQSource) -> None:
        super().__init__(source, split, position)
        self._cfg: ActiveMQSourceConfig = source.config
        self._dest: str = split.params["destination"]
        self._conn: Connection | None = None
        self._session: str | None = None
        self._seq = 0
        self.connect()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def connect(self) -> None:
        cfg = self._cfg
        conn = connect(cfg, cfg.timeout, {"client-id": cfg.client_id} if cfg.client_id else None)
        headers = {"activemq.prefetchSize": str(cfg.prefetch)}
        if cfg.subscription_name:
            headers["activemq.subscriptionName"] = cfg.subscription_name
        if cfg.selector:
            headers["selector"] = cfg.selector
        try:
            conn.conn.subscribe(self._dest, id="arrowflow", ack=cfg.ack, headers=headers)
        except Exception as exc:
            conn.close()
            raise ConnectorError(
                f"activemq: subscribing to {self._dest} failed: {exc!r}", retryable=True
            ) from exc
        self._conn = conn
        self._session = uuid.uuid4().hex
        self._seq = 0
        self._pending.clear()

    def _lost(self, why: str) -> None:
        log.warning("activemq: connection for %s lost: %s", self._dest, why)
        conn, self._conn, self._session = self._conn, None, None
        self._pending.clear()
        if conn is not None:
            conn.close()

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._closed:
            return None
        if not self.ensure_connected():
            self._reconnect.wait(timeout)
            return None
        assert self._conn is not None
        lst = self._conn.listener
        frames = lst.messages.take(max_rows, timeout, stop=lambda: lst.broken)
        if lst.broken and not frames:
            self._lost(lst.errors[0] if lst.errors else "disconnected")
            return None
        if not frames:
            return None
        return self._to_batch(frames)

    def _to_batch(self, frames: list[Any]) -> pa.RecordBatch:
        self._seq += len(frames)
        acks = [f.headers.get("ack") or f.headers.get("message-id", "") for f in frames]
        self._pending.add(self._seq, acks, self._session)
        self._position = {"session": self._session, "seq": self._seq}
        heads = [f.headers for f in frames]
        message_ids = pa.array([h.get("message-id") for h in heads], pa.string())
        return self.decode(
            pa.array(
                [f.body if isinstance(f.body, bytes) else str(f.body).encode() for f in frames], pa.binary()
            ),
            pa.RecordBatch.from_arrays([message_ids], names=["message_id"]),
            {
                "_destination": lambda: [h.get("destination") for h in heads],
                "_message_id": lambda: message_ids,
                "_timestamp": lambda: [int(h["timestamp"]) if h.get("timestamp") else None for h in heads],
                "_redelivered": lambda: [h.get("redelivered") == "true" for h in heads],
                "_headers": lambda: [list(h.items()) for h in heads],
            },
        )

    def commit(self, snapshot: Position) -> None:
        """ACK every message returned up to ``snapshot["seq"]`` (same session only)."""
        if self._closed or self._conn is None or not isinstance(snapshot, dict):
            return
        if snapshot.get("session") != self._session:
            return
        ids = self._pending.take(snapshot.get("seq", 0), self._session)
        if not ids:
            return
        if self._cfg.ack == "client":
            ids = ids[-1:]  # cumulative
        data = "".join(f"ACK\nid:{i}\n\n\x00" for i in ids).encode()
        try:
            self._conn.send_raw(data)
        except Exception as exc:  # the broker redelivers them on the next connection
            self._lost(repr(exc))

    def disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
