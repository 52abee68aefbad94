"""The conformance suite over the Elasticsearch/OpenSearch source and sink (osmem on 127.0.0.1:9200).

Sinks write the deterministic table with ``_id`` from ``id`` and are read back through the source;
the bad batch has text in the ``double`` field ``value`` (a mapping error for every row). Sources
read an index loaded through the sink; ``_id`` sorts as text, so rows are not in ``id`` order.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from arrowflow.connectors.search import ELASTICSEARCH, OPENSEARCH, Flavor
from arrowflow.connectors.search.elasticsearch import ElasticsearchSink, ElasticsearchSource
from arrowflow.connectors.search.opensearch import OpenSearchSink, OpenSearchSource
from arrowflow.sink import Sink
from arrowflow.source import Source
from arrowflow.testing import SinkConformance, SourceConformance, make_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "search"))
from search_helpers import admin, check_server, client_options, new_index, server_url

MAPPINGS = {"properties": {"value": {"type": "double"}, "ts": {"type": "date"}}}
SCHEMA = make_table(1).schema


class _Search:
    flavor: Flavor = OPENSEARCH
    sink_cls: Any = OpenSearchSink
    source_cls: Any = OpenSearchSource

    def new_index(self) -> str:
        check_server(self.flavor)
        gen = new_index(self.flavor, MAPPINGS)
        name = next(gen)
        self.add_cleanup(lambda: next(gen, None))  # type: ignore[attr-defined]
        return name

    def sink_for(self, index: str, **options: Any) -> Sink:
        url = server_url(self.flavor)
        return self.sink_cls(  # type: ignore[no-any-return]
            url,
            index,
            id_column="id",
            client_options=client_options(self.flavor, url),
            max_actions=300,
            **options,
        )

    def source_for(self, index: str, **options: Any) -> Source:
        url = server_url(self.flavor)
        return self.source_cls(  # type: ignore[no-any-return]
            url,
            index,
            schema=SCHEMA,
            id_column="id",
            client_options=client_options(self.flavor, url),
            **options,
        )


class _SinkSuite(_Search, SinkConformance):
    def make_sink(self, *, error_policy: Any = "fail") -> Sink:
        self._index = self.new_index()
        return self.sink_for(self._index, error_policy=error_policy, refresh="true")

    def read_back(self) -> pa.Table:
        admin(self.flavor, "POST", f"/{self._index}/_refresh")
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
            admin(self.flavor, "POST", f"/{self._index}/_refresh")
        return self.source_for(self._index, page_size=128, slices=self.slices)


class TestOpenSearchSink(_SinkSuite):
    pass


class TestElasticsearchSink(_SinkSuite):
    flavor = ELASTICSEARCH
    sink_cls = ElasticsearchSink
    source_cls = ElasticsearchSource


class TestOpenSearchSource(_SourceSuite):
    pass


class TestOpenSearchSlicedSource(_SourceSuite):
    slices = 3


class TestElasticsearchSource(_SourceSuite):
    flavor = ELASTICSEARCH
    sink_cls = ElasticsearchSink
    source_cls = ElasticsearchSource
