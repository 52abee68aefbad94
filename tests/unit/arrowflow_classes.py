"""Every class of arrowflow's connectors that derives from a base (sources, sinks), for the tests that
keep a table of them: a new class fails those tests until it is classified."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

import arrowflow.connectors

T = TypeVar("T", bound=type)


def subclasses_in_arrowflow(base: T) -> dict[str, T]:
    """``{name: class}`` of every subclass of ``base`` defined in arrowflow, once every connector
    module (and the Ray integration) is imported. A module that does not import fails the caller."""
    for info in pkgutil.walk_packages(arrowflow.connectors.__path__, "arrowflow.connectors."):
        try:
            importlib.import_module(info.name)
        except ImportError as exc:  # an optional client library: the table must see every class
            raise AssertionError(f"{info.name} does not import: {exc}") from exc
    importlib.import_module("arrowflow.integrations.ray")
    seen: dict[str, T] = {}
    todo = list(base.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("arrowflow.") and cls.__name__ not in seen:
            seen[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return seen
