"""MkDocs hook of the arrowflow documentation site: tables generated from the code.

A page asks for a generated table with an HTML comment on a line of its own (invisible where the
Markdown is read raw, e.g. on GitHub):

* ``<!-- arrowflow:options TARGET [config=DATACLASS] -->``: the options of ``TARGET`` (a dotted path
  to a class). Rows are the constructor's parameters, then the fields of its configuration dataclass
  the constructor takes through ``**options`` / ``config=``; type and default come from the
  signature where the parameter is there, else from the dataclass. ``TARGET`` may also be a
  dataclass itself (``arrowflow.writer.BatchingConfig``): its init fields. The configuration
  dataclass is ``config=`` or found by name: ``<Class>Config`` (or the name without its ``Source`` /
  ``Sink`` suffix, ``DataGenConfig``) for the class or one of its bases, in the module that defines
  it or the ``config`` module beside it.
* ``<!-- arrowflow:connector NAME -->``: the registry's entry for connector ``NAME`` (classes, import
  path, pip extra, status) as a small table.
* ``<!-- arrowflow:tested-against NAME -->``: the registry's ``tested_against`` text and the server
  script under ``tests/services/``.
* ``<!-- arrowflow:connectors -->``: the table of every connector, each row linking its page.
* ``<!-- arrowflow:connector-options NAME -->``: an options table (as above) for every source and
  sink class of connector ``NAME``, each under a ``###`` heading.
* ``<!-- arrowflow:api NAME -->``: the API reference (mkdocstrings) of connector ``NAME``'s classes.

Per-option text is looked up, first found wins, in: an attribute docstring (a string literal right
after the field in the dataclass body), a ``#:`` comment right above the field, then a bullet
``* ``name``: text`` (several names may share one bullet: ````a``, ``b``: text``) or a Google-style
``Args:``/``Attributes:`` entry in the docstrings of the dataclass, the class, its ``__init__``
and their modules. An option without text gets an empty cell (the API reference still has it).

Anything a directive names that does not exist raises :class:`mkdocs.exceptions.PluginError`, so
``mkdocs build --strict`` fails on it. :func:`options_table` and friends are plain functions, used by
``tests/unit/test_docs_site.py`` without MkDocs.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DIRECTIVE = re.compile(r"^<!--\s*arrowflow:(?P<kind>[\w-]+)(?P<args>[^>]*?)\s*-->[ \t]*$", re.MULTILINE)


class DocsError(Exception):
    """A directive names something that does not exist (the build fails)."""


# -- finding things ----------------------------------------------------------------------------------


def import_object(path: str) -> Any:
    """``a.b.C`` (or ``a.b:C``) -> the object, importing the longest importable module prefix."""
    module_path, _, attr = path.replace(":", ".").rpartition(".")
    parts = [attr]
    while module_path:
        try:
            obj: Any = importlib.import_module(module_path)
        except ModuleNotFoundError:
            module_path, _, head = module_path.rpartition(".")
            parts.insert(0, head)
            continue
        try:
            for part in parts:
                obj = getattr(obj, part)
        except AttributeError:
            raise DocsError(f"{path}: {module_path} has no attribute {'.'.join(parts)}") from None
        return obj
    raise DocsError(f"{path}: no importable module in this path")


def config_dataclass(cls: type) -> type | None:
    """The configuration dataclass of ``cls`` by name: ``<Class>Config`` of the class or a base."""
    for klass in cls.__mro__:
        if klass is object:
            continue
        stem = re.sub(r"(Source|Sink)$", "", klass.__name__)
        wanted = (f"{klass.__name__}Config", f"{stem}Config")
        module = inspect.getmodule(klass)
        candidates = [module]
        if module is not None and "." in module.__name__:
            try:
                candidates.append(importlib.import_module(module.__name__.rsplit(".", 1)[0] + ".config"))
            except ModuleNotFoundError:
                pass
        for mod in candidates:
            for attr in wanted:
                found = getattr(mod, attr, None)
                if isinstance(found, type) and dataclasses.is_dataclass(found):
                    return found
    return None


# -- per-option text ---------------------------------------------------------------------------------


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?(?:[\w.]+\.)?([\w]+)`")
_RST_CODE = re.compile(r"``(.+?)``")


def _clean(text: str) -> str:
    """One line of Markdown: reST roles and double-backquoted literals become code spans."""
    text = _ROLE.sub(r"`\1`", " ".join(text.split()))
    return _RST_CODE.sub(lambda m: f"`{m.group(1)}`" if "`" not in m.group(1) else m.group(0), text)


def field_comments(cls: type) -> dict[str, str]:
    """Attribute docstrings and ``#:`` comments of the fields in ``cls``'s own body."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    lines = source.splitlines()
    out: dict[str, str] = {}
    for i, node in enumerate(body):
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        name = node.target.id
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (
            isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            out[name] = _clean(inspect.cleandoc(nxt.value.value))
            continue
        comment: list[str] = []
        j = node.lineno - 2  # the line above the field (0-based)
        while j >= 0 and lines[j].strip().startswith("#:"):
            comment.insert(0, lines[j].strip()[2:].strip())
            j -= 1
        if comment:
            out[name] = _clean(" ".join(comment))
    return out


_BULLET = re.compile(
    r"^(?P<indent>\s*)[*-]\s+(?P<names>``\w+``(?:\s*(?:,|and|/)\s*``\w+``)*)\s*:\s*(?P<text>.*)$"
)
_GOOGLE_HEAD = re.compile(r"^\s*(Args|Arguments|Attributes|Parameters|Options):\s*$")
_GOOGLE_ITEM = re.compile(r"^(?P<indent>\s+)(?P<name>\w+)(?:\s*\([^)]*\))?\s*:\s*(?P<text>.*)$")


def _item_text(lines: list[str], i: int, first: str, indent: int) -> tuple[str, int]:
    """The text of an item starting on line ``i - 1``: ``first`` plus its continuation lines (those
    indented deeper than the item), and the index of the line after them."""
    text = [first]
    while i < len(lines) and lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) > indent:
        text.append(lines[i].strip())
        i += 1
    return _clean(" ".join(text)), i


