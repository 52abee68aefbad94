"""Write down arrowflow's public API, one entry per line (the baseline ``test_public_api`` holds to).

Run once per release baseline, on the released tree, with every extra installed (``.[dev]``)::

    .venv/bin/python tests/tools/dump_public_api.py > tests/unit/public_api_0_1_0.txt

What counts as public:

* every importable module whose dotted path has no component starting with ``_``, plus
  ``arrowflow._ext`` and its kernel modules (``arrowflow._ext.KERNELS``); ``__main__`` is left out
  (importing it runs the command line);
* every name in such a module's ``__all__`` (a public module without ``__all__`` is an error here:
  declare one), with its kind (``class``, ``callable`` or ``value``), for classes and callables the
  object's defining ``module.qualname`` (entries sharing it must stay one object) and, for classes,
  the public arrowflow classes and builtin exceptions in its MRO (``isinstance`` users rely on);
* the connector catalogue (:mod:`arrowflow.connectors.registry`): each name with its source and sink
  classes and its extra;
* what a pipeline YAML file can name: the class each connector ``type`` (and alias) resolves to per
  role, the ``format`` names, the ``operators`` and the ``run:`` options;
* the pip extras and console scripts of the installed distribution, and the CLI's subcommands.

The output format is described in its header; the test parses exactly that.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import sys
import typing
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import arrowflow

HEADER = """\
# The public API of arrowflow {version}, frozen: tests/unit/test_public_api.py fails when an entry no
# longer holds. Written by tests/tools/dump_public_api.py on the {version} tree; never edit by hand, and
# never regenerate to make the test pass (a new baseline belongs to a new release).
#
# module   <module>                               `import <module>` works
# name     <module>:<name> <kind> [<identity>] [bases=<public class>,...]
#          `from <module> import <name>` works and the object is still a <kind> (class, callable,
#          value); entries with the same <identity> (the {version} defining module.qualname) are
#          still one object; a class is still a subclass of each of its bases
# connector <name> [extra=<extra>] [sources=<Class>,...] [sinks=<Class>,...]
#          the catalogue still has <name> (with that extra) and still lists each class in that role
# yaml     <role>:<type> <module>:<name>          a YAML `type: <type>` in <role> builds that class
# format   <name>                                 a YAML/CLI format name
# operator <name>                                a YAML operator
# run      <name>                                 a YAML `run:` option
# extra    <name>                                 `pip install 'arrowflow[<name>]'`
# script   <name> <module>:<function>             a console script
# command  <name>                                 an `arrowflow <name>` subcommand
"""


def _is_public_module(name: str) -> bool:
    parts = name.split(".")
    if parts[-1] == "__main__":
        return False
    if parts[:2] == ["arrowflow", "_ext"]:
        return len(parts) == 2 or parts[2] in _kernels()
    return not any(p.startswith("_") for p in parts)


def _kernels() -> tuple[str, ...]:
    from arrowflow import _ext

    return _ext.KERNELS


def public_modules() -> list[ModuleType]:
    """Every public module, imported (packages are walked; an import failure is an error)."""

    def fail(name: str) -> None:
        raise ImportError(f"cannot import {name} while walking arrowflow")

    names = {"arrowflow", "arrowflow._ext", *(f"arrowflow._ext.{k}" for k in _kernels())}
    for info in pkgutil.walk_packages(arrowflow.__path__, "arrowflow.", onerror=fail):
        names.add(info.name)
    return [importlib.import_module(n) for n in sorted(names) if _is_public_module(n)]


def _kind(obj: Any) -> str:
    if typing.get_origin(obj) is not None:
        return "value"  # a type alias such as ``Callable[[], Source]`` (callable, but not a function)
    if isinstance(obj, type):
        return "class"
    if isinstance(obj, ModuleType):
        return "module"
    return "callable" if callable(obj) else "value"


def _identity(obj: Any) -> str | None:
    if _kind(obj) not in ("class", "callable"):
        return None
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not (isinstance(module, str) and isinstance(qualname, str)):
        return None
    return f"{module}.{qualname}"


def public_names(modules: list[ModuleType]) -> dict[str, Any]:
    """``module:name`` -> object, for every name in every public module's ``__all__``."""
    names: dict[str, Any] = {}
    for module in modules:
        exported = getattr(module, "__all__", None)
        if exported is None:
            raise SystemExit(f"{module.__name__} is public but has no __all__: declare its public names")
        for name in exported:
            names[f"{module.__name__}:{name}"] = getattr(module, name)
    return names


