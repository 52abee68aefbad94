"""ActiveMQ sinks over STOMP 1.2: :class:`ActiveMQSink` (receipts, at-least-once) and
:class:`ActiveMQTransactionalSink` (a STOMP transaction per checkpoint).

:class:`ActiveMQSink` (batching, retries, error policy by :class:`~arrowflow.writer.AsyncBatchWriter`):

* One ``SEND`` per row to ``destination`` or the row's ``destination_column``, ``persistent:true``
  unless ``persistent=False``, ``header_columns`` as headers (a null value omits the header). The
  frames of a request are built vectorized (pyarrow compute: header escaping, content-length) and
  written with one socket write; the last frame asks for a ``RECEIPT``. The broker handles frames of
  a connection in order, so the receipt acknowledges the whole request. An ``ERROR`` frame (the broker
  then closes the connection) or a missing receipt within ``receipt_timeout`` fails the whole request
  retryably (a new connection is made): **at-least-once**, duplicates possible.

:class:`ActiveMQTransactionalSink` (STOMP transactions per checkpoint):

* The first ``write`` after a checkpoint sends ``BEGIN``; every ``SEND`` carries the transaction;
  ``prepare_commit()`` waits for the receipt of the last ``SEND`` (every frame so far was accepted)
  and returns ``{"transaction": id}``; ``commit`` sends ``COMMIT`` and waits for its receipt; ``abort``
  sends ``ABORT``. Consumers see a checkpoint's rows all at once, or not at all.
* **Guarantee, precisely**: a STOMP transaction lives in its connection; the broker rolls it back
  when the connection ends. A failure before the checkpoint is stored rolls back and the pipeline
  replays from the previous checkpoint (no loss, no duplicates). But if the process dies or the
  connection drops *after* the checkpoint is stored and *before* the ``COMMIT`` receipt, that
  checkpoint's rows are **lost** (the source will not replay them, and ``recover`` cannot commit a
  transaction of a dead connection; it logs them as lost). So: exactly-once except for that window
  (at-most-once for the rows of the checkpoint in flight during a crash).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from ...config import ConfigAttributes, Secret, resolve_config
from ...error_policy import ErrorPolicy, ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format, Json
from ...sink import Committable, TwoPhaseSink
from ...writer import BatchingConfig, Encoded, SubmitResult
from .._messaging import MessageSink, PayloadSpec
from ._client import Connection, blob, connect, frames_of
from .config import ACTIVEMQ_BATCHING, ActiveMQSinkConfig, ActiveMQTransactionalSinkConfig

__all__ = ["ActiveMQSink", "ActiveMQTransactionalSink"]

log = logging.getLogger("arrowflow.activemq")

#: Seconds a sink waits to connect.
_CONNECT_TIMEOUT = 10.0


class _Frames:
    """``SEND`` frames of a sink's entries: the static headers, and the frames of a request with the
    ``receipt`` (and ``transaction``) headers where they belong, as one buffer to write."""

    def __init__(self, config: ActiveMQTransactionalSinkConfig, payloads: PayloadSpec) -> None:
        static: dict[str, str] = {}
        if config.destination is not None:
            static["destination"] = config.destination
        if config.persistent:
            static["persistent"] = "true"
        content_type = config.content_type
        if content_type is None and config.value_column is None and isinstance(payloads.encoder, Json):
            content_type = "application/json"
        if content_type:
            static["content-type"] = content_type
        self.static = static
        self.header_columns = tuple(config.header_columns)

    def request(self, entries: pa.StructArray, receipt: str, extra: Mapping[str, str] | None = None) -> bytes:
        """Every entry's frame, the last one asking for ``receipt``."""
        n = len(entries)
        head = self._frames(entries.slice(0, n - 1), extra) if n > 1 else b""
        return head + self._frames(entries.slice(n - 1, 1), {**(extra or {}), "receipt": receipt})

    def _frames(self, entries: pa.StructArray, extra: Mapping[str, str] | None) -> bytes:
        headers = "".join(f"{k}:{v}\n" for k, v in {**self.static, **(extra or {})}.items())
        return blob(frames_of(entries, headers, self.header_columns))


