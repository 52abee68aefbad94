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
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import check_positive, check_type, hide_secrets
from ...error_policy import ErrorPolicyLike
from ...errors import ConfigurationError, ConnectorError
from ...formats import Format, Json
from ...formats.base import as_binary
from ...writer import BatchingConfig, Encoded, SubmitResult
from .._messaging import ClientSink
from ._client import LoopThread, check_url, connect

log = logging.getLogger("arrowflow.nats")


class NatsJetStreamSink(ClientSink):
    """Publishes one JetStream message per row with ``Nats-Msg-Id``. See the module docstring."""

    name = "nats"
    #: ``metrics()`` (see the module docstring). Updated on the event loop's thread only (the
    #: client's callbacks and ``_publish``).
    EVENTS = ("timeouts", "disconnects", "reconnects")

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
        check_url(url)
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
        self._loop = LoopThread("arrowflow-nats-sink")
        try:
            self._nc: Any = self._loop.run(connect(url, self.connect_options, "sink", self._events), 30)
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
                self.count("timeouts")
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

    def close_client(self) -> None:
        try:
            self._loop.run(self._nc.close(), 10)
        except Exception as exc:
            log.debug("nats sink: close: %s", exc)
        self._loop.stop()
