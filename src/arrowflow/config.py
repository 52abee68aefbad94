"""Validation helpers shared by every configuration dataclass.

Configuration classes are frozen keyword-only dataclasses that call these helpers from
``__post_init__``, so bad values fail at construction with a :class:`ConfigurationError` naming the
option. :class:`Secret` wraps passwords, tokens and keys so they never show in a repr, log line or
error message.

The one convention of every connector (``docs/writing-a-connector.md``): its constructor takes each
option as an explicit keyword argument, named and defaulted like a field of its configuration
dataclass, plus ``config=`` (a whole configuration); :func:`resolve_config` turns the two into the
one configuration object the connector keeps as ``self.config``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from .errors import ConfigurationError

__all__ = [
    "NO_OPTIONS",
    "REQUIRED",
    "ConfigAttributes",
    "Secret",
    "caller_stacklevel",
    "check_at_most",
    "check_choice",
    "check_exactly_one",
    "check_name",
    "check_non_negative",
    "check_positive",
    "check_type",
    "deprecated_keywords",
    "expand_env",
    "hide_secrets",
    "is_secret_key",
    "post_init_bases",
    "renamed_keyword",
    "resolve_config",
    "reveal",
    "reveal_secrets",
]

T = TypeVar("T")
C = TypeVar("C")


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

    Used for librdkafka-style ``client_options={...}`` dicts: a ``sasl.password`` never shows in a repr.
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


def check_name(option: str, value: Any) -> None:
    """``value`` is a non-empty string (a queue, topic, index, project, ... name)."""
    check_type(option, value, str)
    if not value:
        raise ConfigurationError(f"{option} must not be empty", option=option)


def check_exactly_one(**options: Any) -> None:
    """Exactly one of ``options`` is not ``None``; else an error naming the first option."""
    given = [name for name, value in options.items() if value is not None]
    if len(given) != 1:
        names = list(options)
        listed = " or ".join(names) if len(names) == 2 else ", ".join(names)
        raise ConfigurationError(f"give exactly one of {listed}", option=names[0])


class _Required:
    """The default of a constructor argument its configuration requires (see :data:`REQUIRED`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self) -> str:
        return "REQUIRED"


#: The default of a required option in a connector's constructor. The option must be given, either
#: by keyword or inside ``config=``; :func:`resolve_config` reports it missing otherwise (a
#: signature default, so that ``config=`` alone can stand for every option).
REQUIRED: Any = _Required()


