"""Google Cloud Pub/Sub sink (``google-cloud-pubsub``): one message per row, at-least-once.

Contract (batching, retries, error policy: :class:`~arrowflow.writer.AsyncBatchWriter`; payloads:
:mod:`arrowflow.connectors._messaging`):

* One message per row to ``topic``: ``data`` from ``value_column`` as is, or the row (``value_columns``
  or every column but the ordering-key/attributes columns) encoded by ``format`` (default JSON,
  compiled kernel). ``ordering_key_column`` sets ordering keys (the publisher then has message
  ordering on; null/empty = no key), ``attributes_column`` (``map<string, string>``) the attributes.
* Without ``ordering_key_column``: a request is cut into ``Publish`` RPCs of at most
  ``batch_max_messages`` (<= 1000, the API's limit) messages and ``batch_max_bytes``, built as raw
  protobuf messages and sent on the publisher's gRPC channel all at once (gRPC futures), then every
  RPC is awaited. No per-message future or client-side batching timer is involved (the client's
  ``publish`` costs tens of microseconds per message in Python; this path ~5). A ``Publish`` is all
  or nothing: a failed RPC fails its rows, retried when the status is transient (unavailable,
  deadline exceeded, aborted, resource exhausted, internal, unknown, cancelled), else handed to the
  error policy.
* With ``ordering_key_column``: a request publishes its rows through the client library (message
  ordering on; it batches per key by ``batch_max_messages`` / ``batch_max_bytes`` /
  ``batch_max_latency``) and waits for every future. Transient failures are retried, the paused
  ordering key resumed first; other failures go to the error policy. With ``max_in_flight=1`` (the
  default) a key's messages are published in write order.
* Either way ``flush()`` (every checkpoint) returns once every row is acknowledged by the server:
  at-least-once (a retried RPC whose first attempt was stored after all publishes duplicates).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import REQUIRED, resolve_config
from ...error_policy import ErrorPolicyLike
from ...formats import Format
from ...writer import BatchingConfig, SubmitResult
from .._messaging import MessageSink, Outgoing, failures
from ._client import RETRYABLE_ERRORS, RETRYABLE_STATUS, direct_publish, publisher_client
from .config import PUBSUB_BATCHING, PubSubSinkConfig

__all__ = ["PubSubSink"]

log = logging.getLogger("arrowflow.pubsub")

#: Bytes a message adds to a Publish request beyond its data (a generous bound of the framing).
_MESSAGE_OVERHEAD = 64


class PubSubSink(MessageSink):
    """Publishes one Pub/Sub message per row. See the module docstring for the contract."""

    name = "pubsub"
    default_batching = PUBSUB_BATCHING

    def __init__(
        self,
        project: str = REQUIRED,
        topic: str = REQUIRED,
        *,
        emulator_host: str | None = None,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        ordering_key_column: str | None = None,
        attributes_column: str | None = None,
        batch_max_messages: int = 1000,
        batch_max_bytes: int = 9 * 1024 * 1024,
        batch_max_latency: float = 0.01,
        publish_timeout: float = 60.0,
        batching: BatchingConfig = PUBSUB_BATCHING,
        error_policy: ErrorPolicyLike = "fail",
        config: PubSubSinkConfig | None = None,
    ) -> None:
        from google.cloud.pubsub_v1 import types

        config = resolve_config(PubSubSinkConfig, config, locals())
        super().__init__(config, error_policy=error_policy, name="pubsub sink")
        #: The topic's full path (``projects/<project>/topics/<name>``).
        self.topic = config.topic_path
        self._publisher = publisher_client(
            config.emulator_host,
            batch_settings=types.BatchSettings(
                max_messages=config.batch_max_messages,
                max_bytes=config.batch_max_bytes,
                max_latency=config.batch_max_latency,
            ),
            publisher_options=types.PublisherOptions(
                enable_message_ordering=config.ordering_key_column is not None
            ),
        )
        self._direct = None if config.ordering_key_column is not None else direct_publish(self._publisher)

    def publish(self, entries: pa.StructArray) -> SubmitResult | None:
        out = self.outgoing(entries)
        if self._direct is not None:
            return self._publish_direct(out)
        return self._publish_futures(out)

    def _publish_futures(self, out: Outgoing) -> SubmitResult | None:
        """Through the client library (message ordering): one future per message."""
        keys, attrs = out.keys, out.headers
        publish, topic = self._publisher.publish, self.topic
        futures: list[Any] = []
        early: dict[int, BaseException] = {}
        for i in range(out.n):
            kwargs: dict[str, Any] = dict(attrs[i]) if attrs is not None and attrs[i] else {}
            key = keys[i] if keys is not None else None
            try:
                futures.append(publish(topic, out.payload(i), ordering_key=key or "", **kwargs))
            except Exception as refused:  # refused before sending (paused key, bad attribute)
                early[i] = refused
                futures.append(None)
        live = [f for f in futures if f is not None]
        _, pending = concurrent.futures.wait(live, timeout=self.config.publish_timeout)
        failed: list[int] = []
        errors: list[str] = []
        retryable: list[bool] = []
        paused: set[str] = set()
        for i, fut in enumerate(futures):
            if fut is None:
                exc: BaseException | None = early[i]
            elif fut in pending:
                exc = TimeoutError("no publish result within publish_timeout")
            else:
                exc = fut.exception()
            if exc is None:
                continue
            failed.append(i)
            errors.append(f"{type(exc).__name__}: {exc}")
            retryable.append(type(exc).__name__ in RETRYABLE_ERRORS)
            key = keys[i] if keys is not None else None
            if key:
                paused.add(key)
        for key in paused:  # a failed publish pauses its ordering key until resumed
            try:
                self._publisher.resume_publish(topic, key)
            except Exception as exc:
                log.debug("pubsub: resume_publish(%r): %s", key, exc)
        return failures(failed, errors, retryable)

    def _publish_direct(self, out: Outgoing) -> SubmitResult | None:
        """``Publish`` RPCs of raw protobuf messages, all in flight at once; see the module docstring."""
        assert self._direct is not None
        call, request_type = self._direct
        cfg = self.config
        sizes = out.sizes()
        chunks: list[tuple[int, int]] = []
        start, total = 0, 0
        for i in range(out.n):  # cut at batch_max_messages / batch_max_bytes (a too-big row goes alone)
            size = int(sizes[i]) + _MESSAGE_OVERHEAD
            if i > start and (i - start >= cfg.batch_max_messages or total + size > cfg.batch_max_bytes):
                chunks.append((start, i))
                start, total = i, 0
            total += size
        chunks.append((start, out.n))
        metadata = [("x-goog-request-params", f"topic={self.topic}")]
        attrs = out.headers
        calls: list[tuple[int, int, Any]] = []
        for lo, hi in chunks:
            request = request_type(topic=self.topic)
            add = request.messages.add
            if attrs is None:
                for i in range(lo, hi):
                    add(data=out.payload(i))
            else:
                for i in range(lo, hi):
                    a = attrs[i]
                    add(data=out.payload(i), attributes=dict(a) if a else None)
            calls.append((lo, hi, call.future(request, timeout=cfg.publish_timeout, metadata=metadata)))
        failed: list[np.ndarray] = []
        errors: list[str] = []
        retryable: list[bool] = []
        for lo, hi, fut in calls:
            try:
                got = len(fut.result().message_ids)
                if got != hi - lo:
                    raise RuntimeError(f"server returned {got} message ids for {hi - lo} messages")
                continue
            except Exception as exc:
                code = getattr(exc, "code", None)
                status = code() if callable(code) else None
                name = getattr(status, "name", type(exc).__name__)
                details = getattr(exc, "details", None)
                why = f"{name}: {details() if callable(details) else exc}"
                again = name in RETRYABLE_STATUS or type(exc).__name__ in RETRYABLE_ERRORS
            failed.append(np.arange(lo, hi, dtype=np.int64))
            errors.extend([why] * (hi - lo))
            retryable.extend([again] * (hi - lo))
        return failures(np.concatenate(failed) if failed else [], errors, retryable)

    def close_client(self) -> None:
        try:
            self._publisher.stop()
        except Exception as exc:
            log.debug("pubsub sink: stop: %s", exc)
