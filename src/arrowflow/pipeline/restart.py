"""Restart strategies (Flink's): what :meth:`arrowflow.Pipeline.run` does when a stage fails.

``run(restart=...)`` takes one of:

* :func:`no_restart` (``"none"``, ``None``; the default): the first error stops every stage and is
  raised by ``run()``; a new run with the same ``checkpoint_dir`` resumes from the last checkpoint.
* :func:`fixed_delay` ``(attempts, delay)``: up to ``attempts`` restarts, each after ``delay``.
* :func:`exponential_delay` ``(initial, max, multiplier, reset_after)``: the n-th restart in a row
  waits a random time up to ``min(max, initial * multiplier ** (n - 1))`` (full jitter, see
  :class:`arrowflow.retry.ExponentialBackoff`); once the pipeline has run ``reset_after`` without a
  failure the next restart counts as the first again. Unlimited restarts unless ``attempts`` is given.
* :func:`failure_rate` ``(max_failures, interval, delay)``: restarts after ``delay`` as long as no more
  than ``max_failures`` failures happened within the last ``interval``.

Only *retryable* failures are restarted: ``classify(exc)`` decides, by default
:func:`arrowflow.retry.default_classify` (a :class:`~arrowflow.errors.ConnectorError` that says it is
retryable, or a network-level ``OSError``). Everything else - a
:class:`~arrowflow.errors.ConfigurationError`, bad data under ``error_policy="fail"``
(:class:`~arrowflow.errors.SerializationError`), a damaged checkpoint
(:class:`~arrowflow.errors.CheckpointError`), a bug - is raised at once, whatever the strategy.

A restart happens in the same process (see :mod:`arrowflow.pipeline.runner`): every stage stops, a
two-phase sink's open transaction is aborted, and every split is reopened from the last completed
checkpoint, with operator state and watermarks from it. Strategies are immutable and hold no state;
the runner keeps the failure history (:class:`RestartHistory`) of one ``run()``.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import check_type
from ..errors import ConfigurationError
from ..retry import ExponentialBackoff, default_classify
from ..time import DurationLike, duration_us

__all__ = [
    "ExponentialDelay",
    "FailureRate",
    "FixedDelay",
    "NoRestart",
    "RestartHistory",
    "RestartStrategy",
    "exponential_delay",
    "failure_rate",
    "fixed_delay",
    "no_restart",
    "resolve_restart",
]

Classifier = Callable[[BaseException], bool]


def _seconds(value: DurationLike, option: str, *, allow_zero: bool = True) -> float:
    """A duration (``"10s"``, seconds, ``timedelta``) in seconds; a ConfigurationError naming ``option``."""
    return duration_us(value, option, allow_zero=allow_zero) / 1e6


@dataclass
class RestartHistory:
    """The failures of one ``run()`` (monotonic clock seconds), kept by the runner."""

    #: When each failure happened, oldest first (restarted or not).
    failures: list[float] = field(default_factory=list)
    #: When the current attempt started (the run's start, or the last restart).
    attempt_started: float = 0.0
    #: Restarts so far, and restarts since the last reset (``exponential_delay``).
    restarts: int = 0
    consecutive: int = 0


class RestartStrategy(ABC):
    """Decides whether, and after how long, a failed pipeline restarts (see the module docstring)."""

    classify: Classifier = staticmethod(default_classify)

    def retryable(self, exc: BaseException) -> bool:
        """True when ``exc`` may go away by itself (only those failures are restarted)."""
        return bool(self.classify(exc))

    @abstractmethod
    def delay(self, history: RestartHistory, now: float) -> float | None:
        """Seconds to wait before the next restart, or ``None`` to give up. ``history.failures`` already
        holds the failure at ``now``."""

    @abstractmethod
    def describe(self) -> str:
        """A short description for error notes and logs."""


@dataclass(frozen=True)
class NoRestart(RestartStrategy):
    """Never restart: the first failure ends the run (arrowflow's behaviour before restart strategies)."""

    def delay(self, history: RestartHistory, now: float) -> float | None:
        return None

    def describe(self) -> str:
        return "none"


def _check_classify(classify: Any) -> None:
    if not callable(classify):
        raise ConfigurationError("classify must be callable(exception) -> bool", option="classify")


@dataclass(frozen=True)
class FixedDelay(RestartStrategy):
    """Up to ``attempts`` restarts, each ``delay`` seconds after the failure."""

    attempts: int
    delay_s: float
    classify: Classifier = default_classify

    def __post_init__(self) -> None:
        check_type("attempts", self.attempts, int)
        if isinstance(self.attempts, bool) or self.attempts < 1:
            raise ConfigurationError(f"attempts must be >= 1, got {self.attempts!r}", option="attempts")
        _check_classify(self.classify)

    def delay(self, history: RestartHistory, now: float) -> float | None:
        return self.delay_s if history.restarts < self.attempts else None

    def describe(self) -> str:
        return f"fixed_delay(attempts={self.attempts}, delay={self.delay_s}s)"


@dataclass(frozen=True)
class ExponentialDelay(RestartStrategy):
    """Exponential backoff with full jitter, reset after ``reset_after`` seconds without a failure."""

    initial_s: float
    max_s: float
    multiplier: float
    reset_after_s: float
    attempts: int | None = None
    jitter: bool = True
    classify: Classifier = default_classify
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_s < self.initial_s:
            raise ConfigurationError(
                f"max ({self.max_s}s) must be >= initial ({self.initial_s}s)", option="max"
            )
        check_type("multiplier", self.multiplier, (int, float))
        if isinstance(self.multiplier, bool) or self.multiplier < 1:
            raise ConfigurationError(f"multiplier must be >= 1, got {self.multiplier!r}", option="multiplier")
        check_type("attempts", self.attempts, int, allow_none=True)
        if self.attempts is not None and (isinstance(self.attempts, bool) or self.attempts < 1):
            raise ConfigurationError(
                f"attempts must be >= 1 or None, got {self.attempts!r}", option="attempts"
            )
        check_type("jitter", self.jitter, bool)
        _check_classify(self.classify)
        rng = random.Random(self.seed)
        backoff = ExponentialBackoff(
            initial_delay=self.initial_s, max_delay=self.max_s, multiplier=self.multiplier, rng=rng
        )
        object.__setattr__(self, "_backoff", backoff)

    def delay(self, history: RestartHistory, now: float) -> float | None:
        if self.attempts is not None and history.restarts >= self.attempts:
            return None
        if history.consecutive and now - history.attempt_started >= self.reset_after_s:
            history.consecutive = 0  # ran long enough without a failure: start over from `initial`
        n = history.consecutive + 1
        backoff: ExponentialBackoff = self._backoff  # type: ignore[attr-defined]
        return backoff.delay(n) if self.jitter else backoff.cap(n)

    def describe(self) -> str:
        return (
            f"exponential_delay(initial={self.initial_s}s, max={self.max_s}s, multiplier={self.multiplier}, "
            f"reset_after={self.reset_after_s}s, attempts={self.attempts})"
        )


@dataclass(frozen=True)
class FailureRate(RestartStrategy):
    """Restart after ``delay`` unless more than ``max_failures`` failures fell within ``interval``."""

    max_failures: int
    interval_s: float
    delay_s: float
    classify: Classifier = default_classify

    def __post_init__(self) -> None:
        check_type("max_failures", self.max_failures, int)
        if isinstance(self.max_failures, bool) or self.max_failures < 1:
            raise ConfigurationError(
                f"max_failures must be >= 1, got {self.max_failures!r}", option="max_failures"
            )
        _check_classify(self.classify)

    def delay(self, history: RestartHistory, now: float) -> float | None:
        recent = [t for t in history.failures if now - t < self.interval_s]
        return self.delay_s if len(recent) <= self.max_failures else None

    def describe(self) -> str:
        return (
            f"failure_rate(max_failures={self.max_failures}, interval={self.interval_s}s, "
            f"delay={self.delay_s}s)"
        )


def no_restart() -> NoRestart:
    """Never restart (the default)."""
    return NoRestart()


def fixed_delay(attempts: int, delay: DurationLike, *, classify: Classifier = default_classify) -> FixedDelay:
    """Restart up to ``attempts`` times, ``delay`` (``"10s"``, seconds, ``timedelta``) after each failure."""
    return FixedDelay(attempts, _seconds(delay, "delay"), classify)


def exponential_delay(
    initial: DurationLike = "1s",
    max: DurationLike = "1m",
    multiplier: float = 2.0,
    reset_after: DurationLike = "1h",
    *,
    attempts: int | None = None,
    jitter: bool = True,
    classify: Classifier = default_classify,
    seed: int | None = None,
) -> ExponentialDelay:
    """Restart after a growing delay: the n-th restart in a row waits up to
    ``min(max, initial * multiplier ** (n - 1))`` (a uniform draw below that with ``jitter``, exactly
    that without); after ``reset_after`` without a failure the count starts over. ``attempts``: give up
    after that many restarts in all (``None``: never). ``seed`` makes the jitter reproducible."""
    return ExponentialDelay(
        _seconds(initial, "initial", allow_zero=False),
        _seconds(max, "max", allow_zero=False),
        multiplier,
        _seconds(reset_after, "reset_after", allow_zero=False),
        attempts,
        jitter,
        classify,
        seed,
    )


def failure_rate(
    max_failures: int,
    interval: DurationLike,
    delay: DurationLike,
    *,
    classify: Classifier = default_classify,
) -> FailureRate:
    """Restart after ``delay`` while at most ``max_failures`` failures happened within ``interval``."""
    return FailureRate(
        max_failures, _seconds(interval, "interval", allow_zero=False), _seconds(delay, "delay"), classify
    )


def resolve_restart(value: Any) -> RestartStrategy:
    """``run(restart=...)``: a :class:`RestartStrategy`, ``None`` or ``"none"``."""
    if value is None or value == "none":
        return NoRestart()
    if isinstance(value, RestartStrategy):
        return value
    raise ConfigurationError(
        "restart must be arrowflow.pipeline.restart.fixed_delay(...), exponential_delay(...), "
        f"failure_rate(...) or 'none', got {value!r}",
        option="restart",
    )