def docstring_items(doc: str | None) -> dict[str, str]:
    """Per-name text of a docstring: ``* ``name``: text`` bullets and Google-style sections."""
    if not doc:
        return {}
    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, str] = {}
    i = 0
    while i < len(lines):
        m = _BULLET.match(lines[i])
        if m:
            text, i = _item_text(lines, i + 1, m.group("text"), len(m.group("indent")))
            for name in re.findall(r"``(\w+)``", m.group("names")):
                out.setdefault(name, text)
            continue
        if _GOOGLE_HEAD.match(lines[i]):
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                item = _GOOGLE_ITEM.match(lines[i])
                if item is None:
                    i += 1
                    continue
                text, i = _item_text(lines, i + 1, item.group("text"), len(item.group("indent")))
                out.setdefault(item.group("name"), text)
            continue
        i += 1
    return out


def _text_sources(config: type | None, cls: type | None) -> list[dict[str, str]]:
    sources: list[dict[str, str]] = []
    for klass in (config, cls):
        if klass is None:
            continue
        for base in klass.__mro__:
            if base is object:
                continue
            sources.append(field_comments(base))
            sources.append(docstring_items(base.__doc__))
            init = base.__dict__.get("__init__")
            if init is not None:
                sources.append(docstring_items(init.__doc__))
            sources.append(docstring_items(getattr(inspect.getmodule(base), "__doc__", None)))
    return sources


# -- the options table -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Option:
    """One row of an options table."""

    name: str
    type: str
    default: str
    text: str


_MISSING = "required"


def _type_text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty or annotation is dataclasses.MISSING:
        return ""
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def _default_text(value: Any, factory: Any = dataclasses.MISSING) -> str:
    if factory is not dataclasses.MISSING:
        if isinstance(factory, type) and factory in (dict, list, tuple, set, frozenset):
            return repr(factory())
        return f"{getattr(factory, '__name__', repr(factory))}()"
    if value is dataclasses.MISSING or value is inspect.Parameter.empty:
        return _MISSING
    if inspect.isroutine(value):
        return f"{getattr(value, '__module__', None) or '?'}.{value.__qualname__}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1 << 20 and value % 1024 == 0:
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20)):
            if value % size == 0:
                return f"{value // size} {unit}"
    return repr(value)


def _dataclass_text(value: Any) -> str:
    """A configuration object as its class and the fields that differ from the class's own defaults
    (``BatchingConfig(max_request_rows=1000, max_in_flight=1)``; a field without a default always
    shows), in Python that builds an equal object: the house defaults are in the class's own table,
    a per-connector default reads as what it changes."""
    changed = []
    for f in dataclasses.fields(value):
        if not f.init or f.name.startswith("_"):
            continue
        current = getattr(value, f.name)
        if f.default is not dataclasses.MISSING:
            house: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            house = f.default_factory()
        else:
            house = dataclasses.MISSING
        if house is dataclasses.MISSING or current != house:
            changed.append(f"{f.name}={_field_text(current)}")
    return f"{type(value).__name__}({', '.join(changed)})"


