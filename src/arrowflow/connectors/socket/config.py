"""The options of :class:`~.source.SocketSource` and :class:`~.sink.SocketSink`, checked in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ...config import check_choice, check_non_negative, check_positive, check_type
from ...error_policy import ErrorPolicy, ErrorPolicyLike
from ...errors import ConfigurationError

UTF8_NAMES = ("utf-8", "utf8", "UTF-8", "UTF8")


def _check_endpoint(host: str, port: int) -> None:
    check_type("host", host, str)
    if not host:
        raise ConfigurationError("host must not be empty", option="host")
    check_type("port", port, int)
    if isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigurationError(f"port must be in 1..65535, got {port!r}", option="port")


def _check_delimiter(delimiter: bytes) -> None:
    check_type("delimiter", delimiter, bytes)
    if not delimiter:
        raise ConfigurationError("delimiter must not be empty", option="delimiter")


@dataclass(frozen=True, kw_only=True)
class SocketSourceConfig:
    """Options of :class:`SocketSource`; see the module docstring for their meaning."""

    host: str
    port: int
    column: str = "line"
    encoding: str | None = "utf-8"
    delimiter: bytes = b"\n"
    max_rows: int = 65536
    linger: float = 0.05
    max_line_bytes: int = 1 << 20
    bounded: bool = False
    reconnect_retries: int = 10
    reconnect_delay: float = 1.0
    recv_size: int = 1 << 20
    format: Any = None
    schema: pa.Schema | None = None
    error_policy: ErrorPolicyLike = "fail"

    def __post_init__(self) -> None:
        _check_endpoint(self.host, self.port)
        check_type("column", self.column, str)
        if self.encoding is not None:
            check_choice("encoding", self.encoding, (*UTF8_NAMES, None))
        _check_delimiter(self.delimiter)
        for name in ("max_rows", "max_line_bytes", "recv_size"):
            check_type(name, getattr(self, name), int)
            check_positive(name, getattr(self, name))
        check_non_negative("linger", self.linger)
        check_type("bounded", self.bounded, bool)
        check_type("reconnect_retries", self.reconnect_retries, int)
        check_non_negative("reconnect_retries", self.reconnect_retries)
        check_non_negative("reconnect_delay", self.reconnect_delay)
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        if self.format is not None and not hasattr(self.format, "decode"):
            raise ConfigurationError(
                "format must be an arrowflow.formats format (with a decode() method)", option="format"
            )
        ErrorPolicy.resolve(self.error_policy)


SINK_FORMATS = ("ndjson", "csv", "lines")


@dataclass(frozen=True, kw_only=True)
class SocketSinkConfig:
    """Options of :class:`SocketSink`; see the module docstring for their meaning."""

    host: str
    port: int
    format: Any = "ndjson"
    column: str | None = None
    delimiter: bytes = b"\n"
    reconnect_retries: int = 3
    reconnect_delay: float = 0.5
    connect_timeout: float = 5.0
    send_timeout: float = 30.0
    error_policy: ErrorPolicyLike = "fail"

    def __post_init__(self) -> None:
        _check_endpoint(self.host, self.port)
        if isinstance(self.format, str):
            check_choice("format", self.format, SINK_FORMATS)
        elif not hasattr(self.format, "encode"):
            raise ConfigurationError(
                "format must be 'ndjson', 'csv', 'lines' or an arrowflow.formats format", option="format"
            )
        check_type("column", self.column, str, allow_none=True)
        _check_delimiter(self.delimiter)
        check_type("reconnect_retries", self.reconnect_retries, int)
        check_non_negative("reconnect_retries", self.reconnect_retries)
        check_non_negative("reconnect_delay", self.reconnect_delay)
        check_positive("connect_timeout", self.connect_timeout)
        check_positive("send_timeout", self.send_timeout)
        ErrorPolicy.resolve(self.error_policy)
