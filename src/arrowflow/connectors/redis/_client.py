"""Building redis-py clients from arrowflow options (standalone URL or Sentinel), lazily imported.

Errors: :func:`is_transient` says which redis-py exceptions a retry (after a reconnect) can cure:
connection loss, timeouts, a server still loading its append-only file after a restart
(``LOADING``), a cluster slot moving (``TRYAGAIN``), a replica promoted (``READONLY``,
``MASTERDOWN``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...config import check_positive, check_type, hide_secrets, post_init_bases, reveal_secrets
from ...errors import ConfigurationError

__all__ = ["DEFAULT_URL", "RedisConnection", "is_transient"]

#: Error-reply prefixes that mean "try again later", not "this command is wrong".
TRANSIENT_REPLIES = ("LOADING", "TRYAGAIN", "BUSY ", "READONLY", "MASTERDOWN", "CLUSTERDOWN")


#: Where every Redis connector connects unless told.
DEFAULT_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True, kw_only=True)
class RedisConnection:
    """Where and how to connect.

    * ``url``: ``redis://[user:password@]host:port/db`` or ``rediss://`` (TLS) or ``unix://``.
    * ``sentinels``: ``[(host, port), ...]``; with it, ``service_name`` names the monitored master and
      the client follows failovers (``url`` is then ignored except for its options).
    * ``socket_timeout``: seconds a command may wait for its reply (``None``: forever). A server that
      stops answering without closing the connection (a hung server, a black-holed network) is
      then noticed: the command fails with a timeout, the connection is dropped and the command is
      retried on a new one, instead of hanging the pipeline. Blocking reads (``XREADGROUP BLOCK``)
      block for less than this. ``connect_timeout``: seconds to open a connection. TCP keepalive
      is on.
    * ``client_options``: passed through to ``redis.Redis`` (``password``, ``ssl_ca_certs`` ...;
      ``socket_timeout`` / ``socket_connect_timeout`` there win over the options above);
      secret-named values are hidden in reprs.
    """

    url: str = DEFAULT_URL
    sentinels: tuple[tuple[str, int], ...] = ()
    service_name: str | None = None
    client_options: Mapping[str, Any] = field(default_factory=dict)
    socket_timeout: float | None = 10.0
    connect_timeout: float | None = 5.0

    def __post_init__(self) -> None:
        post_init_bases(super())
        check_type("url", self.url, str)
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"url must start with redis://, rediss:// or unix://, got {self.url!r}", option="url"
            )
        object.__setattr__(self, "sentinels", tuple((str(h), int(p)) for h, p in self.sentinels))
        if self.sentinels and not self.service_name:
            raise ConfigurationError("sentinels need service_name (the master's name)", option="service_name")
        if self.client_options is None:  # the constructors' default
            object.__setattr__(self, "client_options", {})
        check_type("client_options", self.client_options, Mapping)
        object.__setattr__(self, "client_options", hide_secrets(self.client_options))
        check_positive("socket_timeout", self.socket_timeout, allow_none=True)
        check_positive("connect_timeout", self.connect_timeout, allow_none=True)

    @property
    def read_timeout(self) -> float | None:
        """The reply timeout in effect (``client_options`` win over ``socket_timeout``)."""
        value = self.client_options.get("socket_timeout", self.socket_timeout)
        return None if value is None else float(value)

    def client(self, **overrides: Any) -> Any:
        """A new ``redis.Redis`` (bytes replies, a private connection pool)."""
        import redis

        options = reveal_secrets(self.client_options) | overrides
        options.setdefault("decode_responses", False)
        options.setdefault("socket_timeout", self.socket_timeout)
        options.setdefault("socket_connect_timeout", self.connect_timeout)
        options.setdefault("socket_keepalive", True)
        if self.sentinels:
            from redis.sentinel import Sentinel

            assert self.service_name is not None
            return Sentinel(list(self.sentinels), **options).master_for(self.service_name, **options)
        return redis.Redis.from_url(self.url, **options)


def is_transient(exc: BaseException) -> bool:
    """True for redis-py errors a reconnect and retry can cure (see the module docstring)."""
    import redis

    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return True
    if isinstance(exc, redis.ResponseError):
        return str(exc).startswith(TRANSIENT_REPLIES)
    return False
