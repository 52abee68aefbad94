""":func:`kafka_sink`: the Kafka sink class a guarantee asks for, for callers that hold the guarantee as
a value (a YAML file, a command line option, a job spec).

``KafkaSink`` writes at-least-once (or ``"none"``), ``TransactionalKafkaSink`` exactly-once; each is
constructed explicitly and refuses the other's guarantee. 0.1.0's ``KafkaSink(...,
guarantee="exactly-once")`` returned a ``TransactionalKafkaSink`` from ``KafkaSink.__new__``; this
function is that one entry point, spelled out.
"""

from __future__ import annotations

from typing import Any, Literal, overload

from ...config import REQUIRED
from .config import KafkaSinkConfig
from .sink import KafkaSink
from .transactional import TransactionalKafkaSink

__all__ = ["kafka_sink"]


@overload
def kafka_sink(
    bootstrap_servers: str = ..., *, guarantee: Literal["exactly-once"], **options: Any
) -> TransactionalKafkaSink: ...


@overload
def kafka_sink(bootstrap_servers: str = ..., *, guarantee: str | None = ..., **options: Any) -> KafkaSink: ...


def kafka_sink(
    bootstrap_servers: str = REQUIRED, *, guarantee: str | None = None, **options: Any
) -> KafkaSink:
    """A :class:`~arrowflow.connectors.kafka.TransactionalKafkaSink` for ``guarantee="exactly-once"``,
    otherwise a :class:`~arrowflow.connectors.kafka.KafkaSink`, built with ``options`` (any option of
    :class:`~arrowflow.connectors.kafka.KafkaSinkConfig`, or ``config=`` a whole one).

    ``guarantee``: ``"at-least-once"``, ``"exactly-once"`` or ``"none"``; left out, the guarantee of
    ``config=`` (a ``KafkaSinkConfig``), else ``"at-least-once"``. Another value is a
    :class:`~arrowflow.errors.ConfigurationError` naming ``guarantee``, as is a guarantee given next
    to a ``config=`` that says otherwise. YAML's ``sink: {type: kafka, ...}`` is built by this function.
    """
    config = options.get("config")
    if guarantee is not None:
        options["guarantee"] = guarantee
    elif isinstance(config, KafkaSinkConfig):
        guarantee = config.guarantee
    cls = TransactionalKafkaSink if guarantee == "exactly-once" else KafkaSink
    return cls(bootstrap_servers, **options)
