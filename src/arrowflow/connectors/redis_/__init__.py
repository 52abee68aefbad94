"""0.1.0's name of :mod:`arrowflow.connectors.redis` (the package was called ``redis_``); re-exports
every public name of it (its ``__all__``), so the two cannot drift apart."""

from __future__ import annotations

from ..redis import *  # noqa: F403
from ..redis import __all__ as __all__
