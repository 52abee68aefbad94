"""Option checks the broker configurations share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...config import check_type, hide_secrets

__all__ = ["pass_through"]


def pass_through(option: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A client library's own options (``connect_options``, ...) as a dict, ``None`` as ``{}``, with
    secret-named values hidden in reprs; anything but a mapping is an error naming ``option``."""
    check_type(option, options, Mapping, allow_none=True)
    return hide_secrets(dict(options or {}))
