"""Every connector has one shape (issue 17, item 1): a package ``arrowflow/connectors/<name>/`` with
``config.py`` (its options) and its classes in ``source.py`` / ``sink.py``, or in a module named for
a second variant of the same system. Only the small built-ins listed below stay single modules.

A connector added as a loose module, a package without ``config.py`` or a class defined anywhere
else fails here until it takes the shape (or is listed, with its reason).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from pathlib import Path

import pytest

from arrowflow.connectors.registry import CONNECTORS, ConnectorInfo
from arrowflow.pipeline_spec.build import _hints

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


#: Constructor keywords that are not options of the configuration dataclass: objects made or
#: shared at run time (a dead-letter sink, a client or session, an AWS connection, a metrics name).
RUNTIME_KEYWORDS = {"error_policy", "client", "session", "connection", "aws", "name"}
#: The search engines' connection (``hosts``, ``client_options``, ``flavor``) builds their client;
#: ``SearchSourceConfig``/``SearchSinkConfig`` hold what is read or written, shared by both engines.
CONNECTION_KEYWORDS = {"elasticsearch": {"hosts", "client_options", "flavor"}}
CONNECTION_KEYWORDS["opensearch"] = CONNECTION_KEYWORDS["elasticsearch"]
#: Classes whose options come from another class's signature (``**kwargs``): the variant passes them on.
PASSES_ON = {"TransactionalKafkaSink": "KafkaSink"}
#: Positional spellings of a field: DataGenSource's first argument is ``fields``.
ALIASES = {"schema_spec"}
#: Fields a configuration still accepts from 0.1.0 (with a DeprecationWarning) that no constructor
#: offers any more.
DEPRECATED_FIELDS = {"MqttSourceConfig": {"reconnect_delay"}, "MqttSinkConfig": {"reconnect_delay"}}


def _config_dataclass(cls: type) -> type | None:
    hint = _hints(cls).get("config")
    members = typing.get_args(hint) or (hint,)
    found = [m for m in members if isinstance(m, type) and dataclasses.is_dataclass(m)]
    return found[0] if found else None


CLASSES = [
    (info.name, name)
    for info in CONNECTORS
    if info.status == "available" and info.name not in SINGLE_MODULES
    for name in (*info.sources, *info.sinks)
]


@pytest.mark.parametrize(("connector", "name"), CLASSES, ids=[f"{c}.{n}" for c, n in CLASSES])
def test_every_keyword_is_an_option_of_the_config_dataclass(connector: str, name: str) -> None:
    """Item 3: explicit keyword arguments mirrored by the config dataclass, which ``config=`` takes
    whole. A keyword the dataclass lacks would escape its checks (and ``config=``); a field with no
    keyword could not be given one by one."""
    info = next(i for i in CONNECTORS if i.name == connector)
    module = importlib.import_module(info.module)
    cls = getattr(module, PASSES_ON.get(name, name))
    config = _config_dataclass(cls)
    assert config is not None, f"{name} takes no config= of a configuration dataclass"
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    keywords = {
        p.name
        for p in params.values()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in ("self", "config")
    }
    fields = {f.name for f in dataclasses.fields(config) if f.init}
    allowed = RUNTIME_KEYWORDS | CONNECTION_KEYWORDS.get(connector, set()) | ALIASES
    deprecated = DEPRECATED_FIELDS.get(config.__name__, set())
    assert keywords - fields - allowed == set(), f"{name}: keywords that are not fields of {config.__name__}"
    assert fields - keywords - deprecated == set(), f"{name}: fields of {config.__name__} with no keyword"
