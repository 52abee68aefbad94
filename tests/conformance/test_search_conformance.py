"""The conformance suite over the Elasticsearch/OpenSearch sources and sinks, each client against its own
real server (OpenSearch 2.19 for opensearch-py, Elasticsearch 9.2 for elasticsearch-py; ``search_helpers``).

Sinks write the deterministic table with ``_id`` from ``id`` and are read back through the source;
the bad batch has text in the ``double`` field ``value`` (a mapping error for every row). Sources
read an index loaded through the sink; ``_id`` sorts as text, so rows are not in ``id`` order.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from arrowflow.connectors.search.elasticsearch import ElasticsearchSink, ElasticsearchSource
from arrowflow.connectors.search.opensearch import OpenSearchSink, OpenSearchSource
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "search"))
from search_helpers import TARGETS, Target, admin, check_server, new_index

MAPPINGS = {"properties": {"value": {"type": "double"}, "ts": {"type": "date"}}}
SCHEMA = make_table(1).schema


class _Search:
    target: Target = TARGETS["opensearch"]
    sink_cls: Any = OpenSearchSink
    source_cls: Any = OpenSearchSource

    def new_index(self) -> str:
        check_server(self.target)
        gen = new_index(self.target, MAPPINGS)
        name = next(gen)
        self.add_cleanup(lambda: next(gen, None))  # type: ignore[attr-defined]
        return name

    def sink_for(self, index: str, **options: Any) -> Sink:
        return self.sink_cls(  # type: ignore[no-any-return]
            self.target.url,
            index,
            id_column="id",
            client_options=self.target.client_options(),
            max_actions=300,
            **options,
        )

    def source_for(self, index: str, **options: Any) -> Source:
        return self.source_cls(  # type: ignore[no-any-return]
            self.target.url,
            index,
            schema=SCHEMA,
            id_column="id",
            client_options=self.target.client_options(),
            **options,
        )


class _SinkSuite(_Search, SinkConformance):
    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self._index = self.new_index()
        return self.sink_for(self._index, error_policy=error_policy, refresh="true")

    def read_back(self) -> pa.Table:
        admin(self.target, "POST", f"/{self._index}/_refresh")
        return self.source_for(self._index).read_all()

    def bad_batch(self) -> pa.RecordBatch:
        bad = make_table(5, seed=3)
        ids = pa.array([10_001, 10_002, 10_003, 10_004, 10_005], pa.int64())
        bad = bad.set_column(0, "id", ids).set_column(1, "value", pa.array(["not-a-number"] * 5))
        return bad.to_batches()[0]


class _SourceSuite(_Search, SourceConformance):
    ordered_per_split = False
    slices = 1

    def make_source(self, data: pa.Table) -> Source:
        if not hasattr(self, "_index"):
            self._index = self.new_index()
            sink = self.sink_for(self._index)
            sink.write_table(data)
            sink.close()
            admin(self.target, "POST", f"/{self._index}/_refresh")
        return self.source_for(self._index, page_size=128, slices=self.slices)


class TestOpenSearchSink(_SinkSuite):
    pass


class TestElasticsearchSink(_SinkSuite):
    target = TARGETS["elasticsearch"]
    sink_cls = ElasticsearchSink
    source_cls = ElasticsearchSource


class TestOpenSearchSource(_SourceSuite):
    pass


class TestOpenSearchSlicedSource(_SourceSuite):
    slices = 3


class TestElasticsearchSource(_SourceSuite):
    target = TARGETS["elasticsearch"]
    sink_cls = ElasticsearchSink
    source_cls = ElasticsearchSource
