"""Load YAML while remembering where every key and value came from, and expand ``${ENV}`` references.

:func:`load_yaml` returns plain ``dict``/``list``/scalar trees made of :class:`Node` mappings and
:class:`NodeList` sequences, which behave like ``dict``/``list`` and also know the line of each key
and item. Error messages built with :func:`located` therefore read
``pipeline.yaml:12: sink.fromat: unknown option; allowed: ...``.

``${NAME}`` / ``${NAME:-default}`` in string values are expanded with
:func:`arrowflow.config.expand_env` after parsing (never in the raw text, so an environment value
cannot inject YAML). A string under a key that names a secret (:func:`is_secret_key`) becomes a
:class:`~arrowflow.config.Secret`; for the others :attr:`Node.raw` keeps the unexpanded text, which
is what error messages quote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Secret, expand_env, is_secret_key
from ..errors import ConfigurationError

__all__ = ["Node", "NodeList", "is_secret_key", "load_yaml", "located"]


class Node(dict):  # type: ignore[type-arg]
    """A YAML mapping: a ``dict`` plus ``line`` (its own), ``key_lines`` and ``raw`` (unexpanded strings)."""

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}
        self.raw: dict[Any, str] = {}

    def line_of(self, key: Any) -> int:
        """The line of ``key`` (or of the mapping itself when the key is absent)."""
        return self.key_lines.get(key, self.line)


class NodeList(list):  # type: ignore[type-arg]
    """A YAML sequence: a ``list`` plus ``line`` and ``item_lines``."""

    line: int = 0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines: list[int] = []

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


def located(filename: str, line: int | None, path: str, message: str) -> ConfigurationError:
    """``ConfigurationError("file:line: path: message")`` with ``option=path``."""
    where = f"{filename}:{line}" if line else filename
    return ConfigurationError(
        f"{where}: {path}: {message}" if path else f"{where}: {message}", option=path or None
    )


def _make_loader() -> type:
    import yaml

    class LineLoader(yaml.SafeLoader):
        """A SafeLoader that builds :class:`Node`/:class:`NodeList` and records 1-based lines."""

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Node:
        loader.flatten_mapping(node)
        out = Node()
        out.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise located(
                    getattr(loader, "name", "<yaml>"),
                    key_node.start_mark.line + 1,
                    "",
                    "mapping keys must be scalars",
                )
            if key in out:
                raise located(
                    getattr(loader, "name", "<yaml>"), key_node.start_mark.line + 1, str(key), "duplicate key"
                )
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out

    def construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> NodeList:
        out = NodeList(loader.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.item_lines = [child.start_mark.line + 1 for child in node.value]
        return out

    LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    return LineLoader


def load_yaml(
    text: str, filename: str = "<yaml>", *, environ: Mapping[str, str] | None = None, expand: bool = True
) -> Any:
    """Parse ``text``; return the tree with env references expanded and secrets wrapped
    (``expand=False``: as parsed; call :func:`expand_tree` later).

    Syntax errors raise :class:`ConfigurationError` ``"file:line: ..."``; an unset variable without a
    default names the key path and line where it is used.
    """
    import yaml

    loader_cls = _make_loader()
    loader = loader_cls(text)
    loader.name = filename
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise located(filename, line, "", f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise located(filename, None, "", f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return expand_tree(data, filename, environ=environ) if expand else data


def expand_tree(
    data: Any,
    filename: str = "<yaml>",
    path: str = "",
    *,
    environ: Mapping[str, str] | None = None,
    line: int = 0,
) -> Any:
    """Expand ``${ENV}`` in every string of ``data`` (in place for nodes) and wrap secret-keyed strings."""
    if isinstance(data, Node):
        for key in list(data):
            sub = f"{path}.{key}" if path else str(key)
            value = data[key]
            if isinstance(value, str):
                if "${" in value:
                    data.raw[key] = value
                    value = _expand(value, filename, data.line_of(key), sub, environ)
                if isinstance(key, str) and is_secret_key(key):
                    # The raw text stays quotable (it is a ${REF} or the literal); only the value is hidden.
                    data.raw[key] = "***"
                    value = Secret(value)
                data[key] = value
            else:
                data[key] = expand_tree(value, filename, sub, environ=environ, line=data.line_of(key))
        return data
    if isinstance(data, NodeList):
        for i, value in enumerate(data):
            data[i] = expand_tree(value, filename, f"{path}[{i}]", environ=environ, line=data.line_of(i))
        return data
    if isinstance(data, str) and "${" in data:
        return _expand(data, filename, line, path, environ)
    return data


def _expand(value: str, filename: str, line: int, path: str, environ: Mapping[str, str] | None) -> str:
    try:
        return expand_env(value, option=path, environ=environ)
    except ConfigurationError as exc:
        raise located(filename, line, path, str(exc).split(": ", 1)[-1]) from None
