"""Helpers for the search integration suites: test targets, unique indices, a rejecting proxy.

A *target* is one client library against one server (``TARGETS``):

* ``opensearch``: opensearch-py against the real OpenSearch 2.19 node (``tests/services/opensearch.sh``,
  127.0.0.1:$OPENSEARCH_PORT, default 9200);
* ``elasticsearch``: elasticsearch-py against the real Elasticsearch 9.2 node
  (``tests/services/elasticsearch.sh``, 127.0.0.1:$ELASTICSEARCH_PORT, default 9201);
* ``elasticsearch-on-opensearch``: elasticsearch-py against the OpenSearch node through the
  test-only node class below (the compatibility note of :mod:`arrowflow.connectors.search`).

``ARROWFLOW_ES_URL`` / ``ARROWFLOW_OPENSEARCH_URL`` point the targets of one server at another cluster.

``plain_mime_node`` is the TEST-ONLY bridge from elasticsearch-py 8/9 to OpenSearch, for two checks
the client makes that OpenSearch fails by design:

* the client always sends ``application/vnd.elasticsearch+json; compatible-with=N``, which
  OpenSearch answers with HTTP 406: the node rewrites it to plain ``application/json`` /
  ``application/x-ndjson``;
* the client refuses any 2xx answer without ``X-Elastic-Product: Elasticsearch``
  (``UnsupportedProductError``), which OpenSearch never sends: the node adds it to the answer.

It is deliberately not part of the library: real Elasticsearch expects the compatibility header,
and arrowflow's users talk to OpenSearch with opensearch-py.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from arrowflow.connectors.search import ELASTICSEARCH, OPENSEARCH, Flavor

_COMPAT = re.compile(r"application/vnd\.elasticsearch\+([\w-]+); ?compatible-with=\d+")


def plain_mime_node() -> type:
    from elastic_transport import Urllib3HttpNode

    class PlainMimeNode(Urllib3HttpNode):  # type: ignore[misc]
        """Test-only: elasticsearch-py against OpenSearch (see the module docstring)."""

        def perform_request(self, method, target, body=None, headers=None, request_timeout=None):  # type: ignore[no-untyped-def]
            if headers:
                headers = headers.copy()
                for h in ("accept", "content-type"):
                    if h in headers:
                        headers[h] = _COMPAT.sub(r"application/\1", headers[h])
            response = super().perform_request(
                method, target, body=body, headers=headers, request_timeout=request_timeout
            )
            response.meta.headers.setdefault("x-elastic-product", "Elasticsearch")
            return response

    return PlainMimeNode


@dataclass(frozen=True)
class Target:
    """One client library (``flavor``) against one server (``server``: opensearch | elasticsearch)."""

    name: str
    flavor: Flavor
    server: str
    url_env: str
    port_env: str
    default_port: int

    @property
    def url(self) -> str:
        port = os.environ.get(self.port_env, str(self.default_port))
        return os.environ.get(self.url_env) or f"http://127.0.0.1:{port}"

    @property
    def rejection(self) -> str:
        """The error type of a bulk item the server's write queue refused (status 429)."""
        # OpenSearchRejectedExecutionException / EsRejectedExecutionException, as each server names it.
        return (
            "es_rejected_execution_exception"
            if self.server == "elasticsearch"
            else "rejected_execution_exception"
        )

    @property
    def mapping_error(self) -> str:
        """The error type the server gives a document whose field does not fit its mapping."""
        return "document_parsing_exception" if self.server == "elasticsearch" else "mapper_parsing_exception"

    def client_options(self) -> dict[str, Any]:
        """Options for the client (also for one that goes through a proxy in front of the server)."""
        options: dict[str, Any] = {}
        if self.flavor is ELASTICSEARCH and self.server == "opensearch":
            options["node_class"] = plain_mime_node()
        # The sink does its own retries: keep the clients' built-in retries out of the way.
        options["max_retries"] = 0
        return options


TARGETS = {
    t.name: t
    for t in (
        Target("opensearch", OPENSEARCH, "opensearch", "ARROWFLOW_OPENSEARCH_URL", "OPENSEARCH_PORT", 9200),
        Target(
            "elasticsearch", ELASTICSEARCH, "elasticsearch", "ARROWFLOW_ES_URL", "ELASTICSEARCH_PORT", 9201
        ),
        Target(
            "elasticsearch-on-opensearch",
            ELASTICSEARCH,
            "opensearch",
            "ARROWFLOW_OPENSEARCH_URL",
            "OPENSEARCH_PORT",
            9200,
        ),
    )
}
#: The targets that talk to each server with its own client (crash and conformance suites).
NATIVE = ("elasticsearch", "opensearch")


