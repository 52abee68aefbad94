"""OpenSearch: the search connector (:mod:`arrowflow.connectors.search`) on opensearch-py 2.x/3.x
(``arrowflow[opensearch]``). Options: :class:`~.config.SearchSinkConfig` and
:class:`~.config.SearchSourceConfig`, as keywords."""

from __future__ import annotations

from ._client import OPENSEARCH
from .sink import SearchSink
from .source import SearchSource

__all__ = ["OpenSearchSink", "OpenSearchSource"]


class OpenSearchSink(SearchSink):
    """Bulk writes to OpenSearch (at-least-once; idempotent with ids from the data)."""

    flavor = OPENSEARCH


class OpenSearchSource(SearchSource):
    """A bounded read of an OpenSearch index (``search_after`` pages, PIT slices)."""

    flavor = OPENSEARCH
