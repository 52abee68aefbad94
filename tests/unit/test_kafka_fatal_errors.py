"""Which fatal errors of the exactly-once Kafka sink's producer a restart may recover from
(:func:`arrowflow.connectors.kafka.transactional.restartable`): not a fenced producer (another instance
owns the transactional id; restarting would fence that one in turn), every other fatal error yes (the
restart replaces the producer and fences it). The errors are confluent-kafka's own ``KafkaError``s as
librdkafka reports them (code, text, fatal flag); the real-broker side is in
``tests/integration/faults/test_kafka_fencing.py`` and the stall of ``test_kafka_faults.py``."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from arrowflow.connectors.kafka.transactional import restartable
from arrowflow.errors import ConnectorError

#: What librdkafka raised in the stall fault test (its fatal error after timed-out produce requests).
DESYNC = (
    "ProduceRequest for t [0] with 50 message(s) failed due to sequence desynchronization with broker 1 "
    "(PID{Id:1,Epoch:0}, base seq 100, idemp state change 9000ms ago, last partition error _TIMED_OUT "
    "(actions Retry,MsgPossiblyPersisted, base seq 50..99, base msgid 51, 3000ms ago)"
)

FENCED = ["_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"]


def _error(name: str, text: str = "", *, fatal: bool = True) -> KafkaError:
    return KafkaError(getattr(KafkaError, name), text or name, fatal=fatal)


@pytest.mark.parametrize("name", FENCED)
def test_a_fenced_producer_is_not_restartable(name: str) -> None:
    err = _error(name, "Producer fenced by newer instance")
    assert not restartable(err)
    assert not restartable(KafkaException(err))
    # As the sink sees it: the call's exception says only "fatal", the error_cb said why.
    assert not restartable(KafkaException(_error("_FATAL")), err)
    try:
        try:
            raise KafkaException(err)
        except KafkaException as exc:
            raise ConnectorError("kafka sink: commit_transaction failed") from exc
    except ConnectorError as wrapped:
        assert not restartable(wrapped)


@pytest.mark.parametrize("name", ["OUT_OF_ORDER_SEQUENCE_NUMBER", "_FATAL", "UNKNOWN_PRODUCER_ID"])
def test_other_fatal_errors_are_restartable(name: str) -> None:
    err = _error(name, DESYNC)
    assert restartable(err)
    assert restartable(KafkaException(err))
    assert restartable(KafkaException(_error("_FATAL")), err)
    assert restartable(RuntimeError(str(err)), None)  # no KafkaError at all: not a known fencing
