"""The options of :class:`~.sink.MongoSink`, checked in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...config import Secret, check_choice, check_type, hide_secrets
from ...errors import ConfigurationError


@dataclass(frozen=True, kw_only=True)
class MongoSinkConfig:
    """Options of :class:`MongoSink` (see the module docstring)."""

    uri: Secret | str
    database: str
    collection: str
    mode: str = "insert"
    keys: tuple[str, ...] = ("_id",)
    ordered: bool = False
    ignore_duplicates: bool = False
    nulls: str = "null"
    object_id: tuple[str, ...] | None = None
    bypass_document_validation: bool = False
    client_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_type("uri", self.uri, (str, Secret))
        if isinstance(self.uri, str):
            object.__setattr__(self, "uri", Secret(self.uri))
        for name in ("database", "collection"):
            value = getattr(self, name)
            check_type(name, value, str)
            if not value:
                raise ConfigurationError(f"{name} must not be empty", option=name)
        check_choice("mode", self.mode, ("insert", "replace", "update"))
        check_choice("nulls", self.nulls, ("null", "omit"))
        check_type("keys", self.keys, tuple)
        if not self.keys or not all(isinstance(k, str) and k for k in self.keys):
            raise ConfigurationError("keys must be a non-empty sequence of column names", option="keys")
        check_type("ordered", self.ordered, bool)
        check_type("ignore_duplicates", self.ignore_duplicates, bool)
        check_type("client_options", self.client_options, Mapping)
        # Secret-looking entries (password, tlsCertificateKeyFilePassword, ...) never show in repr.
        object.__setattr__(self, "client_options", hide_secrets(self.client_options))
