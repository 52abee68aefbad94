"""AWS client options shared by the Kinesis, Firehose and DynamoDB connectors.

Every boto3 option passes through :class:`AwsConfig`: ``region_name``, the credentials chain
(explicit keys, ``profile_name``, or boto3's default chain when nothing is given), ``endpoint_url``
(moto, LocalStack, VPC endpoints), a ``botocore.config.Config`` (or a dict of its keyword arguments)
and any other ``session.client(...)`` keyword in ``client_options``. Keys and tokens are held as
:class:`~arrowflow.config.Secret` so they never show in a repr.

Retries: the sinks retry through :class:`~arrowflow.writer.AsyncBatchWriter` (only the failed
records, with full-jitter backoff), so by default botocore's own retries are switched off
(``retries={"mode": "standard", "total_max_attempts": 1}``); a ``botocore_config`` that sets
``retries`` overrides this.

:class:`RawJsonCall` sends a request body arrowflow built itself (the compiled JSON kernel's
output) through botocore's normal machinery: endpoint resolution, SigV4 signing, response parsing
and error mapping stay botocore's, only the serialization of the request parameters is replaced.
For batch puts whose answer lists one result per record (PutRecords, PutRecordBatch), an answer
that says no record failed is handed to botocore's parser without that list: nothing reads it, and
parsing 500 results costs ~1 ms of CPU per request.

Clients: every client :meth:`AwsConfig.client` makes gets its own botocore session (credentials,
configuration and environment are resolved per client, as with a new ``boto3.session.Session()``),
but they share one botocore *data loader*, the cache of the service models and endpoint rules read
from botocore's JSON files: loading them took ~70 of the ~80 ms of CPU a new session's client cost.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...config import Secret, check_type, hide_secrets, reveal, reveal_secrets
from ...errors import ConfigurationError, ConnectorError

__all__ = ["THROTTLING_CODES", "AwsConfig", "RawJsonCall", "is_retryable_aws_error"]

#: Error codes that mean "slow down / try again" (whole requests and per-record errors).
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        "InternalServerErrorException",
        "KMSThrottlingException",
        "TransactionInProgressException",
    }
)


@dataclass(frozen=True, kw_only=True)
class AwsConfig:
    """boto3 client options (see the module docstring). Every field is optional."""

    region_name: str | None = None
    endpoint_url: str | None = None
    aws_access_key_id: str | Secret | None = None
    aws_secret_access_key: str | Secret | None = None
    aws_session_token: str | Secret | None = None
    profile_name: str | None = None
    botocore_config: Any = None
    client_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("region_name", "endpoint_url", "profile_name"):
            check_type(name, getattr(self, name), str, allow_none=True)
        for name in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
            value = getattr(self, name)
            check_type(name, value, (str, Secret), allow_none=True)
            if isinstance(value, str):
                object.__setattr__(self, name, Secret(value))
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ConfigurationError(
                "aws_access_key_id and aws_secret_access_key go together", option="aws_access_key_id"
            )
        check_type("client_options", self.client_options, Mapping)
        object.__setattr__(self, "client_options", hide_secrets(dict(self.client_options)))
        if (
            self.botocore_config is not None
            and not isinstance(self.botocore_config, Mapping)
            and type(self.botocore_config).__name__ != "Config"
        ):
            raise ConfigurationError(
                "botocore_config must be a botocore.config.Config or a dict of its options",
                option="botocore_config",
            )

    @classmethod
    def coerce(cls, value: AwsConfig | Mapping[str, Any] | None) -> AwsConfig:
        """``value`` itself, an :class:`AwsConfig` from a dict of its fields, or the defaults."""
        if value is None:
            return cls()
        if isinstance(value, AwsConfig):
            return value
        if isinstance(value, Mapping):
            try:
                return cls(**value)
            except TypeError as exc:
                raise ConfigurationError(f"aws options: {exc}", option="aws") from exc
        raise ConfigurationError(
            f"aws must be an AwsConfig or a dict, got {type(value).__name__}", option="aws"
        )

    def _botocore_config(self, max_pool_connections: int | None) -> Any:
        from botocore.config import Config

        defaults: dict[str, Any] = {"retries": {"mode": "standard", "total_max_attempts": 1}}
        if max_pool_connections is not None:
            defaults["max_pool_connections"] = max(10, max_pool_connections)
        base = Config(**defaults)
        if self.botocore_config is None:
            return base
        user = (
            Config(**dict(self.botocore_config))
            if isinstance(self.botocore_config, Mapping)
            else self.botocore_config
        )
        return base.merge(user)

    def client(self, service: str, *, max_pool_connections: int | None = None) -> Any:
        """A new boto3 low-level client for ``service`` (thread-safe to use, not to create), on a new
        session that shares the process's botocore data loader (see the module docstring)."""
        import boto3

        session = boto3.session.Session(botocore_session=_botocore_session(), profile_name=self.profile_name)
        kwargs: dict[str, Any] = reveal_secrets(self.client_options)
        if self.region_name is not None:
            kwargs["region_name"] = self.region_name
        elif session.region_name is None:
            # boto3 refuses to build a client without a region; an endpoint_url (moto, LocalStack)
            # usually does not care which one.
            kwargs["region_name"] = "us-east-1"
        if self.endpoint_url is not None:
            kwargs["endpoint_url"] = self.endpoint_url
        for name in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = reveal(value)
        kwargs["config"] = self._botocore_config(max_pool_connections)
        return session.client(service, **kwargs)


