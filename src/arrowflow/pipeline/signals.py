"""SIGINT/SIGTERM handling for a run in the main thread.

The first signal asks the run to stop gracefully (stop reading, final checkpoint, close, return). A
second signal raises :class:`KeyboardInterrupt` in the main thread at once: the run aborts without a
checkpoint. Handlers are only installed from the main thread (Python delivers signals there only) and
the previous handlers are restored on exit.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["stop_on_signals"]

_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(on_first: Callable[[int], None]) -> Iterator[bool]:
    """Install the two-step handlers while the block runs; yields whether they were installed."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    received = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        if received == 1:
            on_first(signum)
        else:
            name = signal.Signals(signum).name
            raise KeyboardInterrupt(f"second signal {name}: aborting without checkpoint")

    previous: dict[int, Any] = {}
    try:
        for sig in _SIGNALS:
            previous[sig] = signal.signal(sig, handler)
        yield True
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
