"""RabbitMQ sink (AMQP 0-9-1 via pika): one persistent message per row, publisher confirms.

Contract (batching, retries, error policy: :class:`~arrowflow.writer.AsyncBatchWriter`; payloads:
:mod:`arrowflow.connectors._messaging`):

* One message per row to ``exchange`` (``""`` = the default exchange, where the routing key is a
  queue name) with ``routing_key`` or the row's ``routing_key_column``; body = ``value_column`` as
  is, or the row encoded by ``format`` (default JSON of every column but the routing key column).
  ``delivery_mode=2`` (persistent) unless ``persistent=False``; ``message_id`` = the row's
  ``message_id_column`` or a generated ``"<run>-<row number>"`` (so a :class:`RabbitMQSource` with
  ``dedup="message_id"`` can read the output exactly once); ``header_columns`` become AMQP headers.
* Publisher confirms, pipelined: a ``SelectConnection`` in an I/O thread publishes a whole request
  and waits for the broker's (multiple) acks within ``confirm_timeout``. A nack, a timeout or a
  lost connection fails the entries retryably (the next request reconnects); with ``mandatory``
  (default) a message the broker returns as unroutable goes to the error policy (not retried), as
  does every entry of a request whose channel the broker closed (e.g. a missing exchange).
* A request without every confirm within ``confirm_timeout`` (a silent broker or network) also drops
  its connection, without waiting for the close handshake: the retry goes out on a new one, never
  again into a connection that stopped answering. ``metrics()`` adds ``reconnects`` (connections
  replaced after one was lost, reset or timed out) and ``timeouts`` (requests without their
  confirms in time) to the writer's ``retries``.
* Guarantee: **at-least-once** (a retry or a replay publishes again; the message id lets a
  deduplicating consumer drop the copies).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format, Json
from ...writer import BatchingConfig, SubmitResult
from .._messaging import MessageSink, failures
from ._client import Publisher, Request, amqp_errors, connection_params
from .config import DEFAULT_URL, RABBITMQ_BATCHING, RabbitMQSinkConfig

__all__ = ["RabbitMQSink"]


class RabbitMQSink(MessageSink):
    """Publishes one persistent message per row with publisher confirms. See the module docstring."""

    name = "rabbitmq"
    default_batching = RABBITMQ_BATCHING
    #: ``metrics()``: publisher connections replaced after one was lost, reset or dropped for a
    #: timeout, and requests without their confirms within ``confirm_timeout``.
    EVENTS = ("reconnects", "timeouts")

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        exchange: str = "",
        routing_key: str | None = None,
        routing_key_column: str | None = None,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        message_id_column: str | None = None,
        header_columns: Sequence[str] = (),
        persistent: bool = True,
        mandatory: bool = True,
        content_type: str | None = None,
        declare_queue: str | None = None,
        confirm_timeout: float = 30.0,
        connect_options: Mapping[str, Any] | None = None,
        batching: BatchingConfig = RABBITMQ_BATCHING,
        error_policy: ErrorPolicyLike = "fail",
        config: RabbitMQSinkConfig | None = None,
    ) -> None:
        config = resolve_config(RabbitMQSinkConfig, config, locals())
        super().__init__(config, error_policy=error_policy, name="rabbitmq sink")
        content_type = config.content_type
        if content_type is None and config.value_column is None and isinstance(self.payloads.encoder, Json):
            content_type = "application/json"
        self._props: dict[str, Any] = {"delivery_mode": 2 if config.persistent else 1}
        if content_type:
            self._props["content_type"] = content_type
        self._params = connection_params(config.url, config.connect_options or {})
        self._pub_lock = threading.Lock()
        self._pub: Publisher | None = None
        if config.declare_queue is not None:
            self._declare(config.declare_queue)
        self._publisher()  # fail fast on a wrong url or credentials

    def _declare(self, queue: str) -> None:
        import pika

        try:
            conn = pika.BlockingConnection(self._params)
            try:
                conn.channel().queue_declare(queue, durable=True)
            finally:
                conn.close()
        except amqp_errors() as exc:
            raise ConnectorError(
                f"rabbitmq: declaring queue {queue!r} failed: {exc!r}", retryable=True
            ) from exc

    def _publisher(self) -> Publisher:
        with self._pub_lock:
            if self._pub is None or self._pub.dead:
                if self._pub is not None:
                    self.count("reconnects")
                    self._pub.close()
                self._pub = None
                self._pub = Publisher(self._params, self.config.confirm_timeout)
            return self._pub

    def publish(self, entries: pa.StructArray) -> SubmitResult | None:
        cfg = self.config
        out = self.outgoing(entries)
        keys: list[str] | str = out.routing if out.routing is not None else cfg.routing_key or ""
        assert out.ids is not None  # every message has an id
        pub = self._publisher()
        req = Request(out.n)
        try:
            pub.conn.ioloop.add_callback_threadsafe(
                lambda: pub.publish(
                    req,
                    cfg.exchange,
                    keys,
                    out.data,
                    out.offsets,
                    out.ids,
                    out.headers,
                    self._props,
                    cfg.mandatory,
                )
            )
        except Exception as exc:  # the I/O loop stopped between the check and the call
            raise ConnectorError(f"rabbitmq: publisher gone: {exc!r}", retryable=True) from exc
        if not req.done.wait(cfg.confirm_timeout):
            with pub.lock:
                pub._fail_pending(req, f"no confirm within {cfg.confirm_timeout}s", True)
            self.count("timeouts")
            # A connection that let a request's confirms time out is not trusted again: a silent
            # broker (or a black-holed network) would swallow every retry sent on it.
            pub.abort(f"no confirm within {cfg.confirm_timeout}s")
        failed = np.flatnonzero(req.state != Request.OK)
        errs = [req.errors.get(i, ("nacked by the broker", True)) for i in failed.tolist()]
        return failures(failed, [e[0] for e in errs], [e[1] for e in errs])

    def close_client(self) -> None:
        with self._pub_lock:
            if self._pub is not None:
                self._pub.close()
                self._pub = None
