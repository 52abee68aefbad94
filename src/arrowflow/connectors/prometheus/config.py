"""The options of :class:`~.sink.PrometheusSink` (:class:`PrometheusSinkConfig`, the auth helpers
:class:`BasicAuth` and :class:`BearerToken`), checked in one place, and its default batching.
"""

from __future__ import annotations

import urllib.parse
from base64 import b64encode
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

from ...config import Secret, check_positive, check_type, reveal
from ...errors import ConfigurationError
from ...writer import BatchingConfig

__all__ = [
    "PROMETHEUS_BATCHING",
    "BasicAuth",
    "BearerToken",
    "PrometheusSinkConfig",
    "RequestSigner",
    "default_batching",
]

#: Called with the request headers (mutable) and the compressed body; adds auth headers.
RequestSigner = Callable[[MutableMapping[str, str], bytes], None]

_LABEL_NAME = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"


#: Flink's defaults: 500 samples per request, one request in flight (remote write keeps a series'
#: samples in order), 1 s in the buffer, 30 ms -> 5 s backoff, 10 attempts; no byte limit.
PROMETHEUS_BATCHING = BatchingConfig(
    max_request_rows=500,
    max_request_bytes=None,
    max_in_flight=1,
    max_time_in_buffer=1.0,
    initial_backoff=0.03,
)


def default_batching() -> BatchingConfig:
    """0.1.0's accessor of :data:`PROMETHEUS_BATCHING`."""
    return PROMETHEUS_BATCHING


@dataclass(frozen=True)
class BasicAuth:
    """HTTP basic auth signer."""

    username: str
    password: Secret | str

    def __post_init__(self) -> None:
        check_type("username", self.username, str)
        check_type("password", self.password, (str, Secret))
        if isinstance(self.password, str):
            object.__setattr__(self, "password", Secret(self.password))

    def __call__(self, headers: MutableMapping[str, str], body: bytes) -> None:
        token = b64encode(f"{self.username}:{reveal(self.password)}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"


@dataclass(frozen=True)
class BearerToken:
    """``Authorization: Bearer <token>`` signer."""

    token: Secret | str

    def __post_init__(self) -> None:
        check_type("token", self.token, (str, Secret))
        if isinstance(self.token, str):
            object.__setattr__(self, "token", Secret(self.token))

    def __call__(self, headers: MutableMapping[str, str], body: bytes) -> None:
        headers["Authorization"] = f"Bearer {reveal(self.token)}"


def _check_label_name(option: str, name: str) -> None:
    ok = bool(name) and name[0] in _LABEL_NAME and all(c in _LABEL_NAME or c.isdigit() for c in name)
    if not ok or not name.isascii():
        raise ConfigurationError(
            f"{option}: {name!r} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
            option=option,
        )


@dataclass(frozen=True, kw_only=True)
class PrometheusSinkConfig:
    """Where to write and how rows map onto samples.

    * ``url``: the remote-write endpoint (``http(s)://host:port/api/v1/write``).
    * ``metric_name`` (one name for every row) or ``metric_column`` (a string column): exactly one.
    * ``label_columns``: string columns that become labels, a sequence (label name = column name) or
      a mapping ``{label_name: column_name}``. A null or empty value omits the label for that row.
    * ``labels_column``: an optional ``map<string, string>`` column of more labels per row.
    * ``static_labels``: labels added to every series (``job``, ``instance``, ...).
    * ``value_column``: numeric (cast to float64). ``timestamp_column``: a timestamp (any unit,
      truncated to milliseconds) or integer milliseconds since the epoch.
    * ``batching``: :data:`PROMETHEUS_BATCHING`. ``request_timeout``: seconds per HTTP request.
    * ``signer``: auth hook (:class:`BasicAuth`, :class:`BearerToken` or a callable).
    * ``headers``: extra HTTP headers. ``sort_by_timestamp``: order each batch by time before sending.
    """

    url: str
    metric_name: str | None = None
    metric_column: str | None = None
    label_columns: Sequence[str] | Mapping[str, str] = ()
    labels_column: str | None = None
    static_labels: Mapping[str, str] = field(default_factory=dict)
    value_column: str = "value"
    timestamp_column: str = "timestamp"
    batching: BatchingConfig = PROMETHEUS_BATCHING
    request_timeout: float = 10.0
    signer: RequestSigner | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    sort_by_timestamp: bool = True

    def __post_init__(self) -> None:
        check_type("url", self.url, str)
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigurationError(f"url must be an http(s) URL, got {self.url!r}", option="url")
        if (self.metric_name is None) == (self.metric_column is None):
            raise ConfigurationError(
                "set exactly one of metric_name (a constant) and metric_column (a string column)",
                option="metric_name",
            )
        if self.metric_name is not None:
            check_type("metric_name", self.metric_name, str)
            ok = self.metric_name.replace(":", "_")
            _check_label_name("metric_name", ok)
        check_type("label_columns", self.label_columns, (list, tuple, Mapping))
        for label in self.label_map:
            _check_label_name("label_columns", label)
            if label == "__name__":
                raise ConfigurationError(
                    "label_columns: use metric_column for __name__", option="label_columns"
                )
        check_type("static_labels", self.static_labels, Mapping)
        object.__setattr__(self, "static_labels", dict(self.static_labels))
        for label, value in self.static_labels.items():
            _check_label_name("static_labels", label)
            check_type("static_labels", value, str)
            if label in self.label_map or label == "__name__":
                raise ConfigurationError(
                    f"static_labels: {label!r} is also set elsewhere", option="static_labels"
                )
        check_type("labels_column", self.labels_column, str, allow_none=True)
        check_type("value_column", self.value_column, str)
        check_type("timestamp_column", self.timestamp_column, str)
        check_type("batching", self.batching, BatchingConfig)
        check_positive("request_timeout", self.request_timeout)
        if self.signer is not None and not callable(self.signer):
            raise ConfigurationError("signer must be callable(headers, body)", option="signer")
        check_type("headers", self.headers, Mapping)
        object.__setattr__(self, "headers", dict(self.headers))

    @property
    def label_map(self) -> dict[str, str]:
        """``{label_name: column_name}`` of ``label_columns``."""
        if isinstance(self.label_columns, Mapping):
            return dict(self.label_columns)
        return {c: c for c in self.label_columns}
