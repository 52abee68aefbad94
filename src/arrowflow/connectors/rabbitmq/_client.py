"""pika plumbing of the RabbitMQ connector: connection parameters, the errors that mean "the
connection is gone", and the publisher-confirm I/O thread of the sink (:class:`Publisher`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...config import reveal_secrets
from ...errors import ConfigurationError, ConnectorError

__all__ = ["Publisher", "Request", "amqp_errors", "connection_params"]

log = logging.getLogger("arrowflow.rabbitmq")


def connection_params(url: str, options: Mapping[str, Any]) -> Any:
    """pika ``URLParameters`` of ``url`` with ``options`` set on top (an unknown name is an error)."""
    import pika

    params = pika.URLParameters(url)
    for key, value in reveal_secrets(options).items():
        if not hasattr(params, key):
            raise ConfigurationError(f"connect_options: pika has no connection parameter {key!r}", option=key)
        setattr(params, key, value)
    return params


def amqp_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean a connection or channel died."""
    import pika.exceptions

    return (pika.exceptions.AMQPError, OSError)


class Request:
    """One submitted request as the I/O thread tracks it: state per entry, by delivery tag."""

    PENDING, OK, NACKED, RETURNED, FAILED = 0, 1, 2, 3, 4

    def __init__(self, n: int) -> None:
        self.n = n
        self.first = 0
        self.low = 0  # every entry below this index is resolved
        self.state = np.zeros(n, np.int8)
        self.errors: dict[int, tuple[str, bool]] = {}
        self.remaining = n
        self.done = threading.Event()

    def resolve(self, lo: int, hi: int, value: int) -> None:
        sl = self.state[lo:hi]
        pending = sl == self.PENDING
        count = int(np.count_nonzero(pending))
        if count:
            sl[pending] = value
            self.remaining -= count
        if lo <= self.low < hi:
            self.low = hi
        if self.remaining <= 0:
            self.done.set()


