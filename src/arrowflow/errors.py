"""The exception hierarchy.

Every error arrowflow raises derives from :class:`ArrowflowError`. Errors that mean the same thing as
a builtin also inherit it (``ConfigurationError`` is a ``ValueError``), so callers can catch either.
"""

from __future__ import annotations

__all__ = [
    "ArrowflowError",
    "CheckpointError",
    "ConfigurationError",
    "ConnectorError",
    "SerializationError",
]


class ArrowflowError(Exception):
    """Base class of every error raised by arrowflow."""


class ConfigurationError(ArrowflowError, ValueError):
    """A configuration value is missing, of the wrong type, or not among the allowed values.

    Raised at construction time; the message names the option and what is allowed.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class SerializationError(ArrowflowError, ValueError):
    """A row could not be encoded, or a payload could not be decoded."""


class ConnectorError(ArrowflowError):
    """An external system failed. ``retryable`` says whether trying again may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class CheckpointError(ArrowflowError):
    """A checkpoint could not be written or restored."""
