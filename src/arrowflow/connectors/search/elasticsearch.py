"""Elasticsearch: the search connector (:mod:`arrowflow.connectors.search`) on elasticsearch-py 8.x/9.x
(``arrowflow[elasticsearch]``). Options: :class:`~.config.SearchSinkConfig` and
:class:`~.config.SearchSourceConfig`, as keywords."""

from __future__ import annotations

from ._client import ELASTICSEARCH
from .sink import SearchSink
from .source import SearchSource

__all__ = ["ElasticsearchSink", "ElasticsearchSource"]


class ElasticsearchSink(SearchSink):
    """Bulk writes to Elasticsearch (at-least-once; idempotent with ids from the data)."""

    flavor = ELASTICSEARCH


class ElasticsearchSource(SearchSource):
    """A bounded read of an Elasticsearch index (``search_after`` pages, PIT slices)."""

    flavor = ELASTICSEARCH
