"""Enrich retries in arrowflow's one retry vocabulary: ``retry=Retry(...)`` (full-jitter
``ExponentialBackoff``, ``classify`` = ``default_classify``, ``max_attempts``/``max_retry_time``),
``retry_on_result=``, and the deprecated 0.1.0 ``RetryStrategy``.

``fn`` is an in-process coroutine that fails on purpose (no service is involved: these tests are about
which attempts happen). No test times anything: waits are observed through the operator's
``retry_wait`` metric and attempts through ``fn``'s own counter.
"""

from __future__ import annotations

import asyncio
import random
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from arrowflow.errors import ConfigurationError, ConnectorError
from arrowflow.ops import Enrich, EnrichError, RetryStrategy
from arrowflow.retry import ExponentialBackoff, Retry, default_classify

#: Retries that wait at most a millisecond.
FAST = {"initial_backoff": 0.001, "max_backoff": 0.001}
FAILED = -1  # the on_error default of a request that failed for good


class Flaky:
    """``fn`` for ``per="row"``: the first ``fails`` attempts of each row raise ``error(x)``, then it
    returns ``2 * x``. ``attempts`` counts attempts per row (touched on the loop thread only)."""

    def __init__(self, error: Callable[[int], BaseException], fails: int, pause: float = 0.0) -> None:
        self.error = error
        self.fails = fails
        self.pause = pause
        self.attempts: Counter[int] = Counter()

    async def __call__(self, row: dict[str, Any]) -> int:
        x = row["x"]
        self.attempts[x] += 1
        if self.pause:
            await asyncio.sleep(self.pause)
        if self.attempts[x] <= self.fails:
            raise self.error(x)
        return 2 * x


def run(op: Enrich, n: int = 5) -> list[Any]:
    """The ``enriched`` column after sending rows ``x = 0 .. n-1`` through ``op``."""
    out: list[pa.RecordBatch] = []
    try:
        out += op.process(pa.record_batch({"x": list(range(n))}))
        out += op.flush()
    finally:
        op.close()
    return [v for b in out for v in b.column("enriched").to_pylist()]


NOT_RETRIED = {
    "ValueError": lambda x: ValueError(f"bad row {x}"),
    "KeyError": lambda x: KeyError(x),
    "ConnectorError(retryable=False)": lambda x: ConnectorError("rejected", retryable=False),
}
RETRIED = {
    "OSError": lambda x: OSError("network down"),
    "ConnectionResetError": lambda x: ConnectionResetError("reset"),
    "TimeoutError": lambda x: TimeoutError("slow"),
    "ConnectorError(retryable=True)": lambda x: ConnectorError("busy", retryable=True),
}


@pytest.mark.parametrize("error", NOT_RETRIED.values(), ids=NOT_RETRIED.keys())
def test_default_classify_does_not_retry_bugs(error: Callable[[int], BaseException]) -> None:
    fn = Flaky(error, fails=1)
    op = Enrich(fn, retry=Retry(max_attempts=3, **FAST), on_error=("default", FAILED))
    assert run(op) == [FAILED] * 5
    assert fn.attempts == {x: 1 for x in range(5)}
    assert op.retries == 0 and op.failures == 5


@pytest.mark.parametrize("error", RETRIED.values(), ids=RETRIED.keys())
def test_default_classify_retries_transient_errors(error: Callable[[int], BaseException]) -> None:
    fn = Flaky(error, fails=2)
    op = Enrich(fn, retry=Retry(max_attempts=3, **FAST))
    assert run(op) == [0, 2, 4, 6, 8]
    assert fn.attempts == {x: 3 for x in range(5)}
    assert op.retries == 10 and op.failures == 0


def test_a_value_error_fails_the_run_with_its_cause() -> None:
    op = Enrich(Flaky(lambda x: ValueError(f"bad row {x}"), fails=1), retry=Retry(max_attempts=3, **FAST))
    with pytest.raises(EnrichError) as info:
        run(op)
    assert isinstance(info.value.__cause__, ValueError)
    assert op.retries == 0


def test_max_attempts_counts_the_first_attempt() -> None:
    fn = Flaky(lambda x: OSError("down"), fails=10)
    op = Enrich(fn, retry=Retry(max_attempts=4, **FAST), on_error=("default", FAILED))
    assert run(op) == [FAILED] * 5
    assert fn.attempts == {x: 4 for x in range(5)}


def test_without_retry_a_transient_error_is_not_retried() -> None:
    fn = Flaky(lambda x: OSError("down"), fails=1)
    assert run(Enrich(fn, on_error=("default", FAILED))) == [FAILED] * 5
    assert fn.attempts == {x: 1 for x in range(5)}


