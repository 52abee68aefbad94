"""How the SQL connector classifies ADBC errors: what is retried on a new connection, what goes to
the error policy, what fails the run."""

from __future__ import annotations

import adbc_driver_manager as adbc
import pytest

from arrowflow.connectors.sql._conn import CONNECTION_ERROR, FATAL_ERROR, ROW_ERROR, classify


def _error(
    cls: type[adbc.Error], message: str, status: adbc.AdbcStatusCode, sqlstate: str | None = None
) -> adbc.Error:
    return cls(message, status_code=status, sqlstate=sqlstate)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        # Found by the network-fault tests: after a stall, libpq refuses the next transaction on the
        # old connection; it must be replaced, not reported as a bug.
        (
            _error(
                adbc.ProgrammingError,
                "INVALID_STATE: [libpq] cannot start transaction: the connection is in an error state",
                adbc.AdbcStatusCode.INVALID_STATE,
            ),
            CONNECTION_ERROR,
        ),
        (
            _error(adbc.OperationalError, "IO: server closed the connection", adbc.AdbcStatusCode.IO),
            CONNECTION_ERROR,
        ),
        (
            _error(adbc.ProgrammingError, "terminating connection", adbc.AdbcStatusCode.IO, "57P01"),
            CONNECTION_ERROR,
        ),
        (_error(adbc.IntegrityError, "duplicate key", adbc.AdbcStatusCode.INTEGRITY, "23505"), ROW_ERROR),
        (
            _error(adbc.ProgrammingError, "relation does not exist", adbc.AdbcStatusCode.NOT_FOUND, "42P01"),
            FATAL_ERROR,
        ),
        (
            _error(
                adbc.ProgrammingError,
                "INVALID_STATE: statement already executed",
                adbc.AdbcStatusCode.INVALID_STATE,
            ),
            FATAL_ERROR,
        ),
    ],
)
def test_classify(error: adbc.Error, kind: str) -> None:
    assert classify(error) == kind
