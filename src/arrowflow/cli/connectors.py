"""``arrowflow connectors``: the connector catalogue from :mod:`arrowflow.connectors.registry`.

Prints one row per connector (name, sources, sinks, pip extra, whether its client libraries are
installed, status, what it is tested against) as a table, or as a JSON list with ``--json``. Never
imports a connector's module or client library: "installed" comes from :func:`registry.available`,
which only looks the imports up.
"""

from __future__ import annotations

import json
from typing import Any

import click

from arrowflow.connectors import registry

__all__ = ["connector_rows", "connectors_command"]


def connector_rows() -> list[dict[str, Any]]:
    """One JSON-serializable dict per entry of ``registry.CONNECTORS``, in catalogue order."""
    return [
        {
            "name": info.name,
            "module": info.module,
            "sources": list(info.sources),
            "sinks": list(info.sinks),
            "variants": dict(info.variants),
            "extra": info.extra,
            "requires": list(info.requires),
            "installed": registry.available(info),
            "status": info.status,
            "tested_against": info.tested_against,
        }
        for info in registry.CONNECTORS
    ]


def _classes(names: list[str], variants: dict[str, str]) -> str:
    """``A, B (variant: b)``: the classes of one role, each after the first with its YAML variant."""
    by_class = {cls: variant for variant, cls in variants.items()}
    return ", ".join(f"{n} (variant: {by_class[n]})" if n in by_class else n for n in names) or "-"


@click.command("connectors")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def connectors_command(as_json: bool) -> None:
    """List the connectors, their pip extras, and whether their client libraries are installed."""
    rows = connector_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Cells are plain text: "arrowflow[kafka]" would otherwise be read as a rich markup tag.
    table = Table(title="arrowflow connectors")
    for col in ("name", "sources", "sinks", "extra", "installed", "status", "tested against"):
        table.add_column(col, overflow="fold")
    for row in rows:
        cells = [
            row["name"],
            _classes(row["sources"], row["variants"]),
            _classes(row["sinks"], row["variants"]),
            f"arrowflow[{row['extra']}]" if row["extra"] else "(core)",
            "yes" if row["installed"] else "no",
            row["status"],
            row["tested_against"] or "-",
        ]
        table.add_row(*(Text(cell) for cell in cells))
    console = Console()
    if not console.is_terminal:
        # Piped output: rich would assume 80 columns and fold every cell; keep one line per connector.
        console = Console(width=200)
    console.print(table)
