"""Apache Pulsar sink (``pulsar-client``): ``send_async`` with callbacks, at-least-once.

Contract (batching, retries, error policy: :class:`~arrowflow.writer.AsyncBatchWriter`; payloads:
:mod:`arrowflow.connectors._messaging`):

* One message per row to ``topic``; payload ``value_column`` as is, or the row (``value_columns`` or
  every column but the key/properties columns) encoded by ``format`` (default JSON, compiled kernel).
  ``key_column`` becomes the message key (Pulsar routes by it; null = no key), ``properties_column``
  (``map<string, string>``) the message properties.
* A request is ``send_async`` per message into the client's batching producer, then ``flush()`` and a
  wait for every send callback. Failed sends are retried when the client calls them transient
  (timeouts, lost connections, a full queue), otherwise the rows go to the error policy. ``flush()``
  (every checkpoint) returns once every row is acknowledged by the broker: at-least-once.
* Fast path: messages are built with the client's native ``MessageBuilder`` and handed to the native
  producer with one shared C-level callback that only records which results occurred (a Python
  callback per message costs a GIL hand-off each and capped the sink near the per-row baseline). The
  native ``flush()`` completes after every earlier message's callback ran. When every result is
  ``Ok`` the request is done; otherwise the whole request is sent again through the per-message
  callback path, which reports each row (so rows that had succeeded are duplicated: at-least-once).
  Rows over 1 MiB always take the per-message path (the client may refuse one alone, e.g. over the
  broker's maximum message size, and that row alone goes to the error policy). Without those native
  objects (another client version) only the per-message path is used.
* With ``max_in_flight=1`` (the default) messages reach the topic in write order (per key order too),
  except that rows over 1 MiB follow the other rows of their request, and a request sent again after
  a failure repeats rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ...config import REQUIRED, resolve_config
from ...error_policy import ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format
from ...writer import BatchingConfig, SubmitResult
from .._messaging import MessageSink, Outgoing, failures
from ._client import NATIVE_MAX_BYTES, RETRYABLE, make_client, native_sender
from .config import COMPRESSIONS, DEFAULT_SERVICE_URL, PULSAR_BATCHING, PulsarSinkConfig

__all__ = ["PulsarSink"]

log = logging.getLogger("arrowflow.pulsar")


class PulsarSink(MessageSink):
    """Publishes one Pulsar message per row with ``send_async``. See the module docstring."""

    name = "pulsar"
    default_batching = PULSAR_BATCHING

    def __init__(
        self,
        service_url: str = DEFAULT_SERVICE_URL,
        *,
        topic: str = REQUIRED,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        key_column: str | None = None,
        properties_column: str | None = None,
        producer_batching: bool = True,
        batching_max_messages: int = 1000,
        batching_max_bytes: int = 128 * 1024,
        batching_max_publish_delay_ms: int = 10,
        key_based_batching: bool | None = None,
        compression: str | None = None,
        send_timeout: float = 30.0,
        operation_timeout: float = 30.0,
        client_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
        batching: BatchingConfig = PULSAR_BATCHING,
        error_policy: ErrorPolicyLike = "fail",
        config: PulsarSinkConfig | None = None,
    ) -> None:
        import pulsar

        config = resolve_config(PulsarSinkConfig, config, locals())
        super().__init__(config, error_policy=error_policy, name="pulsar sink")
        key_based = config.key_based_batching
        if key_based is None:
            key_based = config.key_column is not None
        popts: dict[str, Any] = {
            "batching_enabled": config.producer_batching,
            "batching_max_messages": config.batching_max_messages,
            "batching_max_allowed_size_in_bytes": config.batching_max_bytes,
            "batching_max_publish_delay_ms": config.batching_max_publish_delay_ms,
            "batching_type": pulsar.BatchingType.KeyBased if key_based else pulsar.BatchingType.Default,
            "compression_type": getattr(pulsar.CompressionType, COMPRESSIONS[config.compression]),
            "send_timeout_millis": int(config.send_timeout * 1000),
            "block_if_queue_full": True,
            "max_pending_messages": max(1000, config.batching.max_request_rows),
            **dict(config.producer_options or {}),
        }
        self._client = make_client(config.service_url, config.client_options or {}, config.operation_timeout)
        try:
            self._producer = self._client.create_producer(config.topic, **popts)
        except Exception as exc:
            self._client.close()
            raise ConnectorError(
                f"pulsar: producer for {config.topic!r} failed: {exc}", retryable=True
            ) from exc
        self._native = native_sender(self._producer)

    def publish(self, entries: pa.StructArray) -> SubmitResult | None:
        out = self.outgoing(entries)
        rows = list(range(out.n))
        if self._native is not None:
            # Rows the client may refuse on their own (over NATIVE_MAX_BYTES) take the per-message path,
            # so that one refused row does not make the whole request go again.
            sizes = out.sizes()
            small = np.flatnonzero(sizes <= NATIVE_MAX_BYTES).tolist()
            if small and self._send_native(small, out):
                rows = np.flatnonzero(sizes > NATIVE_MAX_BYTES).tolist()
                if not rows:
                    return None
        return self._send_per_message(rows, out)

    def _send_native(self, rows: list[int], out: Outgoing) -> bool:
        """Send ``rows`` through the native producer with one shared C-level callback; True if all
        were Ok (else the caller sends them again, per message)."""
        assert self._native is not None
        builder, send, ok = self._native
        keys, props = out.keys, out.headers
        seen: dict[Any, Any] = {}
        record = seen.__setitem__  # (result, message id): a builtin, so no Python frame per callback
        n = len(rows)
        try:
            if keys is None and props is None:
                for i in rows:
                    send(builder().content(out.payload(i)).build(), record)
            else:
                for i in rows:
                    mb = builder().content(out.payload(i))
                    if keys is not None and keys[i] is not None:
                        mb.partition_key(keys[i])
                    if props is not None and props[i]:
                        for k, v in props[i]:
                            mb.property(k, v)
                    send(mb.build(), record)
            self._producer.flush()
        except Exception as exc:  # a refused send or a failed flush: redo with per-row results
            log.info("pulsar sink: %d-message request failed on the fast path (%s); resending", n, exc)
            return False
        if len(seen) == 1 and ok in seen:
            return True
        log.info("pulsar sink: %d-message request had results %s; resending per message", n, list(seen))
        return False

    def _send_per_message(self, rows: list[int], out: Outgoing) -> SubmitResult | None:
        """Send ``rows`` with one Python callback each: every row's own result."""
        keys, props = out.keys, out.headers
        n = len(rows)
        results: list[Any] = [None] * n
        remaining = [n]
        done = threading.Event()
        lock = threading.Lock()

        def arrived(j: int, result: Any) -> None:
            results[j] = result
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

        def callback_for(j: int) -> Any:
            return lambda res, _msg_id: arrived(j, res)

        send = self._producer.send_async
        for j, i in enumerate(rows):
            kwargs: dict[str, Any] = {}
            if keys is not None and keys[i] is not None:
                kwargs["partition_key"] = keys[i]
            if props is not None and props[i]:
                kwargs["properties"] = dict(props[i])
            try:
                send(out.payload(i), callback_for(j), **kwargs)
            except Exception as exc:  # the producer refused it outright (closed, too big)
                arrived(j, exc)
        try:
            self._producer.flush()
        except Exception as exc:  # the callbacks still report each message
            log.debug("pulsar: flush: %s", exc)
        if not done.wait(self.config.send_timeout * 2 + 5):
            raise ConnectorError("pulsar: send callbacks did not arrive in time", retryable=True)
        failed, errors, retryable = [], [], []
        for j, res in enumerate(results):
            name = getattr(res, "name", None)
            if name == "Ok":
                continue
            failed.append(rows[j])
            if isinstance(res, Exception):
                errors.append(f"{type(res).__name__}: {res}")
                retryable.append(type(res).__name__ in RETRYABLE)
            else:
                errors.append(f"send failed: {name}")
                retryable.append(name in RETRYABLE)
        return failures(failed, errors, retryable)

    def close_client(self) -> None:
        try:
            self._producer.close()
        except Exception as exc:
            log.debug("pulsar sink: producer close: %s", exc)
        try:
            self._client.close()
        except Exception as exc:
            log.debug("pulsar sink: client close: %s", exc)
