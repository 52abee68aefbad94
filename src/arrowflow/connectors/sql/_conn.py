"""Opening ADBC connections by driver name, and sorting the driver's errors into kinds.

ADBC is imported lazily here (importing arrowflow never imports it). A ``driver`` naming an
importable Python package with a ``dbapi`` module is used through that module; anything else is passed
to ``adbc_driver_manager.dbapi.connect`` as a driver (shared library) name or path. The configuration
admits only ``adbc_driver_postgresql`` (``config.ADBC_DRIVERS``): the SQL the connector sends is
PostgreSQL's, and ``adbc_driver_sqlite.dbapi.connect`` does not even take ``db_kwargs``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ...config import Secret
from ...errors import ConfigurationError, ConnectorError
from .config import mask_uri, scrub

__all__ = [
    "CONNECTION_ERROR",
    "FATAL_ERROR",
    "ROW_ERROR",
    "classify",
    "close_quietly",
    "connect",
    "wrap_error",
]

ROW_ERROR = "row"
CONNECTION_ERROR = "connection"
FATAL_ERROR = "fatal"


def connect(driver: str, uri: Secret, db_kwargs: Mapping[str, str], *, autocommit: bool = False) -> Any:
    """A DB-API connection (``autocommit`` off unless asked). Failures raise a retryable
    :class:`ConnectorError` whose message shows the URI with its password masked."""
    try:
        module = importlib.import_module(f"{driver}.dbapi")
    except ImportError:
        module = None
    try:
        if module is not None:
            return module.connect(uri.reveal(), db_kwargs=dict(db_kwargs), autocommit=autocommit)
        try:
            from adbc_driver_manager import dbapi
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "the SQL connector needs adbc-driver-manager: pip install 'arrowflow[postgres]'",
                option="driver",
            ) from exc
        return dbapi.connect(
            driver=driver, uri=uri.reveal(), db_kwargs=dict(db_kwargs), autocommit=autocommit
        )
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConnectorError(
            f"cannot connect to {mask_uri(uri)} with {driver}: {scrub(str(exc), uri)}", retryable=True
        ) from None


def classify(exc: BaseException) -> str:
    """``ROW_ERROR`` (the data was rejected: constraint, bad value), ``CONNECTION_ERROR`` (worth a
    reconnect and retry) or ``FATAL_ERROR`` (wrong SQL, missing table, a bug)."""
    if isinstance(exc, ConnectorError):
        return CONNECTION_ERROR if exc.retryable else FATAL_ERROR
    if isinstance(exc, OSError):
        return CONNECTION_ERROR
    try:
        import adbc_driver_manager as adbc
    except ImportError:  # pragma: no cover
        return FATAL_ERROR
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, (adbc.IntegrityError, adbc.DataError)) or sqlstate[:2] in ("22", "23"):
        return ROW_ERROR
    # Class 08 = connection exception, 57P = operator intervention (terminated backend, shutdown),
    # 40 = serialization failure / deadlock: all fine to retry. A lost socket shows as an
    # OperationalError with ADBC status IO and no SQLSTATE.
    if sqlstate[:2] in ("08", "40") or sqlstate[:3] == "57P":
        return CONNECTION_ERROR
    status = getattr(exc, "status_code", None)
    if isinstance(exc, adbc.OperationalError) or getattr(status, "name", "") in (
        "IO",
        "TIMEOUT",
        "CANCELLED",
    ):
        return CONNECTION_ERROR
    # libpq refuses every call on a connection a dropped or stalled socket left in its error state
    # ("cannot start transaction: the connection is in an error state"): only a new one helps.
    if getattr(status, "name", "") == "INVALID_STATE" and "connection" in str(exc):
        return CONNECTION_ERROR
    return FATAL_ERROR


def wrap_error(exc: BaseException, uri: Secret, what: str) -> ConnectorError:
    """A :class:`ConnectorError` for ``exc`` with the URI's password scrubbed from the message."""
    return ConnectorError(
        f"{what} ({mask_uri(uri)}): {scrub(str(exc), uri)}", retryable=classify(exc) == CONNECTION_ERROR
    )


def close_quietly(conn: Any) -> None:
    """Close a connection that may already be broken."""
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # the connection is discarded; closing a broken one may fail
        pass
