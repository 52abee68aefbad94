"""Google Cloud Pub/Sub source (``google-cloud-pubsub``): streaming pull, acks on checkpoint.

Where to connect: ``emulator_host="127.0.0.1:8085"`` talks to the emulator over an insecure channel
with no credentials; without it the client library decides (``PUBSUB_EMULATOR_HOST`` when set, else
Application Default Credentials against Google Cloud).

Contract:

* Splits: ``streams`` splits (default 1), ``split_id`` = ``"<subscription>/<i>"``; each is one
  ``StreamingPull`` stream of the subscription (the server balances messages, and keeps each ordering
  key on one stream).
* The stream runs in a daemon thread that feeds a local buffer; it is reopened (``reconnect_backoff``)
  when the server or the network closes it. Flow control is the server's: ``max_messages`` and
  ``max_bytes`` bound the messages delivered and not yet acknowledged on a stream. Messages held for
  a pending checkpoint count, so a checkpoint interval must hold fewer than ``max_messages`` or the
  stream pauses until the next commit (backpressure, not loss).
* Ack-deadline extension: a lease thread calls ``modify_ack_deadline(ack_deadline)`` every
  ``ack_deadline / 3`` seconds for every message received and not yet acknowledged (buffered, returned,
  or waiting for its checkpoint), for at most ``max_hold`` seconds per message; after that the
  message is no longer extended and the server redelivers it (a duplicate, never a loss).
* Position: the number of batches returned (``int``). Pub/Sub is not replayable: after a restart the
  server redelivers every message not acknowledged (``close()`` hands buffered and held messages back
  at once with a zero deadline; after a crash they come back when their deadline expires).
* ``read_batch(max_rows, timeout)`` waits at most ``timeout`` for the buffer. Payloads (``data``) are
  decoded by ``format`` (default ``Raw`` column ``value``) as one array; failures go to the error
  policy as rows ``payload, message_id, ordering_key`` (and are acknowledged with the batch's
  checkpoint). Metadata columns on request: ``_message_id``, ``_publish_time``, ``_attributes``
  (``map<string, string>``), ``_ordering_key``, ``_delivery_attempt``. Messages of one ordering key
  are returned in publish order (when the subscription has message ordering enabled).
* ``commit(snapshot)`` acknowledges (``acknowledge``, up to 2500 ids per call) every message of the
  batches returned up to ``snapshot``. Nothing is acknowledged earlier: at-least-once. A failed ack is
  logged; the message is redelivered (a duplicate).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import REQUIRED
from ...error_policy import ErrorPolicyLike
from ...formats import Format
from ...retry import ExponentialBackoff
from ...source import Position, Split
from .._messaging import MessageReader, MessageSource
from ._client import ACK_CHUNK, subscriber_client
from .config import PUBSUB_RECONNECT, PubSubSourceConfig

__all__ = ["PubSubSource", "PubSubSplitReader"]

log = logging.getLogger("arrowflow.pubsub")


class PubSubSource(MessageSource[PubSubSourceConfig]):
    """Reads a Pub/Sub subscription by streaming pull. See the module docstring for the contract."""

    name = "pubsub"

    def __init__(
        self,
        project: str = REQUIRED,
        subscription: str = REQUIRED,
        *,
        emulator_host: str | None = None,
        streams: int = 1,
        format: Format | None = None,
        metadata_columns: Sequence[str] = (),
        error_policy: ErrorPolicyLike = "fail",
        max_messages: int = 10_000,
        max_bytes: int = 100 * 1024 * 1024,
        ack_deadline: int = 60,
        max_hold: float = 3600.0,
        request_timeout: float = 30.0,
        reconnect_backoff: ExponentialBackoff = PUBSUB_RECONNECT,
        config: PubSubSourceConfig | None = None,
    ) -> None:
        config = self._init_messages(locals())
        #: The subscription's full path (``projects/<project>/subscriptions/<name>``).
        self.subscription = config.subscription_path

    def plan(self) -> list[Split]:
        return self._consumer_splits(self.subscription, self.config.streams)

    def open(self, split: Split, position: Position = None) -> PubSubSplitReader:
        return PubSubSplitReader(self, split, position)


class PubSubSplitReader(MessageReader):
    """One streaming pull of the subscription. See the module docstring."""

    def __init__(self, source: PubSubSource, split: Split, position: Position = None) -> None:
        super().__init__(source, split, position)
        self._cfg: PubSubSourceConfig = source.config
        self._subscription = source.subscription
        self._seq = int(position) if position is not None else 0
        self._stop = threading.Event()
        self._leases: dict[str, float] = {}  # ack id -> when it arrived (monotonic); guarded by the inbox
        self._requests: queue.Queue[Any] = queue.Queue()
        self._call: Any = None
        self._client = subscriber_client(self._cfg.emulator_host)
        self._client_id = uuid.uuid4().hex
        self._reader = threading.Thread(
            target=self._pull_loop, name=f"arrowflow-pubsub-{split.split_id}", daemon=True
        )
        self._leaser = threading.Thread(target=self._lease_loop, name="arrowflow-pubsub-lease", daemon=True)
        self._reader.start()
        self._leaser.start()

    # -- background threads -----------------------------------------------------------------

    def _request_iter(self, requests: queue.Queue[Any]) -> Iterator[Any]:
        from google.pubsub_v1 import types

        cfg = self._cfg
        yield types.StreamingPullRequest(
            subscription=self._subscription,
            stream_ack_deadline_seconds=cfg.ack_deadline,
            max_outstanding_messages=cfg.max_messages,
            max_outstanding_bytes=cfg.max_bytes,
            client_id=self._client_id,
        )
        while True:
            item = requests.get()
            if item is None:
                return
            yield item

    def _pull_loop(self) -> None:
        from google.pubsub_v1 import types

        reconnect = self._reconnect
        pb_of = types.StreamingPullResponse.pb
        while not self._stop.is_set():
            try:
                # The raw gRPC stub, not the wrapped method: the wrapper blocks until the first
                # response arrives, and until then close() would have no call to cancel.
                stub = self._client.transport.streaming_pull
                self._call = stub(
                    self._request_iter(self._requests),
                    metadata=[("x-goog-request-params", f"subscription={self._subscription}")],
                )
                if self._stop.is_set():
                    self._call.cancel()
                for resp in self._call:
                    received = pb_of(resp).received_messages
                    if not received:
                        continue
                    reconnect.succeeded()
                    now = time.monotonic()
                    with self._inbox.cond:
                        for rm in received:
                            self._leases[rm.ack_id] = now
                        self._inbox.extend(received)
                ended: BaseException = EOFError("the server ended the stream")
            except Exception as exc:
                if self._stop.is_set():
                    return
                ended = exc
            # Reopen: a new request iterator (the old one ends on its sentinel).
            self._requests.put(None)
            self._requests = queue.Queue()
            reconnect.failed(ended, "stream ended, reopening")
            self._stop.wait(max(0.0, reconnect.next_try - time.monotonic()))

    def _lease_loop(self) -> None:
        cfg = self._cfg
        interval = max(1.0, cfg.ack_deadline / 3)
        while not self._stop.wait(interval):
            now = time.monotonic()
            with self._inbox.cond:
                ids = [a for a, t in self._leases.items() if now - t < cfg.max_hold]
                expired = [a for a, t in self._leases.items() if now - t >= cfg.max_hold]
                for a in expired:  # no longer extended: the server redelivers them
                    del self._leases[a]
            self._modify(ids, cfg.ack_deadline)

    def _modify(self, ack_ids: list[str], seconds: int) -> None:
        for i in range(0, len(ack_ids), ACK_CHUNK):
            try:
                self._client.modify_ack_deadline(
                    subscription=self._subscription,
                    ack_ids=ack_ids[i : i + ACK_CHUNK],
                    ack_deadline_seconds=seconds,
                    timeout=self._cfg.request_timeout,
                )
            except Exception as exc:  # an expired id makes the server redeliver: a duplicate, not a loss
                log.warning(
                    "pubsub: modify_ack_deadline(%d ids) failed: %s", len(ack_ids[i : i + ACK_CHUNK]), exc
                )

    # -- the reader contract -------------------------------------------------------------------

    def _to_batch(self, received: list[Any]) -> pa.RecordBatch:
        msgs = [rm.message for rm in received]
        self._seq += 1
        self._pending.add(self._seq, [rm.ack_id for rm in received])
        self._position = self._seq
        ids = pa.array([m.message_id for m in msgs], pa.string())
        keys = pa.array([m.ordering_key or None for m in msgs], pa.string())

        def publish_time() -> pa.Array:
            us = np.fromiter(
                (m.publish_time.seconds * 1_000_000 + m.publish_time.nanos // 1000 for m in msgs),
                np.int64,
                len(msgs),
            )
            return pa.array(us)

        return self.decode(
            pa.array([m.data for m in msgs], pa.binary()),
            pa.RecordBatch.from_arrays([ids, keys], names=["message_id", "ordering_key"]),
            {
                "_message_id": lambda: ids,
                "_ordering_key": lambda: keys,
                "_publish_time": publish_time,
                "_attributes": lambda: [list(m.attributes.items()) for m in msgs],
                "_delivery_attempt": lambda: [rm.delivery_attempt for rm in received],
            },
        )

    def commit(self, snapshot: Position) -> None:
        """Acknowledge every message of the batches returned up to ``snapshot``."""
        if snapshot is None or self._closed:
            return
        ids = self._pending.take(int(snapshot))
        if not ids:
            return
        with self._inbox.cond:
            for a in ids:
                self._leases.pop(a, None)
        for i in range(0, len(ids), ACK_CHUNK):
            try:
                self._client.acknowledge(
                    subscription=self._subscription,
                    ack_ids=ids[i : i + ACK_CHUNK],
                    timeout=self._cfg.request_timeout,
                )
            except Exception as exc:
                log.warning("pubsub: acknowledge up to %s failed: %s", snapshot, exc)

    def lag(self) -> int | None:
        return len(self._inbox)

    def disconnect(self) -> None:
        self._stop.set()
        self._requests.put(None)
        call = self._call
        if call is not None:
            try:
                call.cancel()
            except Exception as exc:
                log.debug("pubsub: cancel stream: %s", exc)
        # The lease thread first: an extension it had in flight would land after the hand-back
        # below and hold the messages for another ack deadline.
        self._leaser.join(timeout=self._cfg.request_timeout)
        with self._inbox.cond:
            unacked = list(self._leases)
            self._leases.clear()
            self._inbox.items.clear()
        # Hand everything not acknowledged back now, so a restart need not wait for the deadline.
        self._modify(unacked, 0)
        self._reader.join(timeout=5)
        try:
            self._client.close()
        except Exception as exc:
            log.debug("pubsub: close: %s", exc)