class Publisher:
    """A ``SelectConnection`` with one confirm-mode channel, run by its own I/O thread."""

    def __init__(self, params: Any, timeout: float) -> None:
        import pika

        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.dead = False
        self.open_error: str | None = None
        self.ch: Any = None
        self.tag = 0
        self.inflight: list[Request] = []
        self.by_id: dict[str, list[tuple[Request, int]]] = {}
        self.conn = pika.SelectConnection(
            params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_close,
        )
        self.thread = threading.Thread(target=self._run, name="arrowflow-rabbitmq-io", daemon=True)
        self.thread.start()
        if not self.ready.wait(timeout) or self.ch is None:
            self.close()
            raise ConnectorError(
                f"rabbitmq: opening a confirm channel failed: {self.open_error or 'timeout'}", retryable=True
            )

    def _run(self) -> None:
        try:
            self.conn.ioloop.start()
        except Exception as exc:  # the loop must never take the process down
            log.warning("rabbitmq: I/O loop ended: %r", exc)
        finally:
            self._fail_all("connection lost", True)
            self.dead = True
            self.ready.set()

    def _on_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, conn: Any, err: Any) -> None:
        self.open_error = repr(err)
        self.dead = True
        self.ready.set()
        conn.ioloop.stop()

    def _on_channel(self, ch: Any) -> None:
        ch.add_on_close_callback(self._on_channel_close)
        ch.add_on_return_callback(self._on_return)

        def confirmed(_frame: Any) -> None:
            self.ch = ch
            self.ready.set()

        ch.confirm_delivery(ack_nack_callback=self._on_confirm, callback=confirmed)

    def _on_close(self, conn: Any, reason: Any) -> None:
        self.dead = True
        self._fail_all(f"connection closed: {reason!r}", True)
        conn.ioloop.stop()

    def _on_channel_close(self, ch: Any, reason: Any) -> None:
        import pika.exceptions

        # A channel the broker closed (404 no such exchange, 406 ...) fails its requests for good;
        # the connection is dropped so that the next request starts afresh.
        by_broker = isinstance(reason, pika.exceptions.ChannelClosedByBroker)
        self.dead = True
        self.open_error = repr(reason)
        self._fail_all(f"channel closed: {reason!r}", not by_broker)
        if not self.conn.is_closed and not self.conn.is_closing:
            self.conn.close()

    def _fail_all(self, error: str, retryable: bool) -> None:
        with self.lock:
            for req in self.inflight:
                self._fail_pending(req, error, retryable)
            self.inflight.clear()
            self.by_id.clear()

    @staticmethod
    def _fail_pending(req: Request, error: str, retryable: bool) -> None:
        for i in np.flatnonzero(req.state == Request.PENDING).tolist():
            req.errors[i] = (error, retryable)
        req.resolve(0, req.n, Request.FAILED)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        value = Request.OK if method.NAME == "Basic.Ack" else Request.NACKED
        tag, multiple = method.delivery_tag, method.multiple
        with self.lock:
            finished = False
            for req in self.inflight:
                if req.first > tag:
                    break
                if multiple:
                    hi = min(tag - req.first + 1, req.n)
                    if hi > req.low:
                        if value == Request.NACKED:
                            for i in np.flatnonzero(req.state[req.low : hi] == 0).tolist():
                                req.errors[req.low + i] = ("nacked by the broker", True)
                        req.resolve(req.low, hi, value)
                elif tag < req.first + req.n:
                    i = tag - req.first
                    if value == Request.NACKED and req.state[i] == 0:
                        req.errors[i] = ("nacked by the broker", True)
                    req.resolve(i, i + 1, value)
                finished = finished or req.done.is_set()
            if finished:
                self.inflight = [r for r in self.inflight if not r.done.is_set()]

    def _on_return(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        # With mandatory, an unroutable message comes back before its (positive) confirm.
        with self.lock:
            hits = self.by_id.get(props.message_id or "")
            if not hits:
                log.warning("rabbitmq: returned message %r not matched to a request", props.message_id)
                return
            req, i = hits.pop(0)
            if not hits:
                del self.by_id[props.message_id]
            if req.state[i] == Request.PENDING:
                req.errors[i] = (
                    f"unroutable: {method.reply_code} {method.reply_text} "
                    f"(exchange {method.exchange!r}, routing key {method.routing_key!r})",
                    False,
                )
                req.resolve(i, i + 1, Request.RETURNED)

    def publish(
        self,
        req: Request,
        exchange: str,
        keys: list[str] | str,
        data: bytes,
        offsets: list[int],
        ids: list[str],
        headers: list[dict[str, Any]] | None,
        props: dict[str, Any],
        mandatory: bool,
    ) -> None:
        """Runs in the I/O thread: publishes every entry of ``req`` back to back (confirms pipelined)."""
        import pika

        if self.dead or self.ch is None or not self.ch.is_open:
            self._fail_pending(req, "channel not open", True)
            return
        with self.lock:
            req.first = self.tag + 1
            self.inflight.append(req)
            if mandatory:
                for i, mid in enumerate(ids):
                    self.by_id.setdefault(mid, []).append((req, i))
        basic_publish, properties = self.ch.basic_publish, pika.BasicProperties
        const_key = keys if isinstance(keys, str) else None
        try:
            for i in range(req.n):
                basic_publish(
                    exchange,
                    const_key if const_key is not None else keys[i],  # type: ignore[index]
                    data[offsets[i] : offsets[i + 1]],
                    properties(message_id=ids[i], headers=headers[i] if headers else None, **props),
                    mandatory,
                )
                self.tag += 1
        except Exception as exc:  # the channel/connection died mid-request
            with self.lock:
                self._fail_pending(req, f"publish failed: {exc!r}", True)

    def abort(self, reason: str) -> None:
        """Drop the connection without the AMQP close handshake (a silent broker would never answer
        it): its pending requests fail retryably and the next request opens a new connection. What
        pika's own heartbeat check does to a connection that went idle."""
        import pika.exceptions

        self.dead = True

        def terminate() -> None:
            if not self.conn.is_closed:
                self.conn._terminate_stream(pika.exceptions.AMQPConnectionError(reason))

        try:
            self.conn.ioloop.add_callback_threadsafe(terminate)
        except Exception as exc:  # the loop already stopped: nothing left to drop
            log.debug("rabbitmq: abort: %r", exc)

    def close(self) -> None:
        def stop() -> None:
            if not self.conn.is_closed and not self.conn.is_closing:
                self.conn.close()
            else:
                self.conn.ioloop.stop()

        if self.thread.is_alive():
            try:
                self.conn.ioloop.add_callback_threadsafe(stop)
            except Exception as exc:  # the loop already stopped
                log.debug("rabbitmq: close: %r", exc)
            self.thread.join(10)