_LOADER_LOCK = threading.Lock()
#: botocore data loaders by data path (``AWS_DATA_PATH``), shared by the clients made here.
_LOADERS: dict[str | None, Any] = {}


def _botocore_session() -> Any:
    """A new botocore session using the process's shared data loader."""
    import botocore.session

    session = botocore.session.get_session()
    key = os.environ.get("AWS_DATA_PATH")
    with _LOADER_LOCK:
        loader = _LOADERS.get(key)
        if loader is None:
            loader = _LOADERS[key] = session.get_component("data_loader")
    session.register_component("data_loader", loader)
    return session


class RawJsonCall:
    """Call a JSON-protocol operation with a request body built by arrowflow.

    ``call(body, **dummy_params)`` runs ``client.<operation>(**dummy_params)`` (cheap to validate
    and serialize) and swaps the serialized body for ``body`` just before the request is signed
    (botocore's ``before-call`` event). The body of the current thread is kept in a thread-local, so
    one client serves several writer threads. Returns botocore's parsed response; errors are raised
    as botocore raises them.

    ``lean_answer=(failed_key, results_key)``: a successful answer whose ``failed_key`` count is 0 is
    parsed as ``{failed_key: 0, results_key: []}`` (botocore's ``before-parse`` event): the caller
    reads the per-record results only when some record failed.
    """

    def __init__(self, client: Any, operation: str, *, lean_answer: tuple[str, str] | None = None) -> None:
        self.client = client
        self.operation = operation
        self._local = threading.local()
        service_id = client.meta.service_model.service_id.hyphenize()
        op_name = client.meta.method_to_api_mapping.get(operation, operation)
        client.meta.events.register(
            f"before-call.{service_id}.{op_name}",
            self._swap_body,
            unique_id=f"arrowflow-raw-{id(self)}",
        )
        self._lean: tuple[re.Pattern[bytes], bytes] | None = None
        if lean_answer is not None:
            failed, results = lean_answer
            self._lean = (
                re.compile(rb'"' + failed.encode() + rb'"\s*:\s*([0-9]+)'),
                b'{"%s":0,"%s":[]}' % (failed.encode(), results.encode()),
            )
            client.meta.events.register(
                f"before-parse.{service_id}.{op_name}",
                self._lean_answer,
                unique_id=f"arrowflow-lean-{id(self)}",
            )
        self._method = getattr(client, operation)

    def _swap_body(self, params: dict[str, Any], **_: Any) -> None:
        body = getattr(self._local, "body", None)
        if body is not None:
            params["body"] = body
            self._local.body = None
            self._local.ours = True

    def _lean_answer(self, response_dict: dict[str, Any], **_: Any) -> None:
        if not getattr(self._local, "ours", False) or self._lean is None:
            return
        self._local.ours = False
        body = response_dict.get("body")
        if response_dict.get("status_code") != 200 or not isinstance(body, bytes):
            return
        found = self._lean[0].search(body)
        if found is not None and int(found.group(1)) == 0:
            response_dict["body"] = self._lean[1]

    def call(self, body: bytes, **dummy_params: Any) -> Any:
        self._local.body = body
        try:
            return self._method(**dummy_params)
        finally:
            self._local.body = None
            self._local.ours = False


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (else ``None``)."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        err = response.get("Error")
        if isinstance(err, Mapping):
            code = err.get("Code")
            return str(code) if code is not None else None
    return None


def is_retryable_aws_error(exc: BaseException) -> bool:
    """True when a request that raised ``exc`` may succeed if sent again.

    Throttling codes (:data:`THROTTLING_CODES`), HTTP 5xx answers and botocore's connection / timeout
    errors are retryable; validation errors, missing resources and access errors are not.
    """
    if isinstance(exc, ConnectorError):
        return exc.retryable
    if isinstance(exc, OSError):
        return True
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - boto3 is what raised
        return False
    if isinstance(
        exc,
        (
            bx.EndpointConnectionError,
            bx.ConnectionClosedError,
            bx.ReadTimeoutError,
            bx.ConnectTimeoutError,
            bx.HTTPClientError,
        ),
    ):
        return True
    if isinstance(exc, bx.ClientError):
        if error_code(exc) in THROTTLING_CODES:
            return True
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return isinstance(status, int) and status >= 500
    return False
