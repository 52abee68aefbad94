"""Helpers for the search integration suites: clients for both libraries, unique indices, a proxy.

The servers: osmem on 127.0.0.1:9200 (``tests/services/opensearch.sh``), or a real cluster when
``ARROWFLOW_ES_URL`` / ``ARROWFLOW_OPENSEARCH_URL`` is set (then the elasticsearch / opensearch-py
suite runs against that URL instead; the node-class fix below is only used against osmem).

``PlainMimeNode`` is the TEST-ONLY fix for elasticsearch-py 8/9 against osmem: the client always
sends ``application/vnd.elasticsearch+json; compatible-with=N``, which osmem (like real OpenSearch)
answers with HTTP 406; the node rewrites it to plain ``application/json`` / ``application/x-ndjson``.
It is deliberately not part of the library: real Elasticsearch expects the compatibility header.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from arrowflow.connectors.search import ELASTICSEARCH, Flavor

OSMEM_URL = "http://127.0.0.1:9200"
_COMPAT = re.compile(r"application/vnd\.elasticsearch\+([\w-]+); ?compatible-with=\d+")


def plain_mime_node() -> type:
    from elastic_transport import Urllib3HttpNode

    class PlainMimeNode(Urllib3HttpNode):  # type: ignore[misc]
        """Test-only: drop the ES compatibility media type that osmem refuses (406)."""

        def perform_request(self, method, target, body=None, headers=None, request_timeout=None):  # type: ignore[no-untyped-def]
            if headers:
                headers = headers.copy()
                for h in ("accept", "content-type"):
                    if h in headers:
                        headers[h] = _COMPAT.sub(r"application/\1", headers[h])
            return super().perform_request(
                method, target, body=body, headers=headers, request_timeout=request_timeout
            )

    return PlainMimeNode


def server_url(flavor: Flavor) -> str:
    env = "ARROWFLOW_ES_URL" if flavor is ELASTICSEARCH else "ARROWFLOW_OPENSEARCH_URL"
    return os.environ.get(env) or OSMEM_URL


def client_options(flavor: Flavor, url: str | None = None) -> dict[str, Any]:
    """Client options for ``flavor`` against ``url`` (the node-class fix only for osmem/proxies)."""
    real = os.environ.get("ARROWFLOW_ES_URL" if flavor is ELASTICSEARCH else "ARROWFLOW_OPENSEARCH_URL")
    options: dict[str, Any] = {}
    if flavor is ELASTICSEARCH and not (real and url in (None, real)):
        options["node_class"] = plain_mime_node()
    # The sink does its own retries: keep the clients' built-in retries out of the way.
    options["max_retries"] = 0
    return options


def admin(flavor: Flavor, method: str, path: str, body: Any = None, **params: Any) -> Any:
    """One request with a fresh client (index setup / teardown / checks)."""
    client = flavor.make_client(server_url(flavor), client_options(flavor))
    try:
        return flavor.request(client, method, path, params=params, body=body)
    finally:
        client.close()


def check_server(flavor: Flavor) -> str:
    url = server_url(flavor)
    try:
        admin(flavor, "GET", "/")
    except Exception as exc:
        pytest.fail(
            f"no search server at {url} ({exc}); start osmem with `sh tests/services/opensearch.sh start`",
            pytrace=False,
        )
    return url


def new_index(flavor: Flavor, mappings: dict[str, Any] | None = None) -> Iterator[str]:
    name = f"af-test-{uuid.uuid4().hex[:12]}"
    admin(flavor, "PUT", f"/{name}", body={"mappings": mappings} if mappings else {})
    try:
        yield name
    finally:
        try:
            admin(flavor, "DELETE", f"/{name}")
        except Exception:
            pass


def count(flavor: Flavor, index: str) -> int:
    admin(flavor, "POST", f"/{index}/_refresh")
    return int(admin(flavor, "GET", f"/{index}/_count")["count"])


class BulkProxy:
    """An HTTP proxy in front of the server that can rewrite ``_bulk`` answers or fail requests.

    ``rewrite(answer, attempt) -> answer`` sees each parsed ``_bulk`` answer (``attempt`` counts
    ``_bulk`` requests from 1); ``fail_first`` requests get ``status 503`` without reaching the server.
    """

    def __init__(
        self,
        upstream: str,
        rewrite: Callable[[dict[str, Any], int], dict[str, Any]] | None = None,
        *,
        fail_first: int = 0,
    ) -> None:
        host, port = upstream.removeprefix("http://").rstrip("/").split(":")
        self.bulk_requests = 0
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
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if is_bulk and rewrite is not None and resp.status == 200:
                    data = json.dumps(rewrite(json.loads(data), attempt)).encode()
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
