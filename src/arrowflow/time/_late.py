"""The ``late_rows`` policy: what happens to rows whose event time is behind the watermark.

* ``"keep"`` (the pipeline's default): late rows go on like any other (counted in the metrics);
* ``"drop"``: they are removed and counted;
* ``"fail"``: the pipeline fails with a :class:`~arrowflow.errors.SerializationError`;
* a :class:`~arrowflow.sink.Sink` or :class:`~arrowflow.error_policy.DeadLetter`: they are written there
  with an extra ``error`` column saying why (the dead-letter machinery of the sinks' ``error_policy``).

A window operator cannot keep a row for a window it has already emitted, so it takes everything but
``"keep"`` (its default is ``"drop"``).
"""

from __future__ import annotations

from typing import Any

from ..error_policy import ErrorPolicy
from ..errors import ConfigurationError

__all__ = ["LATE_ROWS", "resolve_late_rows"]

LATE_ROWS = ("keep", "drop", "fail")


def resolve_late_rows(
    value: Any, *, option: str = "late_rows", allow_keep: bool = True, name: str = ""
) -> ErrorPolicy | None:
    """The policy for ``value`` (see the module docstring); ``None`` means keep."""
    if value == "keep":
        if not allow_keep:
            raise ConfigurationError(
                f"{option}='keep' is not possible here (the window was already emitted); "
                "use 'drop', 'fail' or a dead-letter sink",
                option=option,
            )
        return None
    if value == "drop":
        return ErrorPolicy("skip", name=name)
    if isinstance(value, str) and value not in LATE_ROWS:
        raise ConfigurationError(
            f"{option}={value!r} is not allowed; use 'keep', 'drop', 'fail' or a dead-letter sink",
            option=option,
        )
    return ErrorPolicy.resolve(value, option=option, name=name)
