"""The two client libraries behind one small interface (``Flavor``): create a client, send a request.

Only this module knows the difference between ``elasticsearch`` (8.x/9.x) and ``opensearch-py``:

* Elasticsearch: ``Elasticsearch(hosts, **client_options)``; requests through
  ``client.perform_request`` (the client rewrites ``content-type``/``accept`` into its compatibility
  media type ``application/vnd.elasticsearch+json; compatible-with=N``, which real Elasticsearch
  wants and OpenSearch refuses with 406; see the package docstring).
* OpenSearch: ``OpenSearch(hosts, **client_options)``; requests through ``client.transport``.

Both clients are imported lazily, when a client is created, so importing arrowflow imports neither.
Errors of a whole request are turned into :class:`~arrowflow.errors.ConnectorError` with
``retryable`` set (connection failures, timeouts, 429 and 5xx are retryable; other statuses are not).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import ConfigurationError, ConnectorError
from ...retry import RETRYABLE_HTTP_STATUS, default_classify, http_status

__all__ = ["ELASTICSEARCH", "OPENSEARCH", "RETRYABLE_STATUS", "Flavor", "is_retryable_exception"]

#: HTTP statuses of a whole request (or of one bulk item) worth retrying.
RETRYABLE_STATUS = RETRYABLE_HTTP_STATUS


def is_retryable_exception(exc: BaseException) -> bool:
    """True for failures of a whole request that may pass if sent again: what
    :func:`~arrowflow.retry.default_classify` retries, and the clients' own network failures (both
    name them ``ConnectionError`` / ``ConnectionTimeout``, and neither is an ``OSError``)."""
    if default_classify(exc):
        return True
    if isinstance(exc, ConnectorError) or http_status(exc) is not None:
        return False
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectionError", "ConnectionTimeout"})


class Flavor:
    """How to talk to one client library. Instances are module constants; they hold no state."""

    def __init__(self, name: str, module: str, cls: str, extra: str) -> None:
        self.name = name
        self.module = module
        self.cls = cls
        self.extra = extra

    def make_client(self, hosts: Any, options: Mapping[str, Any]) -> Any:
        """A new client for ``hosts`` with pass-through ``options`` (auth, TLS, timeouts, node_class)."""
        import importlib

        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            raise ConfigurationError(
                f"the {self.name} connector needs the {self.module!r} package: "
                f"pip install 'arrowflow[{self.extra}]'",
                option="hosts",
            ) from exc
        return getattr(module, self.cls)(hosts, **dict(options))

    def request(
        self,
        client: Any,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        ndjson: bool = False,
    ) -> dict[str, Any]:
        """Send one request; return the parsed JSON answer. Raises the client's exceptions."""
        content_type = "application/x-ndjson" if ndjson else "application/json"
        if self is ELASTICSEARCH:
            headers = {"accept": "application/json"}
            if body is not None:
                headers["content-type"] = content_type
            response = client.perform_request(
                method, path, params=dict(params or {}), headers=headers, body=body
            )
            return response.body  # type: ignore[no-any-return]
        headers = {"content-type": content_type} if body is not None else {}
        result = client.transport.perform_request(
            method, path, params=dict(params or {}), headers=headers, body=body
        )
        return result  # type: ignore[no-any-return]

    def open_pit(self, client: Any, index: str, keep_alive: str) -> str:
        """Open a point in time over ``index``; returns its id."""
        if self is ELASTICSEARCH:
            answer = self.request(client, "POST", f"/{index}/_pit", params={"keep_alive": keep_alive})
            return str(answer["id"])
        answer = self.request(
            client, "POST", f"/{index}/_search/point_in_time", params={"keep_alive": keep_alive}
        )
        return str(answer["pit_id"])

    def close_pit(self, client: Any, pit_id: str) -> None:
        if self is ELASTICSEARCH:
            self.request(client, "DELETE", "/_pit", body={"id": pit_id})
        else:
            self.request(client, "DELETE", "/_search/point_in_time", body={"pit_id": [pit_id]})

    def __repr__(self) -> str:
        return f"Flavor({self.name!r})"


ELASTICSEARCH = Flavor("elasticsearch", "elasticsearch", "Elasticsearch", "elasticsearch")
OPENSEARCH = Flavor("opensearch", "opensearchpy", "OpenSearch", "opensearch")