def _preferred(paths: list[str]) -> str:
    # The shortest import path (``arrowflow:Sink`` before ``arrowflow.sink:Sink``), then alphabetical.
    return min(paths, key=lambda p: (p.count("."), len(p), p))


def _public_bases(cls: type, by_object: dict[int, list[str]]) -> list[str]:
    """The public arrowflow classes and builtin exceptions ``cls`` derives from, none implied by another."""
    kept = [
        base
        for base in cls.__mro__[1:]
        if id(base) in by_object or (base.__module__ == "builtins" and issubclass(base, BaseException))
    ]
    minimal = [b for b in kept if not any(o is not b and issubclass(o, b) for o in kept)]
    return [_preferred(by_object[id(b)]) if id(b) in by_object else f"builtins:{b.__name__}" for b in minimal]


def name_lines(names: dict[str, Any]) -> Iterator[str]:
    by_object: dict[int, list[str]] = {}
    for path, obj in names.items():
        by_object.setdefault(id(obj), []).append(path)
    identities: dict[str, int] = {}
    for path, obj in sorted(names.items()):
        kind = _kind(obj)
        identity = _identity(obj)
        fields = [f"{path} {kind}"]
        if identity is not None:
            # Two different public objects with one identity would make the test demand they are one.
            if identities.setdefault(identity, id(obj)) != id(obj):
                raise SystemExit(f"{path}: two different objects are both {identity}")
            fields.append(identity)
        if kind == "class":
            bases = _public_bases(obj, by_object)
            if bases:
                fields.append("bases=" + ",".join(bases))
        yield " ".join(fields)


def catalogue_lines(names: dict[str, Any]) -> Iterator[str]:
    from arrowflow.connectors import registry
    from arrowflow.errors import ConfigurationError
    from arrowflow.formats import FORMATS
    from arrowflow.pipeline_spec.build import ALIASES, OPERATORS, RUN_OPTIONS, resolve_connector

    for info in registry.CONNECTORS:
        fields = [f"connector {info.name}"]
        if info.extra:
            fields.append(f"extra={info.extra}")
        if info.sources:
            fields.append("sources=" + ",".join(info.sources))
        if info.sinks:
            fields.append("sinks=" + ",".join(info.sinks))
        yield " ".join(fields)

    by_object: dict[int, list[str]] = {}
    for path, obj in names.items():
        by_object.setdefault(id(obj), []).append(path)
    types = sorted({info.name for info in registry.CONNECTORS} | set(ALIASES))
    for role in ("source", "sink"):
        for type_name in types:
            try:
                cls = resolve_connector(type_name, role)
            except ConfigurationError:
                continue  # no class in this role
            paths = by_object.get(id(cls))
            if not paths:
                raise SystemExit(f"YAML type {type_name!r} ({role}) builds {cls!r}, which is not public")
            yield f"yaml {role}:{type_name} {_preferred(paths)}"

    yield from (f"format {name}" for name in sorted(FORMATS))
    yield from (f"operator {name}" for name in sorted(OPERATORS))
    yield from (f"run {name}" for name in RUN_OPTIONS)


def distribution_lines() -> Iterator[str]:
    from arrowflow.cli import cli

    dist = importlib.metadata.distribution("arrowflow")
    yield from (f"extra {name}" for name in sorted(dist.metadata.get_all("Provides-Extra") or []))
    for ep in sorted(dist.entry_points, key=lambda e: e.name):
        if ep.group == "console_scripts":
            yield f"script {ep.name} {ep.value}"
    yield from (f"command {name}" for name in sorted(cli.commands))


def main() -> None:
    modules = public_modules()
    names = public_names(modules)
    out = [HEADER.format(version=arrowflow.__version__).rstrip("\n")]
    out += [f"module {m.__name__}" for m in modules]
    out += [f"name {line}" for line in name_lines(names)]
    out += list(catalogue_lines(names))
    out += list(distribution_lines())
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
