"""Validation helpers shared by every configuration dataclass.

Configuration classes are frozen keyword-only dataclasses that call these helpers from
``__post_init__``, so bad values fail at construction with a :class:`ConfigurationError` naming the
option. :class:`Secret` wraps passwords, tokens and keys so they never show in a repr, log line or
error message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from .errors import ConfigurationError

__all__ = [
    "Secret",
    "check_choice",
    "check_non_negative",
    "check_positive",
    "check_type",
    "expand_env",
    "hide_secrets",
    "is_secret_key",
    "reveal",
    "reveal_secrets",
]

T = TypeVar("T")


class Secret:
    """A string that hides itself: ``repr``/``str`` print ``'***'``; ``reveal()`` returns the value.

    Equality compares the hidden values, so configurations holding secrets still compare equal.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise ConfigurationError("a secret must be a string", option="secret")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


#: Parts of an option name (split at ``_``, ``-``, ``.``) that mark a secret ...
_SECRET_PARTS = {
    "password",
    "passwd",
    "pwd",
    "secret",
    "secrets",
    "token",
    "tokens",
    "credential",
    "credentials",
    "apikey",
    "passphrase",
}
#: ... and key-like compounds that do (``key`` alone names a column or a message key, not a secret).
_SECRET_COMPOUNDS = (
    "api_key",
    "access_key",
    "private_key",
    "signing_key",
    "encryption_key",
    "master_key",
    "account_key",
)


def is_secret_key(name: str) -> bool:
    """True when an option called ``name`` holds a secret.

    The name, lower-cased and split at ``_``/``-``/``.``, contains ``password``, ``secret``, ``token``,
    ``credentials``, ``apikey``, ``passphrase`` (and a few spellings), or a key compound such as
    ``api_key``, ``access_key``, ``private_key``. ``key``, ``keys``, ``routing_key`` are not secrets.
    """
    lowered = name.lower().replace("-", "_").replace(".", "_")
    parts = set(lowered.split("_"))
    if parts & _SECRET_PARTS:
        return True
    return any(c in lowered for c in _SECRET_COMPOUNDS)


def hide_secrets(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a pass-through options dict with the values of secret-named keys wrapped in :class:`Secret`.

    Used for librdkafka-style ``config={...}`` dicts so that a ``sasl.password`` never shows in a repr.
    """
    return {k: Secret(v) if is_secret_key(str(k)) and isinstance(v, str) else v for k, v in options.items()}


def reveal_secrets(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``options`` with each :class:`Secret` replaced by its plain value (for a client)."""
    return {k: v.reveal() if isinstance(v, Secret) else v for k, v in options.items()}


def reveal(value: str | Secret | None) -> str | None:
    """The plain value of a ``Secret`` (or the string itself)."""
    if isinstance(value, Secret):
        return value.reveal()
    return value


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, *, option: str = "value", environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${NAME}`` / ``${NAME:-default}`` references with environment values.

    A missing variable without a default is a :class:`ConfigurationError` naming ``option``.
    """
    env = os.environ if environ is None else environ

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigurationError(f"{option}: environment variable ${{{name}}} is not set", option=option)

    return _ENV_REF.sub(repl, text)


def check_choice(option: str, value: T, allowed: Collection[T]) -> T:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigurationError(f"{option}={value!r} is not allowed; choose one of {choices}", option=option)
    return value


def check_positive(option: str, value: float | int | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{option} must be a positive number, got {value!r}", option=option)


def check_non_negative(option: str, value: float | int | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigurationError(f"{option} must be a number >= 0, got {value!r}", option=option)


def check_type(option: str, value: Any, types: type | tuple[type, ...], *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types) if isinstance(types, tuple) else types.__name__
        raise ConfigurationError(f"{option} must be {names}, got {type(value).__name__}", option=option)
