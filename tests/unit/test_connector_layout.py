"""Every connector has one shape (issue 17, item 1): a package ``arrowflow/connectors/<name>/`` with
``config.py`` (its options) and its classes in ``source.py`` / ``sink.py``, or in a module named for
a second variant of the same system. Only the small built-ins listed below stay single modules.

A connector added as a loose module, a package without ``config.py`` or a class defined anywhere
else fails here until it takes the shape (or is listed, with its reason).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from arrowflow.connectors.registry import CONNECTORS, ConnectorInfo

#: Built-ins small enough to read in one sitting, with no client and (except collection) no config
#: class worth a module: the registry name is the module name.
SINGLE_MODULES = {"collection", "print", "null", "memory", "hybrid"}

#: A second class of a system in a module named for what it reads or writes, beside the package's
#: ``source.py`` / ``sink.py``.
VARIANT_MODULES = {
    "TransactionalKafkaSink": "transactional",
    "MongoChangeStreamSource": "change_stream",
    "DynamoDBStreamsSource": "streams",
    "TcpPushSource": "tcp",
    "HttpPushSource": "http",
}

#: One search package serves both search engines (item 2: one sink parameterised by client); the
#: registry names each engine's module, a thin binding of the shared classes to its client.
SHARED_PACKAGES = {"elasticsearch": "search", "opensearch": "search"}


def _package_of(info: ConnectorInfo) -> str:
    return SHARED_PACKAGES.get(info.name, info.name)


@pytest.mark.parametrize("info", CONNECTORS, ids=lambda info: info.name)
def test_each_connector_is_a_package_of_config_source_and_sink(info: ConnectorInfo) -> None:
    package = f"arrowflow.connectors.{_package_of(info)}"
    if info.name in SINGLE_MODULES:
        assert info.module == package
        assert not hasattr(importlib.import_module(package), "__path__"), f"{package} is a package now"
        return
    module = importlib.import_module(package)
    assert hasattr(module, "__path__"), f"{info.name} is a single module, not a package"
    folder = Path(module.__file__ or "").parent
    assert (folder / "config.py").is_file(), f"{package} has no config.py"
    entry = importlib.import_module(info.module)
    for role, names in (("source", info.sources), ("sink", info.sinks)):
        for name in names:
            defined_in = getattr(entry, name).__module__
            expected = f"{package}.{VARIANT_MODULES.get(name, role)}"
            if info.name in SHARED_PACKAGES:
                expected = info.module  # the engine's binding of the shared class
            assert defined_in in (expected, f"{package}.{role}"), (
                f"{name} is defined in {defined_in}, not in {expected}"
            )
