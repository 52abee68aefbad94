"""Which sinks are idempotent (``Sink.idempotent``: writing the same rows twice leaves the target as if
written once, so an exactly-once pipeline accepts them), listed in one table that the README's
"Delivery guarantees" section quotes, and checked against the code: every sink class of arrowflow is
in the table, and the ones that are idempotent (always, or with the option named) say so when built
that way and, for conditional ones, not otherwise.

No server is needed: these sinks connect on first use. ``NatsJetStreamSink`` connects when built;
its two cases are asserted in tests/integration/nats/test_nats.py (``msg_id_column`` from the data:
idempotent; derived ids: not).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from arrowflow_classes import subclasses_in_arrowflow

from arrowflow import Sink

#: Every sink class and when it is idempotent ("never", "always", or the option that makes it so).
IDEMPOTENT = {
    "ActiveMQSink": "never",
    "ActiveMQTransactionalSink": "never",  # transactional instead
    "AsyncBatchWriter": "never",
    "AwsSink": "never",
    "ClientSink": "never",
    "CassandraSink": "with a table (keyed INSERTs; a user statement only with idempotent=True)",
    "DynamoDBSink": "always (keyed puts and deletes)",
    "ElasticsearchSink": "with id_column (and not action='create' unless on_conflict='ignore')",
    "FileSink": "never",  # transactional instead
    "FirehoseSink": "never",
    "FlumeSink": "never",
    "KafkaSink": "never",
    "KinesisSink": "never",
    "MemorySink": "never",
    "MessageSink": "never",
    "MongoSink": "with mode='replace' or 'update' (keyed), or ignore_duplicates",
    "MqttSink": "never",
    "NatsJetStreamSink": "with msg_id_column (within the stream's duplicate window)",
    "NullSink": "always",
    "OpenSearchSink": "with id_column (and not action='create' unless on_conflict='ignore')",
    "PrintSink": "never",
    "PrometheusSink": "never",
    "PubSubSink": "never",
    "PulsarSink": "never",
    "RabbitMQSink": "never",
    "RedisSink": "with command hset, set, sadd, zadd or pfadd",
    "SearchSink": "with id_column (and not action='create' unless on_conflict='ignore')",
    "SocketSink": "never",
    "SqlSink": "with mode='upsert'",
    "TransactionalKafkaSink": "never",  # transactional instead
    "TwoPhaseSink": "never",
}


def test_every_sink_is_listed() -> None:
    names = set(subclasses_in_arrowflow(Sink))
    assert names == set(IDEMPOTENT), (
        f"unlisted: {sorted(names - set(IDEMPOTENT))}, gone: {sorted(set(IDEMPOTENT) - names)}"
    )


def test_sinks_listed_as_never_are_not_idempotent_by_class() -> None:
    for cls in subclasses_in_arrowflow(Sink).values():
        if IDEMPOTENT[cls.__name__] == "never":
            assert cls.idempotent is False, cls.__name__


def _sql(idempotent: bool) -> Sink:
    from arrowflow.connectors.sql import SqlSink

    uri = "postgresql://u@127.0.0.1:9/db"
    return SqlSink(uri, "t", mode="upsert", keys="id") if idempotent else SqlSink(uri, "t")


def _mongo(idempotent: bool) -> Sink:
    from arrowflow.connectors.mongodb import MongoSink

    uri = "mongodb://127.0.0.1:9/?directConnection=true"
    mode = "replace" if idempotent else "insert"
    return MongoSink(uri, "d", "c", mode=mode, keys="_id") if idempotent else MongoSink(uri, "d", "c")


def _redis(idempotent: bool) -> Sink:
    from arrowflow.connectors.redis_ import RedisSink

    url = "redis://127.0.0.1:9/0"
    if idempotent:
        return RedisSink(url, command="set", key_column="id")
    return RedisSink(url, command="xadd", key="stream")


def _search(flavor: str) -> Callable[[bool], Sink]:
    def make(idempotent: bool) -> Sink:
        if flavor == "opensearch":
            from arrowflow.connectors.search.opensearch import OpenSearchSink as cls
        else:
            from arrowflow.connectors.search.elasticsearch import ElasticsearchSink as cls  # type: ignore[assignment]
        return cls("http://127.0.0.1:9", "i", id_column="id" if idempotent else None)

    return make


def _dynamodb(idempotent: bool) -> Sink:
    from arrowflow.connectors.aws import DynamoDBSink

    aws = {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:9"}
    return DynamoDBSink(table_name="t", key_columns=("pk",), aws=aws)


def _cassandra(idempotent: bool) -> Sink:
    from arrowflow.connectors.cassandra import CassandraSink

    connection = {"hosts": ["127.0.0.1"], "port": 9}
    if idempotent:
        return CassandraSink(table="k.t", connection=connection)
    return CassandraSink(statement="UPDATE k.t SET n = n + 1 WHERE id = ?", connection=connection)


def _null(idempotent: bool) -> Sink:
    from arrowflow.connectors.null import NullSink

    return NullSink()


#: name -> a factory building the sink idempotent (True) or not (False; unused for "always").
BUILDERS: dict[str, Callable[[bool], Sink]] = {
    "SqlSink": _sql,
    "MongoSink": _mongo,
    "RedisSink": _redis,
    "OpenSearchSink": _search("opensearch"),
    "ElasticsearchSink": _search("elasticsearch"),
    "DynamoDBSink": _dynamodb,
    "CassandraSink": _cassandra,
    "NullSink": _null,
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_listed_idempotent_sinks_declare_it(name: str) -> None:
    build = BUILDERS[name]
    always = IDEMPOTENT[name].startswith("always")
    for idempotent in (True,) if always else (True, False):
        sink = build(idempotent)
        try:
            assert sink.idempotent is idempotent, (
                f"{name} built {'with' if idempotent else 'without'} the option"
            )
        finally:
            sink.close()


def test_the_list_covers_every_idempotent_sink() -> None:
    listed = {name for name, when in IDEMPOTENT.items() if when != "never"}
    # The base class SearchSink is listed for its subclasses; NATS is checked against its server.
    assert listed == set(BUILDERS) | {"SearchSink", "NatsJetStreamSink"}
