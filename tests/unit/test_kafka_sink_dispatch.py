"""``KafkaSink(guarantee=...)`` constructs the subclass registered for the guarantee (0.1.0's single
entry point), without ``kafka.sink`` importing that subclass (the import-linter's acyclic contract)."""

from __future__ import annotations

import pytest

from arrowflow.connectors.kafka import KafkaSink, TransactionalKafkaSink

BOOTSTRAP = "127.0.0.1:1"  # never contacted: building a sink opens no connection


def _sink(**kwargs: object) -> KafkaSink:
    return KafkaSink(BOOTSTRAP, topic="t", **kwargs)  # type: ignore[arg-type]


def test_exactly_once_constructs_the_transactional_sink() -> None:
    sink = _sink(guarantee="exactly-once", transactional_id_prefix="p")
    try:
        assert type(sink) is TransactionalKafkaSink
        assert sink.config.guarantee == "exactly-once"
    finally:
        sink.close()


@pytest.mark.parametrize("guarantee", [None, "at-least-once", "none"])
def test_other_guarantees_construct_the_plain_sink(guarantee: str | None) -> None:
    sink = _sink() if guarantee is None else _sink(guarantee=guarantee)
    try:
        assert type(sink) is KafkaSink
    finally:
        sink.close()


def test_the_transactional_sink_registered_itself() -> None:
    assert KafkaSink._for_guarantee == {"exactly-once": TransactionalKafkaSink}