def test_classify_comes_from_retry() -> None:
    fn = Flaky(lambda x: ValueError("wanted"), fails=1)
    retry = Retry(max_attempts=2, classify=lambda exc: isinstance(exc, ValueError), **FAST)
    assert run(Enrich(fn, retry=retry)) == [0, 2, 4, 6, 8]
    assert fn.attempts == {x: 2 for x in range(5)}


def test_a_timed_out_attempt_is_retried_by_default_classify() -> None:
    """The watchdog fails an attempt past ``timeout`` with TimeoutError, an OSError: retried."""
    attempts: Counter[int] = Counter()

    async def first_attempt_hangs(row: dict[str, Any]) -> int:
        attempts[row["x"]] += 1
        if attempts[row["x"]] == 1:
            await asyncio.sleep(60)  # cancelled by the watchdog long before
        return 2 * row["x"]

    op = Enrich(first_attempt_hangs, timeout=0.05, retry=Retry(max_attempts=2, **FAST))
    assert run(op) == [0, 2, 4, 6, 8]
    assert attempts == {x: 2 for x in range(5)}
    assert op.retries == 5


class SeededRetry(Retry):
    """A ``Retry`` whose backoff draws from a seeded generator, so the test knows every draw."""

    def backoff(self, rng: random.Random | None = None) -> ExponentialBackoff:
        return super().backoff(random.Random(17))


def test_waits_are_full_jitter_draws_of_the_retry_backoff() -> None:
    retry = SeededRetry(max_attempts=4, initial_backoff=0.002, max_backoff=0.004, backoff_multiplier=2)
    fn = Flaky(lambda x: OSError("down"), fails=3)
    # capacity=1: rows run one after another, so the draws come in retry order 1, 2, 3, 1, 2, 3 ...
    op = Enrich(fn, retry=retry, capacity=1)
    assert run(op, n=20) == [2 * x for x in range(20)]
    assert op.retries == 60

    twin = retry.backoff()
    expected = sum(twin.delay(k) for _ in range(20) for k in (1, 2, 3))
    caps = 20 * (0.002 + 0.004 + 0.004)  # min(max_backoff, initial * 2 ** (k - 1)) for k = 1, 2, 3
    assert op.retry_wait == pytest.approx(expected, rel=1e-12)
    # Full jitter: the draws are spread below the caps, not the caps themselves.
    assert 0 < op.retry_wait < 0.75 * caps


def test_max_retry_time_stops_retries() -> None:
    # Each attempt takes at least 20 ms, so after the first one 10 ms have passed for sure.
    fn = Flaky(lambda x: OSError("down"), fails=5, pause=0.02)
    retry = Retry(max_attempts=None, max_retry_time=0.01, **FAST)
    op = Enrich(fn, retry=retry, on_error=("default", FAILED))
    assert run(op) == [FAILED] * 5
    assert fn.attempts == {x: 1 for x in range(5)}
    assert op.retries == 0


def test_max_retry_time_alone_allows_many_attempts() -> None:
    fn = Flaky(lambda x: OSError("down"), fails=5)
    op = Enrich(fn, retry=Retry(max_attempts=None, max_retry_time=600, **FAST))
    assert run(op) == [0, 2, 4, 6, 8]
    assert fn.attempts == {x: 6 for x in range(5)}


def _status_then_value() -> tuple[Counter[int], Callable[[dict[str, Any]], Any]]:
    attempts: Counter[int] = Counter()

    async def lookup(row: dict[str, Any]) -> dict[str, Any]:
        attempts[row["x"]] += 1
        if attempts[row["x"]] == 1:
            return {"status": 503}
        return {"y": 2 * row["x"], "status": 200}

    return attempts, lookup


def _retrying_503(lookup: Callable[[dict[str, Any]], Any]) -> Enrich:
    return Enrich(
        lookup,
        retry=Retry(max_attempts=2, **FAST),
        retry_on_result=lambda r: r["status"] == 503,
        output=["y", "status"],
    )


def _ys(op: Enrich, xs: list[int]) -> list[Any]:
    """The ``y`` column after sending rows ``xs`` through ``op``."""
    out = list(op.process(pa.record_batch({"x": xs}))) + list(op.flush())
    op.close()
    return [v for b in out for v in b.column("y").to_pylist()]


