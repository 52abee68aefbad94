"""The options of :class:`~.sink.FlumeSink` (:class:`FlumeSinkConfig`), checked in one place, and its
default batching.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ...config import check_choice, check_positive, check_type
from ...errors import ConfigurationError
from ...writer import BatchingConfig

__all__ = ["FLUME_BATCHING", "FlumeSinkConfig", "default_batching"]

PROTOCOLS = ("http", "avro")
BODY_ENCODINGS = ("utf8", "base64")


#: Flume's ``batchSize`` (100 events per request), one request in flight, 1 s in the buffer,
#: 0.1 s -> 5 s backoff, 10 attempts; no byte limit (the agent's channel bounds a request).
FLUME_BATCHING = BatchingConfig(
    max_request_rows=100, max_request_bytes=None, max_in_flight=1, max_time_in_buffer=1.0, initial_backoff=0.1
)


def default_batching() -> BatchingConfig:
    """0.1.0's accessor of :data:`FLUME_BATCHING`."""
    return FLUME_BATCHING


@dataclass(frozen=True, kw_only=True)
class FlumeSinkConfig:
    """Where to send events and how rows map onto them (see the module docstring).

    * ``protocol``: ``"http"`` (Flume HTTPSource + JSONHandler) or ``"avro"`` (Flume AvroSource).
    * ``address``: ``http://host:port[/path]`` for ``"http"``; ``host:port`` for ``"avro"``.
    * ``body_column``: string/binary column; ``None`` = a JSON object of the non-header columns.
    * ``body_encoding``: how a *binary* body is put into the JSON string (``"http"`` only):
      ``"utf8"`` or ``"base64"``.
    * ``header_columns``: columns that become headers: a sequence (header = column name) or a
      mapping ``{header_name: column_name}``. ``headers_column``: a ``map<string, string>`` column.
      ``static_headers``: headers on every event.
    * ``batching``: :data:`FLUME_BATCHING`. ``request_timeout``: seconds to wait for an answer;
      ``connect_timeout``: seconds to connect (Flume's RPC client defaults are 20 s each).
    """

    protocol: str = "http"
    address: str
    body_column: str | None = "body"
    body_encoding: str = "utf8"
    header_columns: Sequence[str] | Mapping[str, str] = ()
    headers_column: str | None = None
    static_headers: Mapping[str, str] = field(default_factory=dict)
    batching: BatchingConfig = FLUME_BATCHING
    request_timeout: float = 20.0
    connect_timeout: float = 20.0

    def __post_init__(self) -> None:
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_type("address", self.address, str)
        if self.protocol == "http":
            parsed = urllib.parse.urlsplit(self.address)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ConfigurationError(
                    f"address must be an http(s) URL for protocol='http', got {self.address!r}",
                    option="address",
                )
        else:
            split_host_port(self.address)
        check_type("body_column", self.body_column, str, allow_none=True)
        check_choice("body_encoding", self.body_encoding, BODY_ENCODINGS)
        check_type("header_columns", self.header_columns, (list, tuple, Mapping))
        for name, column in self.header_map.items():
            check_type("header_columns", name, str)
            check_type("header_columns", column, str)
            if column == self.body_column:
                raise ConfigurationError(
                    f"header_columns: {column!r} is also the body column", option="header_columns"
                )
        check_type("headers_column", self.headers_column, str, allow_none=True)
        check_type("static_headers", self.static_headers, Mapping)
        object.__setattr__(self, "static_headers", dict(self.static_headers))
        for name, value in self.static_headers.items():
            check_type("static_headers", name, str)
            check_type("static_headers", value, str)
            if name in self.header_map:
                raise ConfigurationError(
                    f"static_headers: {name!r} is also in header_columns", option="static_headers"
                )
        check_type("batching", self.batching, BatchingConfig)
        check_positive("request_timeout", self.request_timeout)
        check_positive("connect_timeout", self.connect_timeout)

    @property
    def header_map(self) -> dict[str, str]:
        """``{header_name: column_name}`` of ``header_columns``."""
        if isinstance(self.header_columns, Mapping):
            return dict(self.header_columns)
        return {c: c for c in self.header_columns}


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.removeprefix("avro://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(
            f"address must be host:port for protocol='avro', got {address!r}", option="address"
        )
    return host.strip("[]"), int(port)