class _NoOptions(Mapping[str, Any]):
    """An empty, read-only mapping that shows as ``{}`` (in signatures, ``help()`` and the docs)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"

    def __reduce__(self) -> str:
        return "NO_OPTIONS"


#: The default of a constructor's options mapping (``client_options`` ...): empty, read-only (a
#: shared default must not be mutable) and equal to its configuration field's ``{}`` default, so
#: that :func:`resolve_config` does not count it as given next to ``config=``.
NO_OPTIONS: Mapping[str, Any] = _NoOptions()


def _is_default(value: Any, field: dataclasses.Field[Any]) -> bool:
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
        if value is None and not default:
            # A constructor's ``None`` for an option whose default is an empty container
            # (``client_options: Mapping | None = None`` over ``field(default_factory=dict)``).
            return True
    else:
        return False  # a required option: given whenever the constructor ran
    if value is default:
        return True
    try:
        return bool(value == default)
    except Exception:  # objects whose == is not a truth value (arrays): not the default
        return False


def resolve_config(
    config_type: type[C], config: C | None, options: Mapping[str, Any], **deprecated: Any
) -> C:
    """The configuration of a connector that follows the one convention.

    ``options`` holds the constructor's keyword arguments (its ``locals()`` will do: only the names
    of ``config_type``'s init fields are read; a required option's argument defaults to
    :data:`REQUIRED`). Without ``config`` the result is
    ``config_type(**those, **deprecated)`` (``deprecated``: old keyword names the configuration still
    accepts with a ``DeprecationWarning``). With ``config`` (which must be a ``config_type``), every
    option must have its default and nothing deprecated may be given: a configuration and separate
    options together are a :class:`ConfigurationError` naming the first option given.
    """
    fields = [f for f in dataclasses.fields(config_type) if f.init]  # type: ignore[arg-type]
    if config is None:
        values = {f.name: options[f.name] for f in fields if options.get(f.name, REQUIRED) is not REQUIRED}
        for f in fields:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and f.name not in values:
                raise ConfigurationError(f"{f.name} is required", option=f.name)
        return config_type(**values, **deprecated)
    check_type("config", config, config_type)
    given = [
        f.name
        for f in fields
        if options.get(f.name, REQUIRED) is not REQUIRED and not _is_default(options[f.name], f)
    ]
    given += list(deprecated)
    if given:
        raise ConfigurationError(
            f"give either config or individual options, not both (also given: {', '.join(given)})",
            option=given[0],
        )
    return config


class ConfigAttributes:
    """Mixin of a connector that keeps its options in ``self.config``: each option also reads as an
    attribute (``sink.routing_key`` is ``sink.config.routing_key``), as the connectors of 0.1.0 kept
    them. Read-only: an option is changed by building a new configuration."""

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup failed; never for dunders (pickling probes them).
        if not name.startswith("__"):
            state = object.__getattribute__(self, "__dict__")
            config = state.get("config", state.get("_connector_config"))
            if (
                config is not None
                and dataclasses.is_dataclass(config)
                and name in {f.name for f in dataclasses.fields(config)}
            ):
                return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def post_init_bases(parent: Any) -> None:
    """Run the next ``__post_init__`` in the MRO, if any: call it first thing in the
    ``__post_init__`` of an options dataclass meant to be combined with others
    (``post_init_bases(super())``), so every base checks its own fields."""
    post_init = getattr(parent, "__post_init__", None)
    if post_init is not None:
        post_init()


def check_at_most(option: str, value: float | int, limit: float | int, why: str) -> None:
    """``value <= limit``; else an error naming the option and ``why`` (the limit's origin)."""
    if value > limit:
        raise ConfigurationError(f"{option} must be <= {limit} ({why}), got {value!r}", option=option)


def caller_stacklevel() -> int:
    """The ``stacklevel`` of a warning that names the first caller outside arrowflow (the user's line,
    however deep inside arrowflow the warning is raised)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("arrowflow."):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def deprecated_keywords(
    *names: str,
    advice: Callable[[Sequence[str]], str],
    fold: Callable[[dict[str, Any], dict[str, Any]], None],
    read: Callable[..., Any],
) -> Callable[[type[C]], type[C]]:
    """Class decorator of a configuration dataclass (apply it on top of ``@dataclass``): its
    constructor still accepts the 0.1.0 keywords ``names``, with a ``DeprecationWarning`` naming the
    user's line and saying what to pass instead (``advice(old names given)``).

    ``fold(kwargs, old)`` turns the old keywords given (``old``: name -> value) into current options
    by updating ``kwargs`` (the other keyword arguments); it raises a :class:`ConfigurationError`
    naming the old keyword when the value is bad or the option it became is given too. Reading
    ``config.<name>`` still works: ``read(config, name=name)``. ``dataclasses.replace`` and pickling
    pass current field names only, so they never warn.
    """

    def decorate(cls: type[C]) -> type[C]:
        original = cls.__init__  # type: ignore[misc]

        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            old = {n: kwargs.pop(n) for n in names if n in kwargs}
            if old:
                verb = "is" if len(old) == 1 else "are"
                warnings.warn(
                    f"{cls.__name__}: {', '.join(old)} {verb} deprecated; pass {advice(list(old))}",
                    DeprecationWarning,
                    stacklevel=caller_stacklevel(),
                )
                fold(kwargs, old)
            original(self, *args, **kwargs)

        cls.__init__ = __init__  # type: ignore[method-assign]
        for name in names:
            doc = f"Deprecated: {advice([name])}."
            setattr(cls, name, property(functools.partial(read, name=name), doc=doc))
        return cls

    return decorate


def renamed_keyword(old: str, new: str, what: str) -> Callable[[type[C]], type[C]]:
    """:func:`deprecated_keywords` for an option renamed from ``old`` to ``new`` (``what``: what it
    holds, for the warning): ``old=`` still sets ``new``, giving both is an error naming ``old``,
    and ``config.<old>`` reads ``config.<new>``."""

    def fold(kwargs: dict[str, Any], given: dict[str, Any]) -> None:
        if kwargs.get(new) not in (None, {}):  # an empty mapping is a default, not "given"
            raise ConfigurationError(f"give {new} or the deprecated {old}, not both", option=old)
        kwargs[new] = given[old]

    def read(config: Any, name: str) -> Any:
        return getattr(config, new)

    return deprecated_keywords(old, advice=lambda _: f"{new}= ({what})", fold=fold, read=read)
