"""The push sources' options, checked in one place: the listener options both share
(:class:`PushListenerConfig`), each source's own (:class:`TcpPushSourceConfig`,
:class:`HttpPushSourceConfig`), and the server-side TLS context made of ``tls_cert``/``tls_key``.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ...config import Secret, check_choice, check_non_negative, check_positive, check_type
from ...errors import ConfigurationError
from ...formats.base import Format

__all__ = ["HttpPushSourceConfig", "PushListenerConfig", "TcpPushSourceConfig", "server_tls_context"]


def _check_timeout(option: str, value: float | None) -> float | None:
    """A timeout option: a positive number of seconds, or None for no limit."""
    check_positive(option, value, allow_none=True)
    return None if value is None else float(value)


def server_tls_context(
    tls_cert: str | os.PathLike[str] | None, tls_key: str | os.PathLike[str] | None
) -> ssl.SSLContext | None:
    """The server-side TLS context of a certificate chain and its key (PEM paths), or None for
    neither; raises :class:`ConfigurationError` naming the option when only one is given, a file is
    missing, or they do not load as a certificate and its key."""
    if tls_cert is None and tls_key is None:
        return None
    if tls_cert is None or tls_key is None:
        missing = "tls_cert" if tls_cert is None else "tls_key"
        raise ConfigurationError("tls_cert and tls_key go together: give both or neither", option=missing)
    for option, value in (("tls_cert", tls_cert), ("tls_key", tls_key)):
        check_type(option, value, (str, os.PathLike))
        if not os.path.isfile(value):
            raise ConfigurationError(f"{option}: no such file {os.fspath(value)!r}", option=option)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(os.fspath(tls_cert), os.fspath(tls_key))  # type: ignore[arg-type]
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigurationError(
            f"tls_cert/tls_key do not load as a PEM certificate chain and its private key: {exc}",
            option="tls_cert",
        ) from None
    return ctx


@dataclass(frozen=True, kw_only=True)
class PushListenerConfig:
    """The listener options of :class:`~.tcp.TcpPushSource` and :class:`~.http.HttpPushSource` (the
    constructors mirror them, with per-source defaults); checked at construction, naming the option."""

    host: str = "127.0.0.1"
    """The address to listen on."""
    port: int = 0
    """The port to listen on (0: a free one; the source's ``address`` tells which)."""
    capacity: int = 100_000
    """Rows the buffer holds before clients are pushed back."""
    header_timeout: float | None
    """Seconds for a request's line and headers (HTTP) or between frames (TCP), and the TLS handshake;
    ``None``: no limit."""
    body_timeout: float | None
    """Seconds for a body (HTTP) or one frame (TCP); ``None``: no limit."""
    max_connections: int
    """Connections served at once."""
    tls_cert: str | os.PathLike[str] | None = None
    """PEM certificate chain (with ``tls_key``): serve TLS 1.2+."""
    tls_key: str | os.PathLike[str] | None = None
    """PEM private key of ``tls_cert``."""

    def __post_init__(self) -> None:
        check_type("host", self.host, str)
        check_type("port", self.port, int)
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"port must be in 0..65535, got {self.port}", option="port")
        check_type("capacity", self.capacity, int)
        check_positive("capacity", self.capacity)
        object.__setattr__(self, "header_timeout", _check_timeout("header_timeout", self.header_timeout))
        object.__setattr__(self, "body_timeout", _check_timeout("body_timeout", self.body_timeout))
        check_type("max_connections", self.max_connections, int)
        check_positive("max_connections", self.max_connections)
        # Loaded once here so a bad path or key fails at construction; the context itself is made
        # again when listening (an SSLContext does not pickle).
        server_tls_context(self.tls_cert, self.tls_key)


@dataclass(frozen=True, kw_only=True)
class TcpPushSourceConfig(PushListenerConfig):
    """Options of :class:`~.tcp.TcpPushSource`: the listener's, with TCP's defaults, and the framing."""

    framing: str = "newline"
    """``"newline"`` (frames end with ``\\n``) or ``"length"`` (a 4-byte big-endian length first)."""
    format: Any = None
    """The :class:`~arrowflow.formats.Format` frames are decoded with (``None``: ``Raw()``, one binary
    ``value`` column)."""
    max_frame_bytes: int = 1 << 20
    """A longer frame closes its connection (counted in ``connections_dropped``)."""
    header_timeout: float | None = 300.0
    body_timeout: float | None = 30.0
    max_connections: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("framing", self.framing, ("newline", "length"))
        check_type("format", self.format, Format, allow_none=True)
        check_type("max_frame_bytes", self.max_frame_bytes, int)
        check_positive("max_frame_bytes", self.max_frame_bytes)


@dataclass(frozen=True, kw_only=True)
class HttpPushSourceConfig(PushListenerConfig):
    """Options of :class:`~.http.HttpPushSource`: the listener's, with HTTP's defaults, and the
    endpoint's."""

    path: str = "/"
    """The path POSTs go to (another path answers ``404``)."""
    schema: pa.Schema | None = None
    """The schema bodies must fit (``400`` otherwise); ``None``: inferred per body."""
    max_body_bytes: int = 16 << 20
    """A larger body is answered ``413`` without being read."""
    token: Secret | str | None = None
    """A bearer token every request must carry (``401`` otherwise); hidden from reprs."""
    accept_timeout: float = 0.5
    """Seconds a request waits for room in a full buffer before ``429`` (with ``Retry-After``)."""
    header_timeout: float | None = 10.0
    body_timeout: float | None = 30.0
    max_connections: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        check_type("path", self.path, str)
        check_type("schema", self.schema, pa.Schema, allow_none=True)
        check_type("max_body_bytes", self.max_body_bytes, int)
        check_positive("max_body_bytes", self.max_body_bytes)
        check_type("token", self.token, (Secret, str), allow_none=True)
        if isinstance(self.token, str):
            object.__setattr__(self, "token", Secret(self.token))
        check_non_negative("accept_timeout", self.accept_timeout)
        object.__setattr__(self, "accept_timeout", float(self.accept_timeout))
