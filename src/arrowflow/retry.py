"""Retry building blocks: the one retry vocabulary of arrowflow.

* :class:`ExponentialBackoff` computes the delay before retry number ``n`` with *full jitter*
  (AWS Architecture Blog, "Exponential Backoff And Jitter"): a uniform draw in
  ``[0, min(max_delay, initial_delay * multiplier ** (n - 1))]``. Full jitter spreads the retries of
  many writers that failed together, so they do not hammer a recovering server in lock-step. It is
  also what a broker source waits between reconnect attempts (``reconnect_backoff=``).
* :func:`default_classify` decides whether an exception that failed a whole request is worth
  retrying: a :class:`~arrowflow.errors.ConnectorError` says so itself (``retryable``); an exception
  carrying an HTTP status (aiohttp's ``status``, urllib's ``code``, the search clients'
  ``meta.status`` / ``status_code``) is retryable for 408, 425, 429 and 5xx only; network-level
  errors (``OSError``, which covers ``ConnectionError`` and ``TimeoutError``) are retryable; anything
  else (a bug, a rejected payload) is fatal.
* :class:`Retry` names a whole retry policy in the words every part of arrowflow uses
  (:class:`~arrowflow.writer.BatchingConfig` has the same fields): ``max_attempts``,
  ``max_retry_time``, ``initial_backoff``, ``max_backoff``, ``backoff_multiplier``, plus the
  ``classify`` predicate. :class:`~arrowflow.ops.Enrich` takes one.

Nothing here sleeps or spawns threads; callers decide how to wait.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .config import caller_stacklevel, check_non_negative, check_positive, check_type
from .errors import ConfigurationError, ConnectorError

__all__ = [
    "RETRYABLE_HTTP_STATUS",
    "ExponentialBackoff",
    "Retry",
    "as_backoff",
    "default_classify",
    "http_status",
]

#: HTTP statuses worth sending again: request timeout, too early, too many requests, server errors.
RETRYABLE_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def _check_backoff(initial: float, maximum: float, multiplier: float, names: tuple[str, str, str]) -> None:
    """The shared validation of a backoff (``ConfigurationError`` naming the option)."""
    check_non_negative(names[0], initial)
    check_non_negative(names[1], maximum)
    check_positive(names[2], multiplier)
    if multiplier < 1:
        raise ConfigurationError(f"{names[2]} must be >= 1, got {multiplier!r}", option=names[2])
    if maximum < initial:
        raise ConfigurationError(
            f"{names[1]} ({maximum!r}) must be >= {names[0]} ({initial!r})", option=names[1]
        )


class ExponentialBackoff:
    """Full-jitter exponential backoff. Thread-safe (``random.Random`` draws are atomic under the GIL).

    ``initial_delay >= 0``, ``max_delay >= initial_delay`` and ``multiplier >= 1`` are checked
    (:class:`~arrowflow.errors.ConfigurationError`); ``rng`` makes the draws reproducible in tests.
    Two backoffs are equal when their three numbers are (the generator does not count).
    """

    __slots__ = ("_rng", "initial_delay", "max_delay", "multiplier")

    def __init__(
        self,
        *,
        initial_delay: float,
        max_delay: float,
        multiplier: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        _check_backoff(initial_delay, max_delay, multiplier, ("initial_delay", "max_delay", "multiplier"))
        self.initial_delay = float(initial_delay)
        self.max_delay = float(max_delay)
        self.multiplier = float(multiplier)
        self._rng = rng if rng is not None else random.Random()

    def cap(self, retry: int) -> float:
        """The largest delay retry number ``retry`` (1 = the first retry) may wait."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        try:
            grown = self.initial_delay * self.multiplier ** (retry - 1)
        except OverflowError:
            # A huge exponent only means "long past the maximum".
            return self.max_delay
        return min(self.max_delay, grown)

    def delay(self, retry: int) -> float:
        """A delay drawn uniformly from ``[0, cap(retry)]`` (full jitter)."""
        return self._rng.uniform(0.0, self.cap(retry))

    def _key(self) -> tuple[float, float, float]:
        return (self.initial_delay, self.max_delay, self.multiplier)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExponentialBackoff) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(("ExponentialBackoff", *self._key()))

    def __repr__(self) -> str:
        return (
            f"ExponentialBackoff(initial_delay={self.initial_delay!r}, max_delay={self.max_delay!r}, "
            f"multiplier={self.multiplier!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # A fresh generator in the copy: two readers never share (or replay) one stream of draws.
        return (_backoff, (self.initial_delay, self.max_delay, self.multiplier))


def _backoff(initial_delay: float, max_delay: float, multiplier: float) -> ExponentialBackoff:
    return ExponentialBackoff(initial_delay=initial_delay, max_delay=max_delay, multiplier=multiplier)


def as_backoff(value: Any, option: str) -> ExponentialBackoff:
    """``value`` as an :class:`ExponentialBackoff`.

    The 0.1 form, an ``(initial, max)`` tuple of seconds, is still accepted with a
    ``DeprecationWarning`` (it meant multiplier 2); anything else is a ``ConfigurationError``.
    """
    if isinstance(value, ExponentialBackoff):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        warnings.warn(
            f"{option}=(initial, max) is deprecated: pass "
            f"{option}=ExponentialBackoff(initial_delay=..., max_delay=...)",
            DeprecationWarning,
            stacklevel=caller_stacklevel(),
        )
        if not 0 < value[0] <= value[1]:
            raise ConfigurationError(
                f"{option} must be (initial, max) with 0 < initial <= max, got {tuple(value)!r}",
                option=option,
            )
        return ExponentialBackoff(initial_delay=value[0], max_delay=value[1], multiplier=2.0)
    raise ConfigurationError(
        f"{option} must be an ExponentialBackoff, got {type(value).__name__}", option=option
    )


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, or ``None``.

    Looks at ``meta.status`` (elasticsearch/opensearch transport errors), ``status_code``,
    ``status`` (aiohttp's ``ClientResponseError``) and ``code`` (urllib's ``HTTPError``); only an int
    in 100..599 counts (``code`` means other things elsewhere).
    """
    for value in _status_candidates(exc):
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value < 600:
            return value
    return None


def _status_candidates(exc: BaseException) -> Iterator[Any]:
    # Read lazily, stopping at the first status: aiohttp's ClientResponseError has ``status`` and
    # warns (DeprecationWarning) whenever its old alias ``code`` is read.
    yield getattr(getattr(exc, "meta", None), "status", None)
    for name in ("status_code", "status", "code"):
        yield getattr(exc, name, None)


def default_classify(exc: BaseException) -> bool:
    """True when a request that failed with ``exc`` may succeed if sent again."""
    if isinstance(exc, ConnectorError):
        return exc.retryable
    status = http_status(exc)
    if status is not None:
        return status in RETRYABLE_HTTP_STATUS or status >= 500
    # ConnectionError and TimeoutError are OSError subclasses; so are socket errors and urllib's
    # URLError (without a status), which wrap transient network conditions.
    return isinstance(exc, OSError)


@dataclass(frozen=True, kw_only=True)
class Retry:
    """When and how long a failed request is sent again.

    Retry ``n`` (1 = the second attempt) waits a uniform draw from
    ``[0, min(max_backoff, initial_backoff * backoff_multiplier ** (n - 1))]`` seconds (full jitter,
    :class:`ExponentialBackoff`). ``backoff_multiplier=1`` waits up to ``initial_backoff`` every time.
    """

    max_attempts: int | None = 3
    """Attempts including the first (1 = never retry); ``None`` = no limit (then ``max_retry_time``
    must be set)."""
    max_retry_time: float | None = None
    """Seconds since the first attempt after which no retry starts; ``None`` = no limit."""
    initial_backoff: float = 0.1
    """The largest wait before the first retry, in seconds."""
    max_backoff: float = 10.0
    """The largest wait before any retry, in seconds."""
    backoff_multiplier: float = 2.0
    """How the largest wait grows from one retry to the next (>= 1)."""
    classify: Callable[[BaseException], bool] = default_classify
    """``classify(exc) -> bool``: whether a request that raised ``exc`` is sent again
    (:func:`default_classify`: ``ConnectorError.retryable``, HTTP 408/425/429/5xx, ``OSError``)."""

    def __post_init__(self) -> None:
        check_type("max_attempts", self.max_attempts, int, allow_none=True)
        check_positive("max_attempts", self.max_attempts, allow_none=True)
        check_positive("max_retry_time", self.max_retry_time, allow_none=True)
        if self.max_attempts is None and self.max_retry_time is None:
            raise ConfigurationError(
                "max_attempts and max_retry_time cannot both be None (a request would be retried "
                "forever); set at least one",
                option="max_attempts",
            )
        _check_backoff(
            self.initial_backoff,
            self.max_backoff,
            self.backoff_multiplier,
            ("initial_backoff", "max_backoff", "backoff_multiplier"),
        )
        if not callable(self.classify):
            raise ConfigurationError("classify must be callable(exception) -> bool", option="classify")

    def backoff(self, rng: random.Random | None = None) -> ExponentialBackoff:
        """A new :class:`ExponentialBackoff` of these numbers."""
        return ExponentialBackoff(
            initial_delay=self.initial_backoff,
            max_delay=self.max_backoff,
            multiplier=self.backoff_multiplier,
            rng=rng,
        )

    def exhausted(self, attempt: int, elapsed: float, delay: float) -> bool:
        """True when attempt number ``attempt`` (1-based), ``elapsed`` seconds after the first one
        started, was the last: no attempts left, or waiting ``delay`` would pass ``max_retry_time``."""
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return True
        return self.max_retry_time is not None and elapsed + delay > self.max_retry_time