def admin(target: Target, method: str, path: str, body: Any = None, **params: Any) -> Any:
    """One request with a fresh client (index setup / teardown / checks)."""
    client = target.flavor.make_client(target.url, target.client_options())
    try:
        return target.flavor.request(client, method, path, params=params, body=body)
    finally:
        client.close()


def check_server(target: Target) -> str:
    """``target.url`` once its server answers; FAILS the test (never skips) when it does not."""
    try:
        admin(target, "GET", "/_cluster/health")
    except Exception as exc:
        pytest.fail(
            f"no {target.server} at {target.url} ({exc}); start it with "
            f"`sh tests/services/up.sh {target.server}`",
            pytrace=False,
        )
    return target.url


def new_index(target: Target, mappings: dict[str, Any] | None = None) -> Iterator[str]:
    name = f"af-test-{uuid.uuid4().hex[:12]}"
    admin(target, "PUT", f"/{name}", body={"mappings": mappings} if mappings else {})
    try:
        yield name
    finally:
        try:
            admin(target, "DELETE", f"/{name}")
        except Exception:
            pass


def count(target: Target, index: str) -> int:
    admin(target, "POST", f"/{index}/_refresh")
    return int(admin(target, "GET", f"/{index}/_count")["count"])


def _bulk_actions(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """Split a ``_bulk`` body into ``(action metadata, its lines)``; ``delete`` has no source line."""
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    actions: list[tuple[dict[str, Any], bytes]] = []
    i = 0
    while i < len(lines):
        ((op, meta),) = json.loads(lines[i]).items()
        n = 1 if op == "delete" else 2
        actions.append(({"op": op, **meta}, b"\n".join(lines[i : i + n]) + b"\n"))
        i += n
    return actions


def _rejected_item(meta: dict[str, Any], etype: str) -> dict[str, Any]:
    """The item a node answers for an action its write queue refused (what the sink must resend)."""
    return {
        meta["op"]: {
            "_index": meta.get("_index"),
            "_id": meta.get("_id"),
            "status": 429,
            "error": {"type": etype, "reason": "injected: queue full"},
        }
    }


class BulkProxy:
    """An HTTP proxy in front of the server that rejects ``_bulk`` items or fails whole requests.

    ``reject(attempt, n) -> positions`` is asked for each ``_bulk`` request (``attempt`` counts them
    from 1, ``n`` is its number of actions): the actions at those positions are REMOVED from the body
    forwarded to the server and answered as status 429 items of type ``rejection`` (name it as the
    server behind the proxy does), merged into the server's answer in their places. Like a node
    whose write queue is full, the rejected documents are not written: only a resend by the sink can
    get them into the index. ``fail_first`` requests get ``status 503`` without reaching the server.
    ``rejected`` counts the items rejected so far.
    """

    def __init__(
        self,
        upstream: str,
        reject: Callable[[int, int], set[int]] | None = None,
        *,
        rejection: str = "es_rejected_execution_exception",
        fail_first: int = 0,
    ) -> None:
        host, port = upstream.removeprefix("http://").rstrip("/").split(":")
        self.bulk_requests = 0
        self.rejected = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                is_bulk = self.path.split("?")[0].endswith("/_bulk")
                attempt = 0
                if is_bulk:
                    with proxy.lock:
                        proxy.bulk_requests += 1
                        attempt = proxy.bulk_requests
                    if attempt <= fail_first:
                        self._reply(503, b'{"error":"injected","status":503}')
                        return
                actions: list[tuple[dict[str, Any], bytes]] = []
                dropped: set[int] = set()
                if is_bulk and reject is not None and body:
                    actions = _bulk_actions(body)
                    dropped = reject(attempt, len(actions)) & set(range(len(actions)))
                    with proxy.lock:
                        proxy.rejected += len(dropped)
                    body = b"".join(lines for i, (_, lines) in enumerate(actions) if i not in dropped)
                    if not body:  # every action rejected: nothing reaches the server
                        items = [_rejected_item(meta, rejection) for meta, _ in actions]
                        self._reply(200, json.dumps({"took": 0, "errors": True, "items": items}).encode())
                        return
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "connection", "content-length")
                }
                if body is not None:
                    headers["content-length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if dropped and resp.status == 200:
                    answer = json.loads(data)
                    served = iter(answer["items"])
                    answer["items"] = [
                        _rejected_item(meta, rejection) if i in dropped else next(served)
                        for i, (meta, _) in enumerate(actions)
                    ]
                    answer["errors"] = True
                    data = json.dumps(answer).encode()
                # Pass the server's headers on (elasticsearch-py checks X-Elastic-Product).
                extra = [
                    (k, v)
                    for k, v in resp.getheaders()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-type")
                ]
                self._reply(resp.status, data, extra)

            def _reply(self, status: int, data: bytes, extra: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
                self.send_response(status)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> BulkProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
