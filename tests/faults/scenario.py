"""Running a piece of work through each network fault of :class:`proxy.FaultProxy`.

``FAULTS`` names the faults every connector's fault test goes through; :func:`run_through` injects
one while ``work`` runs and ends it the way a real incident ends:

* ``latency`` / ``bandwidth``: on for the whole work (a slow network);
* ``reset``: the next ``resets`` connections are reset after ``reset_bytes`` bytes, in the middle of
  a request (``up``) or of a reply (``down``);
* ``blackhole``: the proxy goes silent; once ``detected()`` is true (the client noticed, by its own
  timeout) the network heals, and the work must then finish;
* ``stall``: the proxy goes silent for ``stall`` seconds (longer than the client's timeout) and
  resumes by itself, with no heal.

Nothing is timed: every wait is on a condition, bounded by ``CAP`` (a test that waits that long has
failed: a hang, not a slow machine).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from proxy import FaultProxy

FAULTS = ("latency", "bandwidth", "reset", "blackhole", "stall")
#: The most any wait may take before the test fails (a hang).
CAP = 180.0


def check_recovered(fault: str, metrics: dict[str, int], proxy: FaultProxy) -> None:
    """What every fault test asserts of the client's ``metrics()`` after ``fault``: it met the fault
    (a request failed, its connection was dropped and it was sent again; for a silent network, by
    its own timeout), so the "nothing lost, nothing doubled" checks are not for lack of a replay."""
    if fault in ("reset", "blackhole", "stall"):
        assert metrics["retries"] >= 1 and metrics["reconnects"] >= 1, metrics
    if fault in ("blackhole", "stall"):
        assert metrics["timeouts"] >= 1, metrics
    if fault == "reset":
        assert proxy.stats()["resets"] >= 1


def wait_for(condition: Callable[[], bool], what: str, cap: float = CAP) -> None:
    end = time.monotonic() + cap
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {cap} s waiting for {what}")
        time.sleep(0.05)


def run_through(
    fault: str,
    proxy: FaultProxy,
    work: Callable[[], Any],
    *,
    detected: Callable[[], bool],
    stall: float = 6.0,
    reset_bytes: int = 2000,
    reset_direction: str = "up",
    resets: int = 2,
    latency: float = 0.02,
    bandwidth: float = 512_000,
) -> Any:
    """Run ``work()`` through ``fault`` (see the module docstring); returns what ``work`` returned
    and re-raises what it raised. ``detected`` tells when the client noticed a silent network."""
    if fault == "latency":
        proxy.set(latency=latency)
    elif fault == "bandwidth":
        proxy.set(bandwidth=bandwidth)
    elif fault == "reset":
        proxy.reset_after(reset_bytes, direction=reset_direction, times=resets)
    elif fault not in ("blackhole", "stall"):
        raise ValueError(f"unknown fault {fault!r}; choose from {FAULTS}")
    result: dict[str, Any] = {}

    def body() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    thread = threading.Thread(target=body, name=f"work-through-{fault}", daemon=True)
    try:
        if fault == "blackhole":
            proxy.blackhole()
            thread.start()
            wait_for(detected, "the client to notice the black hole (its timeout)")
            proxy.heal()
        elif fault == "stall":
            proxy.stall(stall)
            thread.start()
            wait_for(detected, "the client to notice the stall (its timeout)")
        else:
            thread.start()
        thread.join(CAP)
        if thread.is_alive():
            raise AssertionError(f"the work did not finish within {CAP} s after {fault}: a hang")
    finally:
        proxy.heal()  # also when the test fails: let the client's cleanup reach the server
    if "error" in result:
        raise result["error"]
    return result.get("value")


def write_through(
    fault: str, proxy: FaultProxy, sink: Any, rows: Any, *, chunk: int = 500, **faults: Any
) -> dict[str, int]:
    """Write ``rows`` (a table) into ``sink`` in batches of ``chunk`` rows, then flush, while
    ``fault`` is injected (:func:`run_through`; the sink noticed a silent network once its metrics
    count a timeout); close the sink and return its metrics as they were before the close."""
    try:

        def work() -> None:
            for batch in rows.to_batches(max_chunksize=chunk):
                sink.write(batch)
            sink.flush()

        run_through(fault, proxy, work, detected=lambda: sink.metrics()["timeouts"] >= 1, **faults)
        return dict(sink.metrics())
    finally:
        sink.close()