def _field_text(value: Any) -> str:
    """A field inside :func:`_dataclass_text`: Python that evaluates to it (sizes as products)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1 << 20 and value % (1 << 20) == 0:
        return f"{value >> 20} * 1024 * 1024"
    return _default_text(value)


def options(target: type, config: type | None = None) -> list[Option]:
    """The option rows of ``target`` (a class, or a configuration dataclass)."""
    if dataclasses.is_dataclass(target) and config is None:
        config, cls = target, None
    else:
        cls = target
        if config is None:
            config = config_dataclass(target)
    texts = _text_sources(config, cls)

    def text(name: str) -> str:
        for source in texts:
            if name in source:
                return source[name]
        return ""

    rows: list[Option] = []
    seen: set[str] = set()
    takes_more = cls is None
    if cls is not None:
        try:
            # __init__, not the class: a class with its own __new__ would hide the keyword arguments.
            init: Any = cls.__init__  # type: ignore[misc]
            params = list(inspect.signature(init).parameters.values())[1:]
        except (TypeError, ValueError):
            params = []
        for p in params:
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                takes_more = True
                continue
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if p.name == "config" and config is not None:
                takes_more = True
            seen.add(p.name)
            rows.append(Option(p.name, _type_text(p.annotation), _default_text(p.default), text(p.name)))
    if config is not None and takes_more:
        for f in dataclasses.fields(config):
            if not f.init or f.name in seen or f.name.startswith("_"):
                continue
            rows.append(
                Option(f.name, _type_text(f.type), _default_text(f.default, f.default_factory), text(f.name))
            )
    return rows


def _cell(text: str) -> str:
    """One table cell: ``|`` escaped outside code spans (Python-Markdown's tables keep a ``|``
    inside backquotes as it is, and would show the backslash of an escaped one)."""
    parts = re.split(r"(`[^`]*`)", text.replace("\n", " "))
    return "".join(p if p.startswith("`") else p.replace("|", "\\|") for p in parts)


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def options_table(target: type, config: type | None = None) -> str:
    """``options(target, config)`` as a Markdown table."""
    rows = options(target, config)
    if not rows:
        return "*This class takes no options.*"
    lines = ["| Option | Type | Default | Meaning |", "|---|---|---|---|"]
    for o in rows:
        default = "*required*" if o.default == _MISSING else _code(o.default)
        lines.append(f"| `{o.name}` | {_code(o.type)} | {default} | {_cell(o.text)} |")
    return "\n".join(lines)


# -- registry tables ---------------------------------------------------------------------------------


def connector_info(name: str) -> Any:
    from arrowflow.connectors.registry import CONNECTORS

    for info in CONNECTORS:
        if info.name == name:
            return info
    known = ", ".join(sorted(i.name for i in CONNECTORS))
    raise DocsError(f"no connector {name!r} in arrowflow.connectors.registry; known: {known}")


def _classes(info: Any, names: Iterable[str]) -> str:
    """The classes of one role, each after the first with its YAML ``variant:``."""
    by_class = {cls: variant for variant, cls in info.variants}
    cells = [f"`{n}` (variant `{by_class[n]}`)" if n in by_class else f"`{n}`" for n in names]
    return ", ".join(cells) or "—"


def connector_table(name: str) -> str:
    """The registry's entry for ``name``: classes, import, extra, status."""
    info = connector_info(name)
    for cls in (*info.sources, *info.sinks):
        import_object(f"{info.module}.{cls}")  # a class the registry names must exist
    extra = f"`pip install 'arrowflow[{info.extra}]'`" if info.extra else "none (core)"
    first = (*info.sources, *info.sinks)[0]
    return "\n".join(
        [
            "| | |",
            "|---|---|",
            f"| Registry name (YAML `type:`) | `{info.name}` |",
            f"| Source | {_classes(info, info.sources)} |",
            f"| Sink | {_classes(info, info.sinks)} |",
            f"| Import | `from {info.module} import {first}` |",
            f"| Install | {extra} |",
            f"| Status | {info.status} |",
        ]
    )


#: Connectors whose test servers' scripts (``tests/services/<script>.sh``) are not named after them.
SERVICE_SCRIPTS: dict[str, tuple[str, ...]] = {
    "sql": ("postgres", "mariadb"),
    "kinesis": ("aws",),
    "firehose": ("aws",),
    "dynamodb": ("aws", "dynalite"),
}


def service_scripts(name: str) -> list[str]:
    """The ``tests/services`` scripts that start the servers connector ``name`` is tested against."""
    names = SERVICE_SCRIPTS.get(name, (name,))
    return [n for n in names if (ROOT / "tests" / "services" / f"{n}.sh").exists()]


def tested_against(name: str) -> str:
    """The registry's ``tested_against`` text, and the server scripts when there are any."""
    info = connector_info(name)
    text = f"**{_cell(info.tested_against)}** (the registry's words, also printed by `arrowflow connectors`)."
    scripts = service_scripts(name)
    if scripts:
        listed = " and ".join(f"`tests/services/{n}.sh`" for n in scripts)
        text += (
            f" The test servers are started on 127.0.0.1 by {listed} (`start`, `stop`, `status`), whose"
            " header says which version runs and why; `make test` starts them, and the examples on this"
            " page run against them."
        )
    return text


