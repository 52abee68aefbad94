"""The module of the NATS source's pull socket before it moved to :mod:`arrowflow.connectors.nats._pull`
(private, but tests and tools imported it by this name); re-exports the same objects."""

from __future__ import annotations

from .nats._pull import Pulled, PullError, PullSocket, supported

__all__ = ["PullError", "PullSocket", "Pulled", "supported"]
