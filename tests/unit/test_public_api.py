"""No public name of arrowflow 0.1.0 disappears.

``public_api_0_1_0.txt`` (written once by ``tests/tools/dump_public_api.py`` on the 0.1.0 tree; its
header describes the format) lists every public module and ``module:name``, the connector catalogue,
what a pipeline YAML file can name, the pip extras, console scripts and CLI subcommands. Each test
checks one kind of entry and fails listing every entry that no longer holds, so a refactor that moves
modules (``pulsar_broker`` -> ``pulsar``, ``redis_`` -> ``redis`` ...) sees at once which old import
paths it still has to keep working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

BASELINE = Path(__file__).with_name("public_api_0_1_0.txt")
TAGS = ("module", "name", "connector", "yaml", "format", "operator", "run", "extra", "script", "command")


def _entries() -> dict[str, list[list[str]]]:
    by_tag: dict[str, list[list[str]]] = defaultdict(list)
    for number, line in enumerate(BASELINE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        tag, *fields = line.split()
        assert tag in TAGS, f"{BASELINE.name}:{number}: unknown entry {tag!r}"
        by_tag[tag].append(fields)
    return by_tag


ENTRIES = _entries()


def _options(fields: list[str]) -> dict[str, str]:
    return dict(f.split("=", 1) for f in fields if "=" in f)


def resolve(path: str) -> Any:
    """The object at ``module`` or ``module:name``."""
    module_name, _, name = path.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, name) if name else module


_GONE = object()


def _try(path: str, problems: list[str] | None = None) -> Any:
    """The object at ``path``, or ``_GONE`` (noting in ``problems``, if given, why it no longer imports).

    Only the module and name tests report a missing path; the others skip it, so that one lost
    import is reported once.
    """
    try:
        return resolve(path)
    except Exception as exc:  # an ImportError, AttributeError, or whatever the import raises
        if problems is not None:
            problems.append(f"{path}: disappeared ({type(exc).__name__}: {exc})")
        return _GONE


def _report(problems: list[str], what: str) -> None:
    if problems:
        pytest.fail(
            f"{len(problems)} {what} of 0.1.0 no longer hold:\n  " + "\n  ".join(problems), pytrace=False
        )


def test_the_baseline_is_whole() -> None:
    # A truncated or emptied baseline would make every other test here pass vacuously.
    assert all(ENTRIES[tag] for tag in TAGS), [tag for tag in TAGS if not ENTRIES[tag]]
    assert len(ENTRIES["name"]) > 300 and len(ENTRIES["module"]) > 80
    assert ["arrowflow.connectors:KafkaSink", "class"] in [f[:2] for f in ENTRIES["name"]]


def test_every_module_still_imports() -> None:
    problems: list[str] = []
    for (module,) in ENTRIES["module"]:
        _try(module, problems)
    _report(problems, "modules")


def test_every_public_name_still_imports_as_the_same_kind_of_object() -> None:
    problems: list[str] = []
    for path, kind, *_ in ENTRIES["name"]:
        obj = _try(path, problems)
        if obj is _GONE:
            continue
        # A function may become a class (a factory turned into a type); a class must stay a class.
        if kind == "class" and not isinstance(obj, type):
            problems.append(f"{path}: was a class, is now {obj!r}")
        if kind == "callable" and not callable(obj):
            problems.append(f"{path}: was callable, is now {obj!r}")
    _report(problems, "public names")


def test_names_that_were_one_object_still_are() -> None:
    # e.g. arrowflow.connectors:PulsarSink and arrowflow.connectors.pulsar_broker:PulsarSink: a shim
    # module that defines its own copy would break isinstance checks and pickles.
    groups: dict[str, list[str]] = defaultdict(list)
    for path, _kind, *rest in ENTRIES["name"]:
        identity = next((f for f in rest if "=" not in f), None)
        if identity is not None:
            groups[identity].append(path)
    problems: list[str] = []
    for identity, paths in sorted(groups.items()):
        objects = [_try(p) for p in paths]
        if all(o is not _GONE for o in objects) and any(o is not objects[0] for o in objects[1:]):
            problems.append(f"{', '.join(paths)} (all {identity} in 0.1.0) are now different objects")
    _report(problems, "shared identities")


def test_every_public_class_keeps_its_public_bases() -> None:
    problems: list[str] = []
    for path, kind, *rest in ENTRIES["name"]:
        bases = _options(rest).get("bases")
        if kind != "class" or not bases:
            continue
        cls = _try(path)
        if not isinstance(cls, type):
            continue
        for base_path in bases.split(","):
            base = _try(base_path)
            if isinstance(base, type) and not issubclass(cls, base):
                problems.append(f"{path} is no longer a subclass of {base_path}")
    _report(problems, "class hierarchies")


def test_every_catalogue_entry_and_class_is_still_listed() -> None:
    from arrowflow.connectors import registry

    names = {info.name: info for info in registry.CONNECTORS}
    sources = {c for info in registry.CONNECTORS for c in info.sources}
    sinks = {c for info in registry.CONNECTORS for c in info.sinks}
    problems: list[str] = []
    for name, *rest in ENTRIES["connector"]:
        options = _options(rest)
        info = names.get(name)
        if info is None:
            problems.append(f"connector {name!r} is no longer in the registry")
        elif info.extra != options.get("extra"):
            problems.append(f"connector {name!r}: extra was {options.get('extra')!r}, is {info.extra!r}")
        for role, listed in (("sources", sources), ("sinks", sinks)):
            for cls in options.get(role, "").split(","):
                if cls and cls not in listed:
                    problems.append(f"{cls} is no longer among the registry's {role}")
    _report(problems, "catalogue entries")


def test_every_yaml_name_builds_the_same_class() -> None:
    from arrowflow.errors import ConfigurationError
    from arrowflow.pipeline_spec.build import OPERATORS, RUN_OPTIONS, resolve_connector

    problems: list[str] = []
    for spec, path in ENTRIES["yaml"]:
        role, type_name = spec.split(":")
        expected = _try(path, problems)
        try:
            cls = resolve_connector(type_name, role)
        except ConfigurationError as exc:
            problems.append(f"{role} type {type_name!r}: {exc}")
            continue
        if cls is not expected:
            problems.append(f"{role} type {type_name!r} builds {cls!r}, was {path}")
    problems += [f"operator {name!r} is gone" for (name,) in ENTRIES["operator"] if name not in OPERATORS]
    problems += [f"run option {name!r} is gone" for (name,) in ENTRIES["run"] if name not in RUN_OPTIONS]
    _report(problems, "YAML names")


def test_every_format_name_still_resolves() -> None:
    from arrowflow.formats import FORMATS, Format, for_name

    problems = [f"format {name!r} is gone" for (name,) in ENTRIES["format"] if name not in FORMATS]
    for (name,) in ENTRIES["format"]:
        if name in FORMATS and not issubclass(FORMATS[name], Format):
            problems.append(f"format {name!r} is {FORMATS[name]!r}, not a Format")
    _report(problems, "format names")
    assert isinstance(for_name("json"), Format)


def test_extras_scripts_and_commands_remain() -> None:
    from arrowflow.cli import cli

    dist = importlib.metadata.distribution("arrowflow")
    extras = set(dist.metadata.get_all("Provides-Extra") or [])
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    problems = [f"extra {name!r} is gone" for (name,) in ENTRIES["extra"] if name not in extras]
    for name, value in ENTRIES["script"]:
        if scripts.get(name) != value:
            problems.append(f"console script {name!r} was {value}, is {scripts.get(name)!r}")
    problems += [f"command {n!r} is gone" for (n,) in ENTRIES["command"] if n not in cli.commands]
    _report(problems, "distribution entries")


#: 0.1.0 module -> the package that now defines its objects (the module is a re-export shim).
SHIMS = {
    "arrowflow.connectors.mqtt_broker": "arrowflow.connectors.mqtt",
    "arrowflow.connectors.pulsar_broker": "arrowflow.connectors.pulsar",
    "arrowflow.connectors.gcp_pubsub": "arrowflow.connectors.pubsub",
    "arrowflow.connectors.redis_": "arrowflow.connectors.redis",
    "arrowflow.connectors.redis_.sink": "arrowflow.connectors.redis",
    "arrowflow.connectors.redis_.source": "arrowflow.connectors.redis",
    "arrowflow.connectors.nats_jetstream": "arrowflow.connectors.nats",
    "arrowflow.connectors.console": "arrowflow.connectors.print",
    "arrowflow.connectors._nats_pull": "arrowflow.connectors.nats",
    "arrowflow._ext.json": "arrowflow._ext.json_encode",
    "arrowflow._ext.bson": "arrowflow._ext.bson_encode",
}


@pytest.mark.parametrize("shim, package", sorted(SHIMS.items()))
def test_a_renamed_module_re_exports_its_package(shim: str, package: str) -> None:
    # A shim that defined its own copy of a class would split isinstance checks and pickles between
    # the old and the new import path; every name it exports must be the package's own object.
    module = importlib.import_module(shim)
    names = list(module.__all__)
    assert names, f"{shim} exports nothing"
    problems: list[str] = []
    for name in names:
        obj = getattr(module, name)
        if callable(obj):  # a class or function: defined in the package (or one of its modules)
            home = obj.__module__
            if home != package and not home.startswith(package + "."):
                problems.append(f"{shim}:{name} is defined in {home}, not in {package}")
        elif getattr(importlib.import_module(package), name, None) is not obj:  # a value
            problems.append(f"{shim}:{name} is not {package}:{name}")
    _report(problems, "re-exports")


def test_every_connector_package_is_named_after_its_registry_entry() -> None:
    from arrowflow.connectors import registry

    # The two search flavours of one package.
    exceptions = {
        "elasticsearch": "arrowflow.connectors.search.elasticsearch",
        "opensearch": "arrowflow.connectors.search.opensearch",
    }
    problems = [
        f"connector {info.name!r} lives in {info.module}"
        for info in registry.CONNECTORS
        if info.module != exceptions.get(info.name, f"arrowflow.connectors.{info.name}")
    ]
    _report(problems, "registry modules")
