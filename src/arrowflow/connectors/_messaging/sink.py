"""``MessageSink``: the base of every broker sink, on :class:`~arrowflow.writer.AsyncBatchWriter`.

A broker sink writes only what its client does: :meth:`MessageSink.publish` (send one request's
messages, report which failed) and, when it owns a client, :meth:`MessageSink.close_client`. The base
does the rest once: entries from the :class:`~.payloads.PayloadSpec` (``self.payloads``), generated
message ids, entry sizes (payload + key + routing bytes), and closing the client after the writer
drained.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import ConfigAttributes
from ...error_policy import ErrorPolicyLike
from ...writer import AsyncBatchWriter, BatchingConfig, Encoded, SubmitResult
from .payloads import Outgoing, PayloadSpec, RowIds

__all__ = ["PIPELINED_BATCHING", "ClientSink", "MessageSink", "failures"]

#: Batching of a sink whose client pipelines messages itself (Pub/Sub, Pulsar): large requests
#: (5000 rows, no byte limit: the client cuts its own), one in flight so that keys keep their order,
#: 0.5 s in the buffer, 50,000 rows buffered.
PIPELINED_BATCHING = BatchingConfig(
    max_request_rows=5000,
    max_request_bytes=None,
    max_in_flight=1,
    max_time_in_buffer=0.5,
    max_buffered_rows=50_000,
)


def failures(
    failed: Sequence[int] | np.ndarray,
    errors: Sequence[str] | str,
    retryable: Sequence[bool] | bool | np.ndarray,
) -> SubmitResult | None:
    """The :class:`~arrowflow.writer.SubmitResult` of a request whose entries ``failed`` (indices), or
    ``None`` when nothing failed."""
    if len(failed) == 0:
        return None
    flags = retryable if isinstance(retryable, bool) else np.asarray(retryable, dtype=bool)
    return SubmitResult(
        failed=np.asarray(failed, dtype=np.int64),
        errors=errors if isinstance(errors, str) else list(errors),
        retryable=flags,
    )


class ClientSink(AsyncBatchWriter):
    """An :class:`~arrowflow.writer.AsyncBatchWriter` that owns a client: it counts the client's
    ``EVENTS`` (reconnects, timeouts, ...) for :meth:`metrics` and releases the client
    (:meth:`close_client`) once the writer drained, even when draining failed."""

    #: The client events counted (each starts at 0 and is added to :meth:`metrics`).
    EVENTS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._events_lock = threading.Lock()
        #: Event counts; :meth:`count` updates them (a client's own loop thread may update the dict
        #: directly: single increments are atomic under the GIL).
        self._events: dict[str, int] = dict.fromkeys(self.EVENTS, 0)
        super().__init__(*args, **kwargs)

    def count(self, *events: str) -> None:
        """Count one occurrence of each of ``events`` (thread-safe)."""
        with self._events_lock:
            for event in events:
                self._events[event] += 1

    def metrics(self) -> dict[str, int]:
        """:meth:`AsyncBatchWriter.metrics` plus the ``EVENTS`` counts (see the sink's docstring)."""
        out = super().metrics()
        with self._events_lock:
            out.update(self._events)
        return out

    def close_client(self) -> None:
        """Release the client (after every request finished). Default: nothing to release."""

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self.close_client()


class MessageSink(ConfigAttributes, ClientSink):
    """One message per row, through a broker's client. A subclass's constructor resolves its
    configuration and hands it to ``super().__init__``; it implements :meth:`publish`."""

    #: The per-system batching defaults (each broker sets its own).
    default_batching: ClassVar[BatchingConfig] = BatchingConfig()

    def __init__(
        self, config: Any, *, error_policy: ErrorPolicyLike = "fail", name: str | None = None
    ) -> None:
        """``config``: the broker's validated configuration, with ``batching`` and ``payloads()``."""
        super().__init__(config.batching or self.default_batching, error_policy=error_policy, name=name)
        self.config = config
        self.payloads: PayloadSpec = config.payloads()
        self._ids = RowIds() if self.payloads.generate_ids else None

    # -- AsyncBatchWriter hooks ------------------------------------------------------------------

    def encode(self, batch: pa.RecordBatch) -> pa.StructArray | Encoded:
        return self.payloads.encode(batch, self._ids)

    def entry_sizes(self, entries: pa.StructArray) -> np.ndarray:
        """Payload bytes, plus the key and the per-row routing value where the entries have them."""
        sizes: np.ndarray = super().entry_sizes(entries.field("payload"))
        for name in ("key", "routing"):
            if entries.type.get_field_index(name) >= 0:
                lengths = pc.binary_length(entries.field(name)).fill_null(0)
                sizes = sizes + np.asarray(lengths.to_numpy(zero_copy_only=False), np.int64)
        return sizes

    def submit(self, entries: pa.StructArray) -> SubmitResult | None:
        if len(entries) == 0:
            return None
        return self.publish(entries)

    def publish(self, entries: pa.StructArray) -> SubmitResult | None:
        """Send the messages of one request (``len(entries) > 0``) and wait for the broker.

        Runs in a writer thread. Return which entries failed (:func:`failures`), or ``None``; raise
        when the whole request failed (``classify`` decides whether it is retried). Most brokers
        start with ``Outgoing.of(entries)``.
        """
        raise NotImplementedError

    def outgoing(self, entries: pa.StructArray) -> Outgoing:
        """``entries`` unpacked for the client (see :class:`~.payloads.Outgoing`)."""
        return Outgoing.of(entries)

    def __repr__(self) -> str:
        config: Any = self.__dict__.get("_connector_config")
        return f"{type(self).__name__}({config!r})" if config is not None else super().__repr__()