class ActiveMQSink(MessageSink):
    """One persistent ``SEND`` per row, a receipt per request. See the module docstring."""

    name = "activemq"
    default_batching = ACTIVEMQ_BATCHING

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 61613,
        *,
        destination: str | None = None,
        destination_column: str | None = None,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        header_columns: Sequence[str] = (),
        persistent: bool = True,
        content_type: str | None = None,
        username: str | None = None,
        password: str | Secret | None = None,
        connect_headers: Mapping[str, str] | None = None,
        receipt_timeout: float = 30.0,
        batching: BatchingConfig = ACTIVEMQ_BATCHING,
        error_policy: ErrorPolicyLike = "fail",
        config: ActiveMQSinkConfig | None = None,
    ) -> None:
        config = resolve_config(ActiveMQSinkConfig, config, locals())
        super().__init__(config, error_policy=error_policy, name="activemq sink")
        self._frames = _Frames(config, self.payloads)
        self._conn_lock = threading.Lock()
        self._conn: Connection | None = connect(config, _CONNECT_TIMEOUT)

    def publish(self, entries: pa.StructArray) -> SubmitResult | None:
        receipt = uuid.uuid4().hex
        data = self._frames.request(entries, receipt)
        with self._conn_lock:
            if self._conn is None or not self._conn.alive:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                self._conn = connect(self.config, _CONNECT_TIMEOUT)
            conn = self._conn
            try:
                conn.send_raw(data)
            except Exception as exc:
                self._conn = None
                conn.close()
                raise ConnectorError(f"activemq: send failed: {exc!r}", retryable=True) from exc
            why = conn.listener.wait_receipt(receipt, self.config.receipt_timeout)
            if why is not None:
                self._conn = None
                conn.close()
                raise ConnectorError(
                    f"activemq: request of {len(entries)} messages not confirmed: {why}", retryable=True
                )
        return None

    def close_client(self) -> None:
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class ActiveMQTransactionalSink(ConfigAttributes, TwoPhaseSink):
    """``SEND`` s inside one STOMP transaction per checkpoint. See the module docstring for the guarantee."""

    name = "activemq-tx"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 61613,
        *,
        destination: str | None = None,
        destination_column: str | None = None,
        format: Format | None = None,
        value_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        header_columns: Sequence[str] = (),
        persistent: bool = True,
        content_type: str | None = None,
        username: str | None = None,
        password: str | Secret | None = None,
        connect_headers: Mapping[str, str] | None = None,
        receipt_timeout: float = 30.0,
        error_policy: ErrorPolicyLike = "fail",
        config: ActiveMQTransactionalSinkConfig | None = None,
    ) -> None:
        config = resolve_config(ActiveMQTransactionalSinkConfig, config, locals())
        self.config = config
        self.payloads = config.payloads()
        self._frames = _Frames(config, self.payloads)
        self.error_policy = ErrorPolicy.resolve(error_policy, name="activemq-tx sink")
        self._conn: Connection = connect(config, _CONNECT_TIMEOUT)
        self._tx: str | None = None
        self._last_receipt: str | None = None
        self._pending: str | None = None
        self._rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self._closed:
            raise ConnectorError("activemq-tx sink is closed")
        if batch.num_rows == 0:
            return
        entries = self.payloads.encode(batch)
        if isinstance(entries, Encoded):
            failed = np.asarray(entries.failed, np.int64)
            errors = entries.errors
            self.error_policy.handle(
                batch.take(pa.array(failed)), errors if isinstance(errors, str) else list(errors)
            )
            entries = entries.entries
        n = len(entries)
        if n == 0:
            return
        if not self._conn.alive:
            raise ConnectorError(
                f"activemq: connection lost inside transaction {self._tx}; it was rolled back", retryable=True
            )
        if self._tx is None:
            self._tx = f"arrowflow-{uuid.uuid4().hex}"
            self._conn.conn.begin(transaction=self._tx)
        receipt = uuid.uuid4().hex
        try:
            self._conn.send_raw(self._frames.request(entries, receipt, {"transaction": self._tx}))
        except Exception as exc:
            raise ConnectorError(
                f"activemq: send in transaction {self._tx} failed: {exc!r}", retryable=True
            ) from exc
        self._last_receipt = receipt
        self._rows += n

    def flush(self) -> None:
        """Without a pipeline (which calls ``prepare_commit`` instead): commit everything written so far."""
        if not self._closed:
            self.commit(self.prepare_commit())

    def _sync(self) -> None:
        """Wait until the broker accepted every ``SEND`` so far (they stay invisible until COMMIT)."""
        if self._last_receipt is None:
            return
        why = self._conn.listener.wait_receipt(self._last_receipt, self.config.receipt_timeout)
        if why is not None:
            raise ConnectorError(f"activemq: transaction {self._tx} failed: {why}", retryable=True)
        self._last_receipt = None
        self.error_policy.flush()

    def prepare_commit(self) -> list[Committable]:
        self._sync()
        if self._tx is None:
            return []
        tx, self._tx = self._tx, None
        self._pending = tx
        return [{"transaction": tx, "rows": self._rows}]

    def commit(self, committables: Sequence[Committable]) -> None:
        for c in committables:
            tx = c["transaction"]
            if self._pending != tx:
                # Not ours: a transaction of a connection that ended (crash); the broker rolled it back.
                log.error(
                    "activemq: transaction %s (%s rows) cannot be committed after a restart; the broker "
                    "rolled it back with its connection: those rows are lost",
                    tx,
                    c.get("rows"),
                )
                continue
            receipt = uuid.uuid4().hex
            self._conn.conn.commit(transaction=tx, headers={"receipt": receipt})
            why = self._conn.listener.wait_receipt(receipt, self.config.receipt_timeout)
            self._pending = None
            self._rows = 0
            if why is not None:
                raise ConnectorError(f"activemq: COMMIT of {tx} not confirmed: {why}")

    def abort(self) -> None:
        tx, self._tx = self._tx, None
        self._last_receipt = None
        self._rows = 0
        if tx is not None and self._conn.alive:
            try:
                self._conn.conn.abort(transaction=tx)
            except Exception as exc:  # the broker rolls back on disconnect anyway
                log.debug("activemq: abort: %r", exc)

    def _close(self) -> None:
        self._conn.close()
