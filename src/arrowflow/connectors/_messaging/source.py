"""The shared half of every broker source: acknowledge on checkpoint commit.

* :class:`MessageSource` (a :class:`~arrowflow.source.Source`): the configuration (its class is the
  type argument, ``MessageSource[PubSubSourceConfig]``, resolved from the constructor's keywords),
  the payload ``format`` (default ``Raw`` column ``value``), the metadata columns a broker offers
  (``METADATA``, taken from the configuration class, requested by ``metadata_columns``), the error
  policy for payloads that do not decode, the schema, and numbered consumer splits.
* :class:`MessageReader` (a :class:`~arrowflow.source.SplitReader`): decoding a list of received
  messages into a batch (:meth:`MessageReader.decode`), the acknowledgements waiting for their
  checkpoint (:class:`PendingAcks`: nothing is acknowledged before ``commit(snapshot)``, and nothing
  received on an older connection is acknowledged at all: the broker redelivers it), reconnecting
  with :class:`~arrowflow.retry.ExponentialBackoff` (``reconnect_backoff``), and an idempotent
  ``close()``.
* :class:`Inbox`: messages a client's callback thread hands to ``read_batch``.

A broker's reader keeps its client calls: connect, receive, acknowledge, disconnect, and the
position it stores in checkpoints (positions differ per broker and must stay readable across
versions).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

import pyarrow as pa

from ...config import ConfigAttributes, check_choice, check_type, post_init_bases, resolve_config
from ...error_policy import ErrorPolicy, ErrorPolicyLike
from ...errors import ConnectorError
from ...formats import Format, Raw, decode_with_policy
from ...retry import ExponentialBackoff, as_backoff
from ...source import Position, Source, Split, SplitReader

__all__ = [
    "RECONNECT_BACKOFF",
    "Inbox",
    "MessageReader",
    "MessageSource",
    "MetadataOptions",
    "PendingAcks",
    "Reconnect",
    "ReconnectingSourceOptions",
    "SourceOptions",
    "check_metadata_columns",
    "decode_messages",
]

T = TypeVar("T")

#: The reconnect backoff of every broker source unless configured: 0.2 s growing to 5 s, jittered.
RECONNECT_BACKOFF = ExponentialBackoff(initial_delay=0.2, max_delay=5.0, multiplier=2.0)


def check_metadata_columns(names: Sequence[str], allowed: Mapping[str, pa.DataType]) -> tuple[str, ...]:
    """``names`` as a tuple, each one of ``allowed`` (an error names ``metadata_columns``)."""
    if isinstance(names, str):
        names = (names,)
    out = tuple(names)
    for name in out:
        check_choice("metadata_columns", name, tuple(allowed))
    return out


def decode_messages(
    fmt: Format,
    error_policy: ErrorPolicyLike,
    payloads: pa.Array,
    context: pa.RecordBatch | Callable[[], pa.RecordBatch] | None,
    wanted: Sequence[str],
    types: Mapping[str, pa.DataType],
    metadata: Mapping[str, Callable[[], Any]],
) -> pa.RecordBatch:
    """The batch of received messages: ``payloads`` decoded by ``fmt``, then the ``wanted``
    metadata columns.

    Payloads that fail go to ``error_policy`` as rows ``payload`` + ``context``'s columns (the
    message's identity: topic, id, ...; a function returning them is called only when a payload
    failed). ``metadata[name]()`` returns a column's values for every
    payload (an Arrow array or a list, cast to ``types[name]``), of which the decoded rows are kept;
    only ``wanted`` columns are built. No row loop here beyond what the client handed over.
    """
    batch, rows = decode_with_policy(fmt, payloads, error_policy, context)
    take = None if len(rows) == len(payloads) else pa.array(rows, pa.int64())
    for name in wanted:
        typ = types[name]
        values = metadata[name]()
        column = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, typ)
        if column.type != typ:
            column = column.cast(typ)
        batch = batch.append_column(pa.field(name, typ), column if take is None else column.take(take))
    return batch


#: A broker source's configuration class (a :class:`SourceOptions` dataclass).
C = TypeVar("C", bound="SourceOptions")


class MessageSource(ConfigAttributes, Source, Generic[C]):
    """A broker source: configuration, format, metadata columns, error policy and schema (see the
    module docstring).

    A subclass names its configuration class once, as the type argument
    (``class PubSubSource(MessageSource[PubSubSourceConfig])``): it becomes ``CONFIG``, and its
    ``METADATA`` (column name -> Arrow type) the source's. The subclass's constructor (explicit
    keywords mirroring the configuration, plus ``error_policy`` and ``config``) calls
    :meth:`_init_messages` with its ``locals()``.
    """

    #: The configuration class (the type argument of the subclass's ``MessageSource`` base).
    CONFIG: ClassVar[type[Any]]
    METADATA: ClassVar[dict[str, pa.DataType]] = {}
    config: C

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            args = get_args(base) if get_origin(base) is MessageSource else ()
            if args and isinstance(args[0], type):  # not a TypeVar: a generic intermediate base
                config_type: Any = args[0]
                cls.CONFIG = config_type
                cls.METADATA = config_type.METADATA

    def _init_messages(self, options: Mapping[str, Any], default_format: Format | None = None) -> C:
        """Set up from the constructor's ``options`` (its ``locals()``) and return the configuration:
        ``CONFIG`` resolved from the keywords or ``options["config"]`` (see
        :func:`~arrowflow.config.resolve_config`: an error names the option), the format (else
        ``default_format``, else ``Raw()``), the metadata columns, and ``options["error_policy"]``."""
        config: C = resolve_config(self.CONFIG, options.get("config"), options)
        self.config = config
        self.format: Format = config.format if config.format is not None else (default_format or Raw())
        self.metadata_columns: tuple[str, ...] = tuple(config.metadata_columns)
        self.error_policy = ErrorPolicy.resolve(options["error_policy"], name=f"{self.name} source")
        return config

    def _consumer_splits(self, name: str, count: int) -> list[Split]:
        """``count`` splits ``"<name>/<i>"`` (``params={"index": i}``): consumers of one
        subscription ``name`` that the broker shares messages between."""
        return [
            Split(split_id=f"{name}/{i}", bounded=self.bounded, params={"index": i}) for i in range(count)
        ]

    @property
    def bounded(self) -> bool:
        return False

    @property
    def schema(self) -> pa.Schema | None:
        base = getattr(self.format, "schema", None)
        if base is None:
            return None
        return pa.schema([*base, *(pa.field(m, self.METADATA[m]) for m in self.metadata_columns)])


class PendingAcks(Generic[T]):
    """Acknowledgement handles of returned messages, by the number of the position that returned them.

    ``take(upto, generation)`` pops every entry at or below ``upto`` and returns the handles of those
    received on connection ``generation`` (entries of an older connection are dropped: their
    messages come again from the broker, and their handles are void).
    """

    def __init__(self) -> None:
        self._entries: deque[tuple[int, Any, list[T]]] = deque()

    def add(self, seq: int, handles: Sequence[T], generation: Any = None) -> None:
        if handles:
            self._entries.append((seq, generation, list(handles)))

    def take(self, upto: int, generation: Any = None) -> list[T]:
        out: list[T] = []
        while self._entries and self._entries[0][0] <= upto:
            _, gen, handles = self._entries.popleft()
            if gen == generation:
                out.extend(handles)
        return out

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return sum(len(h) for _, _, h in self._entries)


class Inbox(Generic[T]):
    """Messages a client thread receives, for ``read_batch`` to take (FIFO, thread-safe)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: deque[T] = deque()

    def put(self, item: T) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def extend(self, items: Sequence[T]) -> None:
        with self.cond:
            self.items.extend(items)
            self.cond.notify_all()

    def take(self, max_items: int, timeout: float, stop: Callable[[], bool] | None = None) -> list[T]:
        """Up to ``max_items``, waiting at most ``timeout`` seconds for the first one (or until
        ``stop()`` turns true; call it with the condition held, it is checked on every wake-up)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self.cond:
            while not self.items and not (stop is not None and stop()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return [self.items.popleft() for _ in range(min(max_items, len(self.items)))]

    def clear(self) -> None:
        with self.cond:
            self.items.clear()

    def __len__(self) -> int:
        return len(self.items)


class Reconnect:
    """When to try connecting again: at once after a loss, then after growing jittered delays."""

    def __init__(self, backoff: ExponentialBackoff, what: str, log: logging.Logger) -> None:
        self.backoff = backoff
        self.what = what
        self.log = log
        self.failures = 0
        self.next_try = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_try

    def wait(self, timeout: float) -> None:
        """Sleep until the next try is due, at most ``timeout`` seconds."""
        time.sleep(max(0.0, min(timeout, self.next_try - time.monotonic())))

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, exc: BaseException, event: str = "reconnect failed") -> None:
        """Schedule the next try after a (growing, jittered) delay; log ``event`` and why."""
        self.failures += 1
        delay = self.backoff.delay(self.failures)
        self.log.warning("%s: %s (%s); next try in %.1fs", self.what, event, exc, delay)
        self.next_try = time.monotonic() + delay

    def lost(self) -> None:
        self.next_try = time.monotonic()


class MessageReader(SplitReader):
    """The broker-independent part of a reader (see the module docstring).

    A subclass that reconnects by itself implements :meth:`connect` (raising a retryable
    :class:`~arrowflow.errors.ConnectorError` when the broker cannot be reached) and
    :attr:`connected`, and calls :meth:`ensure_connected` first thing in ``read_batch``.
    """

    def __init__(self, source: MessageSource, split: Split, position: Position) -> None:
        super().__init__(split, position)
        self.source = source
        self._closed = False
        self._position: Position = position
        self._pending: PendingAcks[Any] = PendingAcks()
        #: What a client thread received and ``read_batch`` has not returned yet.
        self._inbox: Inbox[Any] = Inbox()
        backoff = getattr(source.config, "reconnect_backoff", RECONNECT_BACKOFF)
        self._reconnect = Reconnect(
            backoff, f"{source.name} {split.split_id}", logging.getLogger(f"arrowflow.{source.name}")
        )

    # -- connection -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return True

    def connect(self) -> None:
        """(Re)connect and subscribe. Only readers that reconnect themselves implement it."""

    def ensure_connected(self) -> bool:
        """Connected, or a reconnect attempt was due and succeeded. A non-retryable failure raises."""
        if self.connected:
            return True
        if not self._reconnect.due():
            return False
        try:
            self.connect()
        except ConnectorError as exc:
            if not exc.retryable:
                raise
            self._reconnect.failed(exc)
            return False
        self._reconnect.succeeded()
        return True

    # -- batches ----------------------------------------------------------------------------------

    def decode(
        self,
        payloads: pa.Array,
        context: pa.RecordBatch | Callable[[], pa.RecordBatch] | None,
        metadata: Mapping[str, Callable[[], Any]],
    ) -> pa.RecordBatch:
        """:func:`decode_messages` with the source's format, error policy and metadata columns."""
        src = self.source
        return decode_messages(
            src.format, src.error_policy, payloads, context, src.metadata_columns, src.METADATA, metadata
        )

    # -- the reader contract ----------------------------------------------------------------------

    def read_batch(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        """For a reader fed by a client thread: take up to ``max_rows`` messages from
        ``self._inbox`` (waiting at most ``timeout``) and hand them to ``self._to_batch``. Readers
        that receive by calling the client override this."""
        if self._closed:
            return None
        received = self._inbox.take(max_rows, timeout)
        if not received:
            return None
        return self._to_batch(received)

    def _to_batch(self, received: list[Any]) -> pa.RecordBatch:
        """The batch of ``received`` messages (usually through :meth:`decode`); records what
        ``commit`` will acknowledge and the new position."""
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        return False

    def snapshot(self) -> Position:
        return self._position

    def disconnect(self) -> None:
        """Release the client (``close()`` calls it once)."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        self.disconnect()


@dataclass(frozen=True, kw_only=True)
class MetadataOptions:
    """``metadata_columns`` of a source's configuration, checked against its ``METADATA``."""

    METADATA: ClassVar[dict[str, pa.DataType]] = {}

    metadata_columns: Sequence[str] = ()
    """Metadata columns to append to every batch (the connector's list below)."""

    def __post_init__(self) -> None:
        post_init_bases(super())
        object.__setattr__(
            self, "metadata_columns", check_metadata_columns(self.metadata_columns, self.METADATA)
        )


@dataclass(frozen=True, kw_only=True)
class SourceOptions(MetadataOptions):
    """The options every broker source's configuration starts with (inherit it; set ``METADATA``)."""

    format: Format | None = None
    """How a payload becomes columns (default :class:`~arrowflow.formats.Raw`: one binary column
    ``value``). Payloads that fail go to the error policy."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_type("format", self.format, Format, allow_none=True)


@dataclass(frozen=True, kw_only=True)
class ReconnectingSourceOptions(SourceOptions):
    """:class:`SourceOptions` of a source that reconnects by itself after losing its broker."""

    reconnect_backoff: ExponentialBackoff = RECONNECT_BACKOFF
    """How long to wait between reconnect attempts (full jitter; the first try is immediate). The
    0.1 form, an ``(initial, max)`` tuple, still works but is deprecated."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "reconnect_backoff", as_backoff(self.reconnect_backoff, "reconnect_backoff"))
