"""``QueueSource``: a push source that other Python code sends rows, dicts or batches into (the Python
counterpart of Bahir's Akka connector). The contract is in :mod:`.source`, the options in
:mod:`.config`; the bounded buffer it (and the push sources) read from is :mod:`.buffer`. Inside this
package ``import queue`` is absolute and still finds the standard library's module.
"""

from __future__ import annotations

from .buffer import OVERFLOW_POLICIES, PushBuffer, QueueFull, to_batch
from .config import QueueSourceConfig
from .source import QueueSource

__all__ = ["OVERFLOW_POLICIES", "PushBuffer", "QueueFull", "QueueSource", "QueueSourceConfig", "to_batch"]
