"""Retry building blocks shared by every sink that talks to a remote system.

* :class:`ExponentialBackoff` computes the delay before retry number ``n`` with *full jitter*
  (AWS Architecture Blog, "Exponential Backoff And Jitter"): a uniform draw in
  ``[0, min(max_delay, initial_delay * multiplier ** (n - 1))]``. Full jitter spreads the retries of
  many writers that failed together, so they do not hammer a recovering server in lock-step.
* :func:`default_classify` decides whether an exception that failed a whole request is worth
  retrying: a :class:`~arrowflow.errors.ConnectorError` says so itself (``retryable``); network-level
  errors (``OSError``, which covers ``ConnectionError`` and ``TimeoutError``) are retryable; anything
  else (a bug, a rejected payload) is fatal.

Nothing here sleeps or spawns threads; callers decide how to wait.
"""

from __future__ import annotations

import random

from .errors import ConnectorError

__all__ = ["ExponentialBackoff", "default_classify"]


class ExponentialBackoff:
    """Full-jitter exponential backoff. Thread-safe (``random.Random`` draws are atomic under the GIL).

    The arguments are assumed validated by the caller's configuration (positive delays,
    ``multiplier >= 1``); ``rng`` makes the draws reproducible in tests.
    """

    __slots__ = ("_rng", "initial_delay", "max_delay", "multiplier")

    def __init__(
        self,
        *,
        initial_delay: float,
        max_delay: float,
        multiplier: float,
        rng: random.Random | None = None,
    ) -> None:
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


def default_classify(exc: BaseException) -> bool:
    """True when a request that failed with ``exc`` may succeed if sent again."""
    if isinstance(exc, ConnectorError):
        return exc.retryable
    # ConnectionError and TimeoutError are OSError subclasses; so are socket errors and urllib's
    # URLError, which wrap transient network conditions.
    return isinstance(exc, OSError)
