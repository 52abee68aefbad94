"""Confluent schema-registry wire framing and a small registry client over HTTP (urllib).

Framing: a payload is ``0x00`` (magic byte) + the schema id as a 4-byte big-endian integer + the
schemaless Avro body. :class:`SchemaRegistryClient` looks writer schemas up by id
(``GET /schemas/ids/{id}``) and registers schemas (``POST /subjects/{subject}/versions``), caching
both: a given id always means the same schema, so the cache never needs invalidating.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..config import Secret, check_non_negative, check_positive, check_type, reveal
from ..errors import ConfigurationError, ConnectorError

__all__ = ["MAGIC_BYTE", "ConfluentFraming", "SchemaNotFound", "SchemaRegistryClient"]

MAGIC_BYTE = 0
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaNotFound(ConnectorError, KeyError):
    """The registry has no schema with the requested id (HTTP 404)."""


@dataclass(frozen=True, kw_only=True)
class ConfluentFraming:
    """Frame encoded payloads as ``0x00`` + ``schema_id`` (4 bytes, big-endian) + body."""

    schema_id: int

    def __post_init__(self) -> None:
        check_type("schema_id", self.schema_id, int)
        check_non_negative("schema_id", self.schema_id)
        if self.schema_id > 0x7FFFFFFF:
            raise ConfigurationError("schema_id must fit in 4 bytes (signed)", option="schema_id")

    @property
    def header(self) -> bytes:
        """The 5 bytes written in front of every body."""
        return bytes([MAGIC_BYTE]) + self.schema_id.to_bytes(4, "big")


class SchemaRegistryClient:
    """A minimal, thread-safe Confluent schema-registry client with an id cache.

    ``url`` is the registry's base URL; ``username``/``password`` enable HTTP basic auth. Network
    and server errors raise :class:`ConnectorError` (``retryable`` for 5xx and connection errors);
    an unknown id raises :class:`SchemaNotFound`.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        username: str | None = None,
        password: str | Secret | None = None,
    ) -> None:
        check_type("url", url, str)
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"url must be an http(s) URL, got {url!r}", option="url")
        check_positive("timeout", timeout)
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._auth: str | None = None
        if username is not None:
            token = f"{username}:{reveal(password) or ''}".encode()
            self._auth = "Basic " + base64.b64encode(token).decode()
        self._by_id: dict[int, Any] = {}
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SchemaRegistryClient({self.url!r})"

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", _CONTENT_TYPE)
        if data is not None:
            req.add_header("Content-Type", _CONTENT_TYPE)
        if self._auth is not None:
            req.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise SchemaNotFound(f"schema registry {method} {path}: not found") from exc
            raise ConnectorError(
                f"schema registry {method} {path}: HTTP {exc.code}", retryable=exc.code >= 500
            ) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ConnectorError(f"schema registry {method} {path}: {exc}", retryable=True) from exc

    def get_schema(self, schema_id: int) -> Any:
        """The schema registered under ``schema_id``, as parsed JSON (cached)."""
        with self._lock:
            if schema_id in self._by_id:
                return self._by_id[schema_id]
        reply = self._request("GET", f"/schemas/ids/{int(schema_id)}")
        schema = json.loads(reply["schema"])
        with self._lock:
            self._by_id[schema_id] = schema
        return schema

    def register(self, subject: str, schema: Any) -> int:
        """Register ``schema`` under ``subject`` (idempotent on the registry) and return its id."""
        text = schema if isinstance(schema, str) else json.dumps(schema, sort_keys=True)
        key = (subject, text)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        reply = self._request(
            "POST", f"/subjects/{urllib.parse.quote(subject, safe='')}/versions", {"schema": text}
        )
        schema_id = int(reply["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._by_id.setdefault(schema_id, json.loads(text))
        return schema_id

    def __call__(self, schema_id: int) -> Any:
        return self.get_schema(schema_id)
