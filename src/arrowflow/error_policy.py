"""What happens to rows that cannot be delivered or payloads that cannot be decoded.

Every sink and every decoding source takes ``error_policy``:

* ``"fail"`` (default): raise the error. In a pipeline, ``run()`` stops every stage and re-raises it;
  nothing restarts by itself: a new run with the same ``checkpoint_dir`` resumes from the last checkpoint.
* ``"skip"``: count the rows (``ErrorPolicy.skipped``), log a warning (rate-limited), and go on.
* a :class:`~arrowflow.sink.Sink` (or :class:`DeadLetter`): the failed rows are written to it with an
  extra ``error`` string column. Sources write the raw payload and its metadata instead of the row.

Nothing is silently dropped: every row handed to the policy is either raised, counted or written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import pyarrow as pa

from .errors import ArrowflowError, ConfigurationError, SerializationError

if TYPE_CHECKING:
    from .sink import Sink

__all__ = ["DeadLetter", "ErrorPolicy", "ErrorPolicyLike"]

log = logging.getLogger("arrowflow.errors")


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """Send failed rows to ``sink`` with the error text in column ``error_column``."""

    sink: Sink
    error_column: str = "error"


ErrorPolicyLike = Union[str, "Sink", DeadLetter, "ErrorPolicy"]


class ErrorPolicy:
    """Applies one of the policies above; thread-safe. Build with :meth:`resolve`."""

    def __init__(self, mode: str, dead_letter: DeadLetter | None = None, *, name: str = "") -> None:
        self.mode = mode
        self.dead_letter = dead_letter
        self.name = name
        self.skipped = 0
        self.dead_lettered = 0
        self._lock = threading.Lock()
        self._last_log = 0.0

    def __getstate__(self) -> dict[str, Any]:
        # Sources and sinks travel to other processes (Ray tasks, spawned workers) with their
        # policy; the lock is per process and is made anew there. Counters travel as they are.
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @classmethod
    def resolve(cls, value: ErrorPolicyLike, *, option: str = "error_policy", name: str = "") -> ErrorPolicy:
        """Turn ``"fail"``, ``"skip"``, a sink or a :class:`DeadLetter` into a policy.

        Anything else is a :class:`ConfigurationError` naming ``option``.
        """
        from .sink import Sink

        if isinstance(value, ErrorPolicy):
            return value
        if isinstance(value, str):
            if value in ("fail", "skip"):
                return cls(value, name=name)
            raise ConfigurationError(
                f"{option}={value!r} is not allowed; use 'fail', 'skip' or a dead-letter sink",
                option=option,
            )
        if isinstance(value, DeadLetter):
            return cls("dead-letter", value, name=name)
        if isinstance(value, Sink):
            return cls("dead-letter", DeadLetter(sink=value), name=name)
        raise ConfigurationError(
            f"{option} must be 'fail', 'skip' or a dead-letter Sink, got {type(value).__name__}",
            option=option,
        )

    @property
    def handled(self) -> int:
        """Rows given to this policy and not raised (skipped + dead-lettered)."""
        return self.skipped + self.dead_lettered

    def handle(
        self,
        rows: pa.RecordBatch | pa.Table,
        errors: Sequence[str] | pa.Array | str,
        *,
        exception: BaseException | None = None,
    ) -> None:
        """Apply the policy to ``rows``; ``errors`` is one message per row, or one for all.

        ``fail`` raises ``exception`` if given (else a :class:`SerializationError`).
        """
        n = rows.num_rows
        if n == 0:
            return
        if isinstance(errors, str):
            error_array = pa.array([errors] * n, pa.string())
        elif isinstance(errors, pa.Array):
            error_array = errors.cast(pa.string())
        else:
            error_array = pa.array([str(e) for e in errors], pa.string())
        if len(error_array) != n:
            raise ValueError(f"{len(error_array)} error messages for {n} rows")
        if self.mode == "fail":
            if exception is not None:
                raise exception
            first = error_array[0].as_py()
            more = f" (and {n - 1} more rows)" if n > 1 else ""
            raise SerializationError(f"{self.name or 'arrowflow'}: {first}{more}")
        if self.mode == "skip":
            with self._lock:
                self.skipped += n
                now = time.monotonic()
                if now - self._last_log >= 5.0:
                    self._last_log = now
                    log.warning(
                        "%s: skipped %d row(s) (%d so far): %s",
                        self.name or "arrowflow",
                        n,
                        self.skipped,
                        error_array[0].as_py(),
                    )
            return
        assert self.dead_letter is not None
        column = self.dead_letter.error_column
        if column in rows.schema.names:
            raise ArrowflowError(f"dead-letter rows already have a column named {column!r}")
        if isinstance(rows, pa.Table):
            rows = rows.combine_chunks().to_batches()[0] if rows.num_rows else rows.to_batches()[0]
        out = pa.RecordBatch.from_arrays(
            [*rows.columns, error_array], schema=rows.schema.append(pa.field(column, pa.string()))
        )
        with self._lock:
            self.dead_letter.sink.write(out)
            self.dead_lettered += n

    def flush(self) -> None:
        """Flush the dead-letter sink (called by sinks in their own ``flush``)."""
        if self.dead_letter is not None:
            self.dead_letter.sink.flush()
