"""Exactly-once Kafka sink: one Kafka transaction per checkpoint, recoverable after a crash.

Protocol per checkpoint (the pipeline runner drives it):

1. ``write``: the first write after a checkpoint begins transaction ``n`` (a sequence number that only
   grows, across restarts too). Every row produced in it is also appended to a local journal
   (:class:`~arrowflow.connectors.kafka.journal.TransactionJournal`) when the runner gave the sink a
   state directory (``attach_state_dir``; every pipeline with a ``checkpoint_dir`` does).
2. ``prepare_commit``: adds a *commit marker* to the transaction - a transactional offset commit of
   offset ``n`` for partition 0 of the marker topic in the consumer group
   ``<transactional id>.arrowflow-commits`` - waits until every message is acknowledged, fsyncs the
   journal, and returns ``[{"transactional_id", "transaction": n, "marker_topic", "journal"}]``.
3. The runner saves the checkpoint, then calls ``commit``: ``commit_transaction``, then the journal of
   ``n`` is deleted.

Kafka applies a transactional offset commit only when its transaction commits, so after a crash the
committed offset of the marker group says whether transaction ``n`` committed. ``recover`` (on every
start) runs ``init_transactions`` - fencing the crashed producer and aborting its open transaction,
or completing a commit the coordinator had already accepted - then reads the marker: if it is ``>= n``
the transaction committed and its journal is deleted; otherwise its rows are replayed from the journal
in a new transaction carrying the same marker ``n``, which is committed before anything else is
written (a crash during the replay repeats it). Journals of transactions after the last checkpoint are
deleted: the sources re-read those rows from the checkpoint's positions. Nothing is lost, and with a
broker that hides aborted records from ``read_committed`` readers nothing is duplicated.

The transactional calls (``init_transactions``, ``send_offsets_to_transaction``, ``commit_transaction``,
``abort_transaction``) are made again while librdkafka answers with a retriable error, as its contract
asks (the transaction coordinator's broker died and another took over), for up to ``flush_timeout``
(``metadata_timeout`` for ``init_transactions``); an abortable or fatal error raises
:class:`~arrowflow.errors.ConnectorError`, and the restarted pipeline recovers as above.

A producer that failed *fatally* (librdkafka's fatal errors: it cannot go on) is a retryable failure,
unless it was fenced (:func:`restartable`): a restart aborts the open transaction, :meth:`reset`
replaces the producer and ``recover`` runs ``init_transactions`` again, which bumps the producer epoch
and aborts whatever the failed producer left open, so none of its rows is committed and the sources
re-read them from the checkpoint. librdkafka turns, for instance, a produce request that timed out
and may have been written (``MsgPossiblyPersisted``) followed by ``OUT_OF_ORDER_SEQUENCE_NUMBER`` into
a fatal "sequence desynchronization" (seen when the network stalled longer than
``request.timeout.ms``); the Kafka Java client calls the same condition abortable for a
transactional producer. A fenced producer (``PRODUCER_FENCED``/``INVALID_PRODUCER_EPOCH``, librdkafka's
``_FENCED``: another instance with this transactional id called ``init_transactions``) is not: a
restart would fence that instance in turn. One exception: a transaction left open longer than
``transaction_timeout_ms`` is aborted by the broker, which bumps the producer epoch, and librdkafka
reports that as ``_FENCED`` too (seen with Kafka 4.4 and confluent-kafka 2.x). When the open
transaction began more than ``transaction_timeout_ms`` ago (the broker's clock for it starts later,
with its first partition), the failure is reported as the timeout it is, and is retryable: the
restart replays the transaction from its journal or from the sources.

Costs and limits: every row is also written once to local disk (Arrow IPC, fsynced per checkpoint).
Rows the broker refuses at produce time (e.g. too large) go to the error policy again when replayed.
Without a state directory (a sink used without a checkpointed pipeline) there is no journal: a crash
between checkpoint and commit then aborts that transaction, and ``recover`` logs it. The librdkafka
mock cluster does not store transactional offset commits, so against it every prepared transaction
looks uncommitted and is replayed (duplicates); Apache Kafka stores them.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ...config import REQUIRED
from ...errors import ConnectorError
from ...sink import Committable, TwoPhaseSink
from .admin import client_config
from .config import KafkaSinkConfig
from .journal import TransactionJournal
from .sink import KafkaSink, _is_fatal

__all__ = ["TransactionalKafkaSink", "restartable"]

log = logging.getLogger("arrowflow.kafka")

#: Consumer-group suffix of the commit markers.
MARKER_GROUP_SUFFIX = ".arrowflow-commits"

#: Seconds past its own timeout after which a send_offsets_to_transaction call is declared hung.
_HANG_GRACE = 15.0

#: librdkafka error names after which a new producer with this transactional id would not help: it
#: was fenced by another instance that owns the id now (the broker's PRODUCER_FENCED and
#: INVALID_PRODUCER_EPOCH, which librdkafka reports as _FENCED), or it may not use the id. These are
#: the errors the Kafka Java client makes fatal for a transactional producer (``TransactionManager``'s
#: ``maybeTransitionToErrorState``: fenced, transactional-id or cluster authorization); every other
#: error only makes it abort the transaction (and bump its epoch).
_NOT_RESTARTABLE = frozenset(
    {
        "_FENCED",
        "PRODUCER_FENCED",
        "INVALID_PRODUCER_EPOCH",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
    }
)


def _kafka_errors(error: object, seen: set[int] | None = None) -> list[Any]:
    """The ``KafkaError``s in ``error``: itself, a ``KafkaException``'s argument, and those of the
    exceptions it was raised from (``__cause__``/``__context__``)."""
    from confluent_kafka import KafkaError

    seen = set() if seen is None else seen
    if error is None or id(error) in seen:
        return []
    seen.add(id(error))
    if isinstance(error, KafkaError):
        return [error]
    out: list[Any] = []
    if isinstance(error, BaseException):
        out += [a for a in error.args[:1] if isinstance(a, KafkaError)]
        out += _kafka_errors(error.__cause__, seen) + _kafka_errors(error.__context__, seen)
    return out


def restartable(*errors: object) -> bool:
    """Whether a transactional producer that failed with ``errors`` (``KafkaError``s or exceptions,
    e.g. the fatal error librdkafka reported through ``error_cb`` and the exception a call raised) may
    be replaced by a new one and the pipeline restarted: False when one of them says the producer was
    fenced or may not use its transactional id (``_NOT_RESTARTABLE``), True otherwise (librdkafka's
    other fatal errors, e.g. a sequence desynchronization after timed-out produce requests)."""
    return not any(e.name() in _NOT_RESTARTABLE for x in errors for e in _kafka_errors(x))


class TransactionalKafkaSink(KafkaSink, TwoPhaseSink):
    """The exactly-once :class:`~arrowflow.connectors.kafka.KafkaSink`: the same options, with
    ``guarantee="exactly-once"`` (its default and only value: another one, given or in ``config=``, is
    a :class:`~arrowflow.errors.ConfigurationError` naming ``guarantee``). See the module docstring
    for the protocol. :func:`~arrowflow.connectors.kafka.kafka_sink` builds one for
    ``guarantee="exactly-once"``.

    The transactional id is ``f"{transactional_id_prefix}-<subtask>"`` (default prefix
    ``"arrowflow-<topic>"``; subtask 0, or each parallel subtask's index): stable across restarts so
    that a restarted run fences the crashed one and finds its journal and marker, and different for
    every pipeline writing concurrently (set the prefix when two pipelines write the same topic).
    """

    # Only the producer that opened a Kafka transaction can commit it.
    commits_from_any_instance = False
    guarantees = ("exactly-once",)
    _other_guarantees = "KafkaSink(...) (or kafka_sink(..., guarantee=...))"

    def __init__(
        self, bootstrap_servers: str = REQUIRED, *, guarantee: str = "exactly-once", **kwargs: Any
    ) -> None:
        self._initialized = False
        self._in_transaction = False
        #: When the open transaction began (``time.monotonic()``).
        self._began = 0.0
        #: The open transaction was prepared (its checkpoint may be durable): its journal is kept
        #: until it commits or ``recover`` settles it, whatever happens to the producer.
        self._prepared = False
        self._transactions = 0
        self._seq = 0
        self._marker_topic: str | None = None
        self._journal_store: TransactionJournal | None = None
        self._replaying = False
        self._marker_consumer: Any = None
        self._replayed_rows = 0
        self._replayed_transactions = 0
        #: The producer, once a call hung inside it: never called again (nor destroyed).
        self._stuck: Any = None
        #: A call or delivery report of the current producer failed fatally: :meth:`reset` replaces it.
        self._failed_fatally = False
        if guarantee != "exactly-once" or not isinstance(kwargs.get("config"), KafkaSinkConfig):
            # A KafkaSinkConfig brings its own guarantee (checked by KafkaSink); a guarantee given
            # next to one is reported by resolve_config.
            kwargs["guarantee"] = guarantee
        super().__init__(bootstrap_servers, **kwargs)

    @property
    def transactional_id(self) -> str:
        c = self.config
        prefix = c.transactional_id_prefix or f"arrowflow-{c.topic or c.topic_column}"
        return f"{prefix}-{self._subtask}"

    @property
    def marker_group(self) -> str:
        """The consumer group whose committed offsets are this sink's commit markers."""
        return self.transactional_id + MARKER_GROUP_SUFFIX

    def _producer_config(self) -> dict[str, Any]:
        cfg = super()._producer_config()
        cfg["transactional.id"] = self.transactional_id
        cfg["transaction.timeout.ms"] = self.config.transaction_timeout_ms
        return cfg

    def _fatal_cause(self) -> Any:
        """The exception carrying the error the producer failed fatally with, or None. After a fatal
        error librdkafka fails produce calls and delivery reports with a bare ``_FATAL``, and (seen
        with confluent-kafka 2.16) does not hand the cause to ``error_cb``; a transactional call
        raises the cause itself (e.g. ``_FENCED``), and ``begin_transaction`` does nothing else.
        Called only once something said the producer failed fatally (librdkafka's fatal state never
        ends)."""
        from confluent_kafka import KafkaException

        if self._producer is None or self._stuck is not None:
            return None
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            return exc
        self._in_transaction = True  # it had not failed after all: the restart's abort ends this one
        return None

    def _timed_out(self) -> str | None:
        """Why a fencing error is the broker's transaction timeout, or None: the open transaction
        began ``transaction_timeout_ms`` or more ago (see the module docstring)."""
        if not self._in_transaction:
            return None
        age = time.monotonic() - self._began
        limit = self.config.transaction_timeout_ms
        if age * 1000 < limit:
            return None
        return (
            f"the transaction was open {age:.1f} s, longer than transaction_timeout_ms={limit}: the broker "
            "aborted it and bumped the producer epoch, which librdkafka reports as fenced; a restart "
            "replays it (raise transaction_timeout_ms above the checkpoint interval plus the longest "
            "stall)"
        )

    def _restartable(self, *errors: object) -> tuple[bool, str]:
        """:func:`restartable`, except that a fencing error of a transaction open past its timeout is
        restartable (:meth:`_timed_out`); and what to add to the error's message."""
        if restartable(*errors):
            return True, ""
        timed_out = self._timed_out()
        return (True, f" ({timed_out})") if timed_out is not None else (False, "")

    def _fatal_error(self, exc: BaseException) -> ConnectorError:
        """The error for a producer that failed fatally with ``exc``: retryable unless it was fenced
        (:meth:`_restartable`, from ``exc`` and the producer's fatal error): a restart aborts the
        transaction, replaces the producer (:meth:`reset`) and fences this one (``recover``)."""
        self._failed_fatally = True
        cause = self._fatal_cause()
        retryable, timed_out = self._restartable(exc, cause)
        why = (
            "a restart replaces it"
            if retryable
            else "fenced (another producer owns its transactional id) or not authorized: not restarted"
        )
        return ConnectorError(
            f"kafka sink {self.transactional_id}: the producer failed fatally and cannot go on ({why})"
            f"{timed_out}: {exc}" + (f"; its fatal error: {cause}" if cause is not None else ""),
            retryable=retryable,
        )

    def attach_state_dir(self, directory: Path) -> None:
        self._journal_store = TransactionJournal(Path(directory) / f"kafka-{self.transactional_id}")

    # -- transactions --------------------------------------------------------------------------

    def _txn_call(self, what: str, call: Callable[[float], Any], timeout: float) -> None:
        """``call(seconds left)``, a transactional API call of the producer, made again while it fails
        with an error librdkafka calls retriable (the transaction coordinator moved to another broker,
        a request timed out during a leader election), for up to ``timeout`` seconds in all: the
        librdkafka contract for these calls. Other errors (abortable, fatal) raise at once."""
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + timeout
        while True:
            try:
                call(max(deadline - time.monotonic(), 0.1))
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if err is None or not err.retriable() or time.monotonic() >= deadline:
                    raise
                log.warning("kafka sink %s: %s failed, retrying: %s", self.transactional_id, what, err)
                time.sleep(0.1)

    def _init(self) -> None:
        if self._initialized:
            return
        try:
            self._txn_call(
                "init_transactions", self._producer.init_transactions, self.config.metadata_timeout
            )
        except Exception as exc:
            raise self._client_errors.failure(
                self._producer, f"kafka sink: init_transactions({self.transactional_id!r}) failed", exc
            ) from exc
        self._initialized = True

    def _begin(self, seq: int) -> None:
        try:
            self._producer.begin_transaction()
        except Exception as exc:
            # A producer that failed fatally between two transactions is noticed here.
            if any(_is_fatal(e) for e in _kafka_errors(exc)):
                raise self._fatal_error(exc) from exc
            raise
        self._in_transaction = True
        self._began = time.monotonic()
        self._prepared = False
        self._transactions += 1
        self._seq = seq
        # Set by the first row produced: a transaction that produced nothing carries no marker
        # (and has nothing to replay), so it never names a topic that may not exist.
        self._marker_topic = None

    def _before_write(self) -> None:
        self._init()
        if not self._in_transaction:
            # Grows across restarts: recover() raises _seq to the last prepared or committed
            # transaction, and the clock floor covers a restart without a checkpoint.
            self._begin(max(self._seq + 1, time.time_ns() // 1_000_000))

    def _journal(self, batch: pa.RecordBatch) -> None:
        if self._marker_topic is None:
            c = self.config
            self._marker_topic = (
                c.topic if c.topic is not None else str(batch.column(c.topic_column)[0].as_py())
            )
        if self._journal_store is not None and not self._replaying:
            self._journal_store.append(self._seq, batch)

    def send_offsets(self, positions: Mapping[str, int], group_metadata: Any) -> None:
        """Add consumed source offsets (``{"topic:partition": next offset}``) to the open transaction
        (Kafka -> Kafka exactly-once: they commit with the produced messages). ``group_metadata``
        is ``Consumer.consumer_group_metadata()`` of the consuming group."""
        from confluent_kafka import TopicPartition

        from .config import parse_partition_key

        self._before_write()
        tps = [TopicPartition(*parse_partition_key(k, "positions"), int(v)) for k, v in positions.items()]
        self._send_offsets("send_offsets_to_transaction", tps, group_metadata)

    def _send_offsets(self, what: str, offsets: list[Any], group_metadata: Any) -> None:
        """``send_offsets_to_transaction``, retried as :meth:`_txn_call` does, and watched: librdkafka
        can block in it far past its timeout when the broker coordinating the consumer group died
        (confluentinc/librdkafka#5456, #5511; seen here when the group coordinator's broker was
        SIGKILLed, and when the only broker was stopped cleanly). Each call runs in a helper thread;
        one that has not returned ``_HANG_GRACE`` seconds after its timeout makes the sink give the
        producer up: :class:`ConnectorError` (retryable), and ``abort``/``close`` no longer touch it.
        The pipeline then fails instead of stalling; a restart (in-process under ``run(restart=...)``,
        or a new run) replaces the producer (:meth:`reset`), fences the stuck one and recovers from
        the checkpoint. (Not retryable, a restart strategy would give up on a broker outage it is
        there to ride out.)"""

        def watched(left: float) -> None:
            outcome: list[BaseException | None] = []

            def call() -> None:
                try:
                    self._producer.send_offsets_to_transaction(offsets, group_metadata, left)
                    outcome.append(None)
                except BaseException as exc:
                    outcome.append(exc)

            helper = threading.Thread(target=call, name="kafka-send-offsets", daemon=True)
            helper.start()
            helper.join(left + _HANG_GRACE)
            if helper.is_alive():
                self._stuck = self._producer
                raise ConnectorError(
                    f"kafka sink {self.transactional_id}: {what} did not return within its timeout "
                    f"({left:.0f} s; a known librdkafka hang when a group coordinator's broker dies): "
                    "the producer is given up, a restarted pipeline recovers from its checkpoint",
                    retryable=True,
                )
            if outcome[0] is not None:
                raise outcome[0]

        self._txn_call(what, watched, self.config.flush_timeout)

    def _marker_client(self) -> Any:
        if self._marker_consumer is None:
            from confluent_kafka import Consumer

            self._marker_consumer = Consumer(
                client_config(
                    self.config.bootstrap_servers,
                    self.config.client_options,  # producer-only options are ignored by a consumer
                    **{"group.id": self.marker_group, "enable.auto.commit": False},
                )
            )
        return self._marker_consumer

    def _send_marker(self) -> None:
        from confluent_kafka import TopicPartition

        if self._marker_topic is None:
            return  # nothing was produced in this transaction: nothing to replay either
        metadata = self._marker_client().consumer_group_metadata()
        marker = [TopicPartition(self._marker_topic, 0, self._seq)]
        try:
            self._send_offsets("adding the commit marker", marker, metadata)
        except ConnectorError:
            raise
        except Exception as exc:
            # Retryable (a restart aborts the transaction), unless the producer was fenced.
            retryable, timed_out = self._restartable(exc)
            raise ConnectorError(
                f"kafka sink {self.transactional_id}: adding the commit marker to transaction "
                f"{self._seq} failed{timed_out}: {exc}",
                retryable=retryable,
            ) from exc

    def _read_marker(self, topic: str) -> int:
        """The last committed marker for ``topic`` (-1 if none)."""
        from confluent_kafka import TopicPartition

        try:
            (tp,) = self._marker_client().committed(
                [TopicPartition(topic, 0)], timeout=self.config.metadata_timeout
            )
        except Exception as exc:
            raise ConnectorError(
                f"kafka sink: reading the commit marker of group {self.marker_group!r} failed: {exc}",
                retryable=True,
            ) from exc
        if tp.error is not None:
            raise ConnectorError(
                f"kafka sink: reading the commit marker of group {self.marker_group!r} failed: {tp.error}",
                retryable=True,
            )
        return tp.offset if tp.offset >= 0 else -1

    def flush(self) -> None:
        if self._closed or not self._in_transaction:
            return
        self._wait_delivered()
        self.error_policy.flush()

    def prepare_commit(self) -> list[Committable]:
        """Add the commit marker, wait for every message of the open transaction (durable on the
        brokers, invisible to read_committed readers), fsync its journal; return its committable."""
        if not self._in_transaction:
            return []
        self._send_marker()
        self._wait_delivered()
        self.error_policy.flush()
        journal = self._journal_store.seal(self._seq) if self._journal_store is not None else []
        self._prepared = True
        return [
            {
                "transactional_id": self.transactional_id,
                "transaction": self._seq,
                "marker_topic": self._marker_topic,
                "journal": journal,
            }
        ]

    def commit(self, committables: Sequence[Committable]) -> None:
        """Commit the open transaction, if any, then delete its journal (idempotent: nothing open,
        nothing to do)."""
        if not self._in_transaction:
            return
        try:
            self._txn_call("commit_transaction", self._producer.commit_transaction, self.config.flush_timeout)
        except Exception as exc:
            # The checkpoint naming this transaction is durable: a restart recovers it (the marker says
            # whether the broker committed it, else its journal is replayed), so a broker that is down,
            # a coordinator that moved or a producer that failed fatally is retryable. A fenced one
            # (another instance with this transactional id) is not: a restart would fence that one in
            # turn.
            retryable, timed_out = self._restartable(exc)
            raise ConnectorError(
                f"kafka sink {self.transactional_id}: commit_transaction failed{timed_out}: {exc}",
                retryable=retryable,
            ) from exc
        self._in_transaction = False
        self._prepared = False
        if self._journal_store is not None:
            self._journal_store.discard(self._seq)

    def abort(self) -> None:
        if not self._in_transaction or self._producer is None:
            return
        try:
            if self._stuck is None:  # a stuck producer's transaction is aborted by the next fencing
                self._txn_call(
                    "abort_transaction", self._producer.abort_transaction, self.config.flush_timeout
                )
        finally:
            self._in_transaction = False
            with self._failed_lock:
                self._failed = []
            # A prepared transaction's journal stays (see _prepared): after a commit that failed, the
            # runner resets the sink for a restart (this abort) and then recovers the checkpoint that
            # names it; recover() deletes the journals no checkpoint names.
            if self._journal_store is not None and not self._prepared:
                self._journal_store.discard(self._seq)
            self._prepared = False

    def reset(self) -> None:
        """Before an in-process restart: abort the open transaction. A producer that cannot (it failed
        fatally) or that is stuck in a call is replaced; ``recover`` then fences the old one
        (``init_transactions``: a new epoch, the old one's open transaction aborted)."""
        reason = "its producer is stuck in a call" if self._stuck is not None else None
        if reason is None:
            try:
                self.abort()
            except Exception as exc:
                reason = f"abort failed ({exc})"
        if reason is None and (self._failed_fatally or self._fatal is not None):
            reason = "its producer failed fatally"
        if reason is not None:
            log.warning("kafka sink %s: %s; starting a new producer", self.transactional_id, reason)
            if self._producer is not None:
                # Serve the old producer's pending statistics: the metrics keep counting what it met
                # (the request timeouts of a stall that left it stuck in a call, or failed it). Also
                # for a stuck one: poll(0) does not block, and librdkafka serves it from any thread.
                try:
                    self._producer.poll(0)
                except Exception:  # a callback raised: the producer is dropped anyway
                    pass
            self._in_transaction = False
            self._initialized = False
            self._stuck = None  # the new producer is not; the stuck one is fenced by recover()
            with self._failed_lock:  # the old producer's failures: its transaction is aborted
                self._failed, self._fatal = [], None
            self._failed_fatally = False
            self._producer = self._new_producer()

    # -- recovery ------------------------------------------------------------------------------

    def recover(self, committables: Sequence[Committable]) -> None:
        """Fence earlier producers with this transactional id (``init_transactions``), then make sure
        the transaction the last checkpoint prepared is committed: replay its journal if the broker
        did not commit it. Deletes journals of transactions after the checkpoint."""
        self._init()
        mine = [
            c
            for c in committables
            if isinstance(c, Mapping) and c.get("transactional_id") == self.transactional_id
        ]
        for c in mine:
            self._recover_one(c)
        if self._journal_store is not None:
            for seq in self._journal_store.sequences():
                self._journal_store.discard(seq)

    def _recover_one(self, committable: Mapping[str, Any]) -> None:
        seq = int(committable["transaction"])
        self._seq = max(self._seq, seq)
        topic = committable.get("marker_topic")
        if "journal" not in committable:
            log.warning(
                "kafka sink %s: recovered a checkpoint without a transaction journal (%s): if that "
                "transaction had not been committed, init_transactions aborted it",
                self.transactional_id,
                committable,
            )
            return
        if topic is None:
            return  # nothing was produced in that transaction
        marker = self._read_marker(str(topic))
        self._seq = max(self._seq, marker)
        if marker >= seq:
            log.info("kafka sink %s: transaction %d was committed", self.transactional_id, seq)
            return
        expected = list(committable["journal"])
        journal = self._journal_store
        found = [p.name for p in journal.files(seq)] if journal is not None else []
        if journal is None or found != expected:
            raise ConnectorError(
                f"kafka sink {self.transactional_id}: transaction {seq} of the last checkpoint was not "
                f"committed and its journal ({expected}) is not in the state directory (found {found}); "
                "its rows cannot be replayed",
                retryable=False,
            )
        self._replay(seq, str(topic), journal)

    def _replay(self, seq: int, topic: str, journal: TransactionJournal) -> None:
        rows = 0
        self._begin(seq)
        self._marker_topic = topic
        self._replaying = True
        try:
            for batch in journal.read(seq):
                self._write_encoded(self._encode(batch))
                rows += batch.num_rows
            self._poll(0)
            self.prepare_commit()
            self.commit([])
        finally:
            self._replaying = False
        self._replayed_rows += rows
        self._replayed_transactions += 1
        log.warning(
            "kafka sink %s: transaction %d of the last checkpoint had not been committed before the crash; "
            "replayed its %d row(s) from the journal and committed them",
            self.transactional_id,
            seq,
            rows,
        )

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Without a pipeline: commit what was written, then close."""
        if self._closed:
            return
        try:
            if self._in_transaction and self._stuck is None:
                self.prepare_commit()
                self.commit([])
        finally:
            self._closed = True
            self._close()

    def _close(self) -> None:
        if self._marker_consumer is not None:
            try:
                self._marker_consumer.close()
            finally:
                self._marker_consumer = None
        if self._journal_store is not None:
            self._journal_store.close()
        super()._close()

    def metrics(self) -> dict[str, int]:
        return {
            **super().metrics(),
            "transactions": self._transactions,
            "replayed_transactions": self._replayed_transactions,
            "replayed_rows": self._replayed_rows,
        }


# Its options are KafkaSink's, with the exactly-once default: what inspect.signature reports, so the
# YAML builder checks option names against them and the docs list them.
_KAFKA_SINK_INIT = inspect.signature(KafkaSink.__init__)
TransactionalKafkaSink.__init__.__signature__ = _KAFKA_SINK_INIT.replace(  # type: ignore[attr-defined]
    parameters=[
        p.replace(default="exactly-once") if p.name == "guarantee" else p
        for p in _KAFKA_SINK_INIT.parameters.values()
    ]
)