def connector_options(name: str) -> str:
    """An options table per source and sink class of connector ``name``, each under its own heading."""
    info = connector_info(name)
    parts = []
    for cls in (*info.sources, *info.sinks):
        target = import_object(f"{info.module}.{cls}")
        config = config_dataclass(target)
        origin = (
            f"Generated from `{config.__module__}.{config.__qualname__}` and the signature."
            if config is not None
            else "Generated from the constructor's signature (this class has no configuration dataclass yet)."
        )
        parts.append(f"### {cls}\n\n{origin}\n\n{options_table(target)}\n")
    return "\n".join(parts)


def connectors_table(page_prefix: str = "") -> str:
    """Every registry connector, linking its page ``<page_prefix><name>.md``."""
    from arrowflow.connectors.registry import CONNECTORS

    lines = ["| Connector | Source | Sink | Extra | Status | Tested against |", "|---|---|---|---|---|---|"]
    for info in CONNECTORS:
        lines.append(
            f"| [`{info.name}`]({page_prefix}{info.name}.md) | {_classes(info, info.sources)} | "
            f"{_classes(info, info.sinks)} | {info.extra or 'core'} | {info.status} | "
            f"{_cell(info.tested_against)} |"
        )
    return "\n".join(lines)


def api_blocks(name: str) -> str:
    """mkdocstrings ``:::`` blocks for the classes of connector ``name`` (rendered by mkdocstrings)."""
    info = connector_info(name)
    blocks = []
    for cls in (*info.sources, *info.sinks):
        obj = import_object(f"{info.module}.{cls}")
        # The defining module: griffe reads sources statically and cannot follow lazy exports.
        blocks.append(f"::: {obj.__module__}.{obj.__qualname__}\n    options:\n      heading_level: 3\n")
    return "\n".join(blocks)


# -- the directives ----------------------------------------------------------------------------------


def _parse_args(args: str) -> tuple[list[str], dict[str, str]]:
    positional, named = [], {}
    for token in args.split():
        key, eq, value = token.partition("=")
        if eq:
            named[key] = value
        else:
            positional.append(token)
    return positional, named


def _options_directive(positional: list[str], named: dict[str, str], page: str) -> str:
    if len(positional) != 1 or set(named) - {"config"}:
        raise DocsError("usage: <!-- arrowflow:options dotted.path.Class [config=dotted.path.Config] -->")
    target = import_object(positional[0])
    config = import_object(named["config"]) if "config" in named else None
    if not isinstance(target, type) or not (
        config is None or (isinstance(config, type) and dataclasses.is_dataclass(config))
    ):
        raise DocsError(f"{positional[0]}: not a class (or config= not a dataclass)")
    return options_table(target, config)


def _one_name(positional: list[str], named: dict[str, str], usage: str) -> str:
    if len(positional) != 1 or named:
        raise DocsError(f"usage: <!-- arrowflow:{usage} NAME -->")
    return positional[0]


def _prefix(page: str) -> str:
    return "" if page.startswith("connectors/") else "connectors/"


DIRECTIVES: dict[str, Callable[[list[str], dict[str, str], str], str]] = {
    "options": _options_directive,
    "connector": lambda p, n, page: connector_table(_one_name(p, n, "connector")),
    "tested-against": lambda p, n, page: tested_against(_one_name(p, n, "tested-against")),
    "connectors": lambda p, n, page: connectors_table(_prefix(page)),
    "api": lambda p, n, page: api_blocks(_one_name(p, n, "api")),
    "connector-options": lambda p, n, page: connector_options(_one_name(p, n, "connector-options")),
}


def render(markdown: str, page: str = "") -> str:
    """``markdown`` with every directive replaced by its table; :class:`DocsError` names the bad one."""

    def replace(m: re.Match[str]) -> str:
        kind = m.group("kind")
        if kind not in DIRECTIVES:
            raise DocsError(f"{page}: unknown directive arrowflow:{kind}; known: {', '.join(DIRECTIVES)}")
        positional, named = _parse_args(m.group("args"))
        try:
            return DIRECTIVES[kind](positional, named, page)
        except DocsError as exc:
            raise DocsError(f"{page}: {m.group(0).strip()}: {exc}") from None

    return DIRECTIVE.sub(replace, markdown)


# -- MkDocs entry point ------------------------------------------------------------------------------


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    from mkdocs.exceptions import PluginError

    try:
        return render(markdown, page.file.src_uri)
    except DocsError as exc:
        raise PluginError(str(exc)) from None
