"""The documentation site (mkdocs.yml, docs/) stays buildable, strict and complete.

* ``mkdocs build --strict`` of the real site succeeds, with the generated tables in the output.
* The same configuration fails a build on each kind of mistake it must catch: a broken link, a broken
  anchor, a page missing from the nav, an API reference (``:::``) that does not resolve, and a
  generated table naming something that does not exist. These builds use a two-page site with the
  real configuration (theme, plugins, validation, hook), so each failure is the configuration's.
* The table generator (``docs/hooks/arrowflow_docs.py``) renders a dataclass's fields, types,
  defaults and per-field text, from each place a text may come from.
* Every connector of the registry has its page, in the nav, in the one template.
* The benchmark block of docs/benchmarks.md is there once, where ``benchmarks.readme_table`` writes.

The examples of the pages run in ``tests/unit/test_readme.py`` and ``tests/integration/docs/`` (one
parser and runner for README.md and docs/: ``tests/doc_examples.py``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from arrowflow.connectors.registry import CONNECTORS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docs" / "hooks"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import arrowflow_docs as hook
from doc_examples import SKIP_MARK, code_blocks

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: A full build takes ~20-60 s on a loaded 2-core machine (mkdocstrings reads the whole package).
BUILD_TIMEOUT = 900
TEMPLATE_SECTIONS = [
    "What it reads and writes",
    "Options",
    "Guarantees",
    "Tested against",
    "Example",
    "Limits",
    "API",
]


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _config() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


# -- the real site -----------------------------------------------------------------------------------


def test_site_builds_strictly_with_its_generated_tables(tmp_path: Path) -> None:
    proc = _mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    kafka = (tmp_path / "site" / "connectors" / "kafka" / "index.html").read_text(encoding="utf-8")
    # The options table of KafkaSink, generated from KafkaSinkConfig's field docstrings.
    assert "<td><code>bootstrap_servers</code></td>" in kafka
    assert "Brokers to bootstrap from" in kafka
    assert "arrowflow:" not in kafka, "a directive was left unrendered"
    # The API reference (mkdocstrings) of the connector's classes.
    assert 'id="arrowflow.connectors.kafka.sink.KafkaSink"' in kafka
    index = (tmp_path / "site" / "connectors" / "index.html").read_text(encoding="utf-8")
    for info in CONNECTORS:
        assert f'href="{info.name}/"' in index, f"the connector table does not link {info.name}"


# -- the configuration catches mistakes --------------------------------------------------------------

GOOD_PAGE = "# Home\n\nSee [the other page](other.md#a-heading).\n"
OTHER_PAGE = "# Other\n\n## A heading\n\nText.\n"


def _mini_site(tmp_path: Path, pages: Mapping[str, str], nav: list[str]) -> Path:
    """The real configuration over a small docs folder: returns the config file."""
    docs = tmp_path / "docs"
    for name, text in pages.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    config = _config()
    config["docs_dir"] = str(docs)
    config["nav"] = nav
    config["hooks"] = [str(DOCS / "hooks" / "arrowflow_docs.py")]
    config.pop("exclude_docs", None)
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            plugin["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT / "src")]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def test_a_correct_small_site_builds(tmp_path: Path) -> None:
    # The baseline of the failure tests below: the same small site without the mistake builds.
    pages = {
        "index.md": GOOD_PAGE + "\n<!-- arrowflow:options arrowflow.writer.BatchingConfig -->\n",
        "other.md": OTHER_PAGE + "\n::: arrowflow.sink.Sink\n",
    }
    proc = _mkdocs_build(_mini_site(tmp_path, pages, ["index.md", "other.md"]), tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "<td><code>max_request_rows</code></td>" in html


@pytest.mark.parametrize(
    ("case", "pages", "nav", "expected"),
    [
        (
            "broken link",
            {"index.md": "# Home\n\nSee [missing](nowhere.md).\n", "other.md": OTHER_PAGE},
            ["index.md", "other.md"],
            "nowhere.md",
        ),
        (
            "broken anchor",
            {"index.md": "# Home\n\nSee [it](other.md#no-such-heading).\n", "other.md": OTHER_PAGE},
            ["index.md", "other.md"],
            "no-such-heading",
        ),
        (
            "page not in the nav",
            {"index.md": GOOD_PAGE, "other.md": OTHER_PAGE, "orphan.md": "# Orphan\n"},
            ["index.md", "other.md"],
            "orphan.md",
        ),
        (
            "unresolved API reference",
            {"index.md": GOOD_PAGE, "other.md": OTHER_PAGE + "\n::: arrowflow.sink.NoSuchSink\n"},
            ["index.md", "other.md"],
            "NoSuchSink",
        ),
        (
            "generated table of a missing class",
            {
                "index.md": GOOD_PAGE + "\n<!-- arrowflow:options arrowflow.writer.NoSuchConfig -->\n",
                "other.md": OTHER_PAGE,
            },
            ["index.md", "other.md"],
            "NoSuchConfig",
        ),
        (
            "generated table of a missing connector",
            {
                "index.md": GOOD_PAGE + "\n<!-- arrowflow:connector-options nosuchsystem -->\n",
                "other.md": OTHER_PAGE,
            },
            ["index.md", "other.md"],
            "nosuchsystem",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_strict_build_fails_on(
    case: str, pages: dict[str, str], nav: list[str], expected: str, tmp_path: Path
) -> None:
    proc = _mkdocs_build(_mini_site(tmp_path, pages, nav), tmp_path / "site")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{case}: the build passed\n{output[-3000:]}"
    assert expected in output, f"{case}: the failure does not name {expected!r}\n{output[-3000:]}"


# -- the table generator -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExampleConfig:
    """Options of :class:`ExampleSink`.

    * ``retries``, ``backoff``: how often and how long, from a bullet shared by two names.
    """

    url: str
    """Where to send, ``host:port``."""
    #: Rows per request.
    batch_rows: int = 500
    retries: int = 3
    backoff: float = 0.5
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    max_bytes: int = 4 * 1024 * 1024
    derived: int = dataclasses.field(init=False, default=0)


class ExampleSink:
    """A sink of the test.

    Args:
        error_policy: what happens to rows that fail.
    """

    def __init__(self, url: str, *, error_policy: str = "fail", **options: Any) -> None:
        self.config = ExampleConfig(url=url, **options)
        self.error_policy = error_policy


def test_options_of_a_class_and_its_config_dataclass() -> None:
    assert hook.config_dataclass(ExampleSink) is ExampleConfig  # by name, without the Sink suffix
    table = hook.options_table(ExampleSink)
    assert table.splitlines() == [
        "| Option | Type | Default | Meaning |",
        "|---|---|---|---|",
        "| `url` | `str` | *required* | Where to send, `host:port`. |",
        "| `error_policy` | `str` | `'fail'` | what happens to rows that fail. |",
        "| `batch_rows` | `int` | `500` | Rows per request. |",
        "| `retries` | `int` | `3` | how often and how long, from a bullet shared by two names. |",
        "| `backoff` | `float` | `0.5` | how often and how long, from a bullet shared by two names. |",
        "| `headers` | `dict[str, str]` | `{}` |  |",
        "| `max_bytes` | `int` | `4 MiB` |  |",
    ]


def test_options_of_a_dataclass_alone() -> None:
    rows = hook.options(ExampleConfig)
    assert [r.name for r in rows] == ["url", "batch_rows", "retries", "backoff", "headers", "max_bytes"]
    assert rows[0].default == "required" and rows[0].type == "str"


def test_a_pipe_in_a_type_stays_inside_its_cell() -> None:
    @dataclasses.dataclass(frozen=True)
    class Piped:
        value: int | None = None
        """``a|b`` in code, and c|d in text."""

    (line,) = hook.options_table(Piped).splitlines()[2:]
    assert line == "| `value` | `int | None` | `None` | `a|b` in code, and c\\|d in text. |"


def _config_defaults() -> list[tuple[str, Any]]:
    """Every constructor default of a registry class that is a configuration object (its batching,
    retry ...), as ``(Class.option, value)``."""
    import importlib
    import inspect

    found = []
    for info in CONNECTORS:
        module = importlib.import_module(info.module)
        for name in (*info.sources, *info.sinks):
            cls = getattr(module, name)
            for p in inspect.signature(cls.__init__).parameters.values():
                if dataclasses.is_dataclass(p.default) and not isinstance(p.default, type):
                    found.append((f"{name}.{p.name}", p.default))
    return found


def test_a_configuration_object_default_reads_as_the_fields_it_changes() -> None:
    import arrowflow

    defaults = _config_defaults()
    assert len(defaults) >= 15  # every request-based sink's batching, SqlSink's retry
    for where, value in defaults:
        text = hook._default_text(value)
        assert text.startswith(f"{type(value).__name__}("), (where, text)
        # Python that builds an equal object ...
        assert eval(text, {"arrowflow": arrowflow, type(value).__name__: type(value)}) == value, where
        # ... naming only the fields that differ from the class's own defaults.
        for f in dataclasses.fields(value):
            if f.default is not dataclasses.MISSING and getattr(value, f.name) == f.default:
                assert f"{f.name}=" not in text, (where, f.name, text)
    from arrowflow.connectors.mongodb import MONGODB_BATCHING, MongoSink

    (row,) = [o for o in hook.options(MongoSink) if o.name == "batching"]
    assert row.default == hook._default_text(MONGODB_BATCHING)
    assert "max_in_flight" not in row.default and "max_request_rows=1000" in row.default


def test_config_dataclasses_are_found_by_name() -> None:
    from arrowflow.connectors.datagen import DataGenConfig, DataGenSource
    from arrowflow.connectors.kafka import KafkaSink, KafkaSource
    from arrowflow.connectors.kafka.config import KafkaSinkConfig, KafkaSourceConfig
    from arrowflow.connectors.search import SearchSinkConfig
    from arrowflow.connectors.search.opensearch import OpenSearchSink

    assert hook.config_dataclass(KafkaSource) is KafkaSourceConfig  # the sibling config module
    assert hook.config_dataclass(KafkaSink) is KafkaSinkConfig
    assert hook.config_dataclass(DataGenSource) is DataGenConfig  # without the Source suffix
    assert hook.config_dataclass(OpenSearchSink) is SearchSinkConfig  # a base class's config
    names = [r.name for r in hook.options(OpenSearchSink)]
    # The constructor's parameters: every option of the config is one (0.1.0's batching keywords
    # are folded into batching and not listed).
    assert names[:2] == ["hosts", "index"] and "batching" in names and "options" not in names
    assert "max_actions" not in names and "deprecated" not in names


def test_directives_render_and_name_what_is_wrong() -> None:
    text = hook.render("a\n<!-- arrowflow:connector kafka -->\nb\n", "x.md")
    assert text.startswith("a\n")
    assert "| Sink | `KafkaSink`, `TransactionalKafkaSink` (variant `transactional`) |" in text
    with pytest.raises(hook.DocsError, match=r"x\.md: .*unknown directive arrowflow:nope"):
        hook.render("<!-- arrowflow:nope kafka -->\n", "x.md")
    with pytest.raises(hook.DocsError, match="no connector 'nosuch'"):
        hook.render("<!-- arrowflow:tested-against nosuch -->\n", "x.md")


# -- one page per connector, one template ------------------------------------------------------------


def _nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return []


@pytest.mark.parametrize("name", [info.name for info in CONNECTORS])
def test_every_connector_has_its_page_in_the_template(name: str) -> None:
    page = DOCS / "connectors" / f"{name}.md"
    assert page.exists(), (
        f"no page docs/connectors/{name}.md (start from docs/hooks/connector-template.md.txt)"
    )
    assert f"connectors/{name}.md" in _nav_pages(_config()["nav"]), f"{page.name} is not in mkdocs.yml's nav"
    text = page.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert [h for h in headings if h in TEMPLATE_SECTIONS] == TEMPLATE_SECTIONS, headings
    for directive in ("connector", "connector-options", "tested-against", "api"):
        assert f"<!-- arrowflow:{directive} {name} -->" in text, f"{page.name} lacks arrowflow:{directive}"
    runnable = [b for b in code_blocks(text, page.name) if b.lang == "python" and not b.skipped]
    assert runnable, f"{page.name} has no example that runs"


def test_the_template_has_the_sections_the_pages_follow() -> None:
    text = (DOCS / "hooks" / "connector-template.md.txt").read_text(encoding="utf-8")
    assert re.findall(r"^## (.+)$", text, re.MULTILINE) == TEMPLATE_SECTIONS


def test_docs_examples_are_rarely_compiled_only() -> None:
    blocks = [
        b
        for p in sorted(DOCS.rglob("*.md"))
        for b in code_blocks(p.read_text(encoding="utf-8"), p.relative_to(ROOT).as_posix())
    ]
    assert sum(b.lang == "python" for b in blocks) >= 40
    skipped = [b.id for b in blocks if b.skipped]
    assert len(skipped) <= 3, f"too many docs examples are marked {SKIP_MARK}: {skipped}"


# -- the benchmark block -----------------------------------------------------------------------------


def test_benchmark_block_is_where_readme_table_writes() -> None:
    if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) leaves the checkout out
        sys.path.append(str(ROOT))
    from benchmarks.readme_table import END, START, replace_block

    text = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1
    replaced = replace_block(text, "NEW BLOCK")
    assert f"{START}\nNEW BLOCK\n{END}" in replaced
    assert replaced.split(START)[0] == text.split(START)[0]
