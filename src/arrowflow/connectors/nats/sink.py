"""NATS JetStream sink: :class:`NatsJetStreamSink`.

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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format
from ...writer import AsyncBatchWriter, BatchingConfig, SubmitResult
from .._messaging import MessageSink, failures
from ._client import LoopThread, connect
from .config import DEFAULT_URL, NATS_BATCHING, NatsJetStreamSinkConfig

__all__ = ["NatsJetStreamSink"]

log = logging.getLogger("arrowflow.nats")


class NatsJetStreamSink(MessageSink):
    """Publishes one JetStream message per row with ``Nats-Msg-Id``. See the module docstring."""

    name = "nats"
    default_batching = NATS_BATCHING
    #: ``metrics()`` (see the module docstring). Updated on the event loop's thread only (the
    #: client's callbacks and ``_publish``).
    EVENTS = ("timeouts", "disconnects", "reconnects")

    def __init__(
        self,
        url: str | Sequence[str] = DEFAULT_URL,
        *,
        subject: str | None = None,
        subject_column: str | None = None,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        msg_id_column: str | None = None,
        publish_timeout: float = 10.0,
        connect_options: Mapping[str, Any] | None = None,
        batching: BatchingConfig = NATS_BATCHING,
        error_policy: ErrorPolicyLike = "fail",
        config: NatsJetStreamSinkConfig | None = None,
    ) -> None:
        config = resolve_config(NatsJetStreamSinkConfig, config, locals())
        super().__init__(config, error_policy=error_policy, name="nats sink")
        self.idempotent = config.msg_id_column is not None
        self._loop = LoopThread("arrowflow-nats-sink")
        try:
            self._nc: Any = self._loop.run(
                connect(config.url, config.connect_options or {}, "sink", self._events), 30
            )
        except BaseException as exc:
            self._loop.stop()
            raise ConnectorError(f"nats: connecting to {config.url!r} failed: {exc}", retryable=True) from exc
        self._js = self._nc.jetstream(timeout=config.publish_timeout)

    def entry_sizes(self, entries: pa.StructArray) -> np.ndarray:
        """Payload plus message id bytes (the subject is not counted, as before)."""
        sizes: np.ndarray = AsyncBatchWriter.entry_sizes(self, entries.field("payload"))
        return sizes + AsyncBatchWriter.entry_sizes(self, entries.field("id"))

    def publish(self, entries: pa.StructArray) -> SubmitResult | None:
        out = self.outgoing(entries)
        assert out.ids is not None  # every message has an id
        timeout = self.config.publish_timeout * 2 + 5
        outcome = self._loop.run(self._publish(out.data, out.offsets, out.ids, out.routing), timeout)
        failed = [i for i, r in enumerate(outcome) if r is not None]
        return failures(
            failed,
            [outcome[i][0] for i in failed],  # type: ignore[index]
            [outcome[i][1] for i in failed],  # type: ignore[index]
        )

    async def _publish(
        self, data: bytes, offsets: list[int], ids: list[str], subjects: list[str] | None
    ) -> list[tuple[str, bool] | None]:
        import nats.js.errors

        js, const = self._js, self.config.subject
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
            _, pending = await asyncio.wait(live, timeout=self.config.publish_timeout)
            for f in pending:
                f.cancel()
            if pending:
                self.count("timeouts")
                if len(pending) == len(live):
                    # Not one PubAck: treat the connection as dead (it may be silent rather than
                    # closed) and reconnect now; the retry's ids deduplicate what did arrive.
                    log.warning("nats sink: no PubAck within %s s; reconnecting", self.config.publish_timeout)
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

    def close_client(self) -> None:
        try:
            self._loop.run(self._nc.close(), 10)
        except Exception as exc:
            log.debug("nats sink: close: %s", exc)
        self._loop.stop()
