"""OpenSearch: the shared search connector (:mod:`arrowflow.connectors.search`) on
opensearch-py 2.x/3.x (``arrowflow[opensearch]``).

``OpenSearchSink(hosts, index=..., **options)`` takes the options of
:class:`~arrowflow.connectors.search.SearchSinkConfig` as keywords (or ``config=``);
``OpenSearchSource(hosts, index=..., **options)`` those of
:class:`~arrowflow.connectors.search.SearchSourceConfig`. Both take ``client=`` (an existing client,
not closed here) instead of ``hosts``, and ``client_options`` passed to the client constructor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...error_policy import ErrorPolicyLike
from ._client import OPENSEARCH
from .sink import SearchSink, SearchSinkConfig, sink_config
from .source import SearchSource, SearchSourceConfig

__all__ = ["OpenSearchSink", "OpenSearchSource"]


class OpenSearchSink(SearchSink):
    """Bulk writes to OpenSearch (at-least-once; idempotent with ids from the data)."""

    def __init__(
        self,
        hosts: Any = None,
        index: str | None = None,
        *,
        client: Any = None,
        client_options: Mapping[str, Any] | None = None,
        error_policy: ErrorPolicyLike = "fail",
        config: SearchSinkConfig | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            OPENSEARCH,
            sink_config(index, config=config, **options),
            hosts=hosts,
            client=client,
            client_options=client_options,
            error_policy=error_policy,
            name=name,
        )


class OpenSearchSource(SearchSource):
    """A bounded read of a OpenSearch index (``search_after`` pages, PIT slices)."""

    def __init__(
        self,
        hosts: Any = None,
        index: str | None = None,
        *,
        client: Any = None,
        client_options: Mapping[str, Any] | None = None,
        config: SearchSourceConfig | None = None,
        **options: Any,
    ) -> None:
        if config is None:
            config = SearchSourceConfig(index=index, **options)  # type: ignore[arg-type]
        super().__init__(OPENSEARCH, config, hosts=hosts, client=client, client_options=client_options)
