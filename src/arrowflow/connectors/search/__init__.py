"""Elasticsearch and OpenSearch: one shared implementation, two thin connectors.

* :class:`~arrowflow.connectors.search.elasticsearch.ElasticsearchSink` /
  :class:`~arrowflow.connectors.search.opensearch.OpenSearchSink`: ``_bulk`` writes on
  :class:`~arrowflow.writer.AsyncBatchWriter`, bodies built by the compiled kernel
  :mod:`arrowflow._ext.bulk` (see :mod:`.sink` for retries, per-item errors and guarantees).
* :class:`~arrowflow.connectors.search.elasticsearch.ElasticsearchSource` /
  :class:`~arrowflow.connectors.search.opensearch.OpenSearchSource`: a bounded read with a query,
  ``search_after`` paging, one split per PIT slice (see :mod:`.source`).

Clients: ``elasticsearch`` 8.x/9.x (extra ``arrowflow[elasticsearch]``) and ``opensearch-py``
(``arrowflow[opensearch]``), imported only when a client is created. ``client_options`` pass through
to the client constructor (authentication: ``basic_auth``/``api_key``/``http_auth``; TLS:
``ca_certs``, ``verify_certs``, ``client_cert``, ...), or pass a ready ``client=``.

Compatibility note: elasticsearch-py 8/9 cannot talk to OpenSearch as they are. They send
``application/vnd.elasticsearch+json; compatible-with=N``, which OpenSearch answers with HTTP 406,
and they refuse every answer without ``X-Elastic-Product: Elasticsearch`` (``UnsupportedProductError``),
which OpenSearch never sends. arrowflow does not rewrite headers (real Elasticsearch wants them):
use ``opensearch-py`` (:mod:`.opensearch`) against OpenSearch. arrowflow's tests also run
elasticsearch-py against OpenSearch through a test-only ``node_class`` that rewrites both
(``tests/integration/search/search_helpers.py``).
"""

from __future__ import annotations

from ._client import ELASTICSEARCH, OPENSEARCH, Flavor
from .config import SearchSinkConfig, SearchSourceConfig
from .sink import SearchSink, item_outcomes
from .source import SearchSource, hits_to_batch

__all__ = [
    "ELASTICSEARCH",
    "OPENSEARCH",
    "Flavor",
    "SearchSink",
    "SearchSinkConfig",
    "SearchSource",
    "SearchSourceConfig",
    "hits_to_batch",
    "item_outcomes",
]
