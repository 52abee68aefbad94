"""arrowflow's benchmarks: ``python -m benchmarks`` (see benchmarks/README.md).

Not tests and not part of the installed package. Each workload family is one module that registers
its :class:`benchmarks.core.Workload` at import time; :data:`WORKLOAD_MODULES` lists them in the
order the table shows them. Add a module there to add a family.
"""

from __future__ import annotations

import importlib

__all__ = ["WORKLOAD_MODULES", "load_workloads"]

#: Workload family modules, imported in this order by :func:`load_workloads`.
WORKLOAD_MODULES = [
    "benchmarks.murmur2_partition",
    "benchmarks.json_rows",
    "benchmarks.avro",
    "benchmarks.bulk",
    "benchmarks.pipeline_overhead",
    "benchmarks.pipeline_ops",
    "benchmarks.windows",
    "benchmarks.enrich",
    "benchmarks.filesystem",
    "benchmarks.kafka",
    "benchmarks.kafka_parallel",
    "benchmarks.datagen",
    "benchmarks.sql",
    "benchmarks.mongodb",
    "benchmarks.prometheus",
    "benchmarks.push",
    "benchmarks.brokers_cloud",
    "benchmarks.brokers_light",
    "benchmarks.brokers_amqp",
    "benchmarks.ray_scaling",
    "benchmarks.aws",
    "benchmarks.cassandra",
]


def load_workloads() -> None:
    """Import every workload module (each registers itself); idempotent."""
    for name in WORKLOAD_MODULES:
        importlib.import_module(name)