def test_retry_on_result() -> None:
    attempts, lookup = _status_then_value()
    op = _retrying_503(lookup)
    assert _ys(op, [0, 1, 2]) == [0, 2, 4]
    assert attempts == {0: 2, 1: 2, 2: 2}
    assert op.retries == 3


def test_retry_on_result_exhausted_follows_on_error() -> None:
    attempts: Counter[int] = Counter()

    async def always_busy(row: dict[str, Any]) -> str:
        attempts[row["x"]] += 1
        return "busy"

    op = Enrich(
        always_busy,
        retry=Retry(max_attempts=3, **FAST),
        retry_on_result=lambda r: r == "busy",
        on_error="drop",
    )
    assert run(op) == []
    assert attempts == {x: 3 for x in range(5)}

    op = Enrich(always_busy, retry=Retry(max_attempts=2, **FAST), retry_on_result=lambda r: r == "busy")
    with pytest.raises(EnrichError, match="still rejected by retry_on_result after 2 attempts"):
        run(op)


def test_retry_strategy_still_works_and_warns() -> None:
    # 0.1.0 behaviour: every Exception is retried, ValueError included (Retry would not).
    fn = Flaky(lambda x: ValueError("flaky"), fails=2)
    with pytest.warns(DeprecationWarning, match=r"retry=Retry\(\.\.\.\)") as record:
        op = Enrich(fn, retry=RetryStrategy.fixed_delay(3, 0.001))
    assert [w.filename for w in record] == [__file__]  # the warning names the user's line
    assert isinstance(op.retry, RetryStrategy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the twin a parallel run makes does not warn again
        twin = op.for_subtask(0, 2)
    assert isinstance(twin.retry, RetryStrategy)
    assert run(op) == [0, 2, 4, 6, 8]
    assert fn.attempts == {x: 3 for x in range(5)}
    assert op.retries == 10
    fn.attempts.clear()
    assert run(twin) == [0, 2, 4, 6, 8]
    assert fn.attempts == {x: 3 for x in range(5)}
    # Without jitter: two fixed 1 ms waits per row.
    assert op.retry_wait == twin.retry_wait == pytest.approx(10 * 0.001)


def test_retry_strategy_result_predicate_still_works() -> None:
    attempts, lookup = _status_then_value()
    strategy = RetryStrategy.exponential_backoff(
        2, initial_delay=0.001, max_delay=0.002, retry_on_result=lambda r: r["status"] == 503
    )
    with pytest.warns(DeprecationWarning):
        op = Enrich(lookup, retry=strategy, output=["y", "status"])
    assert _ys(op, [0, 1]) == [0, 2]
    assert attempts == {0: 2, 1: 2}


def test_for_subtask_keeps_retry_and_retry_on_result() -> None:
    attempts, lookup = _status_then_value()
    op = _retrying_503(lookup)
    twin = op.for_subtask(1, 2)
    assert twin.retry == op.retry and twin.retry_on_result is op.retry_on_result
    assert _ys(twin, [0, 1]) == [0, 2]
    assert attempts == {0: 2, 1: 2}


async def _noop(row: dict[str, Any]) -> int:
    return 0


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"retry": 3}, "retry"),
        ({"retry": {"max_attempts": 3}}, "retry"),
        ({"retry": ExponentialBackoff(initial_delay=0.1, max_delay=1)}, "retry"),
        ({"retry_on_result": lambda r: False}, "retry_on_result"),  # no retry= to count attempts
        ({"retry": Retry(), "retry_on_result": "status"}, "retry_on_result"),
    ],
)
def test_bad_retry_options_fail_at_construction(kwargs: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Enrich(_noop, **kwargs)
    assert info.value.option == option


def test_retry_on_result_given_twice_is_an_error() -> None:
    strategy = RetryStrategy.fixed_delay(2, 0.0, retry_on_result=lambda r: False)
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigurationError) as info:
        Enrich(_noop, retry=strategy, retry_on_result=lambda r: True)
    assert info.value.option == "retry_on_result"


def test_aiohttp_status_errors_are_classified_without_a_warning() -> None:
    """What an aiohttp lookup raises reaches default_classify; reading its status must not warn
    (aiohttp's ClientResponseError warns when its deprecated ``code`` alias is read)."""
    from aiohttp import ClientResponseError, RequestInfo
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    info = RequestInfo(
        URL("http://127.0.0.1/"), "GET", CIMultiDictProxy(CIMultiDict()), URL("http://127.0.0.1/")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert default_classify(ClientResponseError(info, (), status=503))
        assert default_classify(ClientResponseError(info, (), status=429))
        assert not default_classify(ClientResponseError(info, (), status=404))
