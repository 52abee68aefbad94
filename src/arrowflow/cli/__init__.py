"""The ``arrowflow`` command line (click).

Only the ``arrowflow`` entry point and ``python -m arrowflow`` import this package, so ``import arrowflow``
never imports click or rich. Subcommands live in their own modules and import their heavy
dependencies (rich, polars, confluent_kafka) inside the command body, so ``arrowflow --help`` stays fast.
"""

from __future__ import annotations

import click

from arrowflow import __version__

from .connectors import connectors_command
from .demo import demo_command

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="arrowflow")
def cli() -> None:
    """arrowflow: stream and batch connectors that speak pyarrow.RecordBatch."""


cli.add_command(connectors_command)
cli.add_command(demo_command)


def _register_pipeline_commands() -> None:
    # run/bench import only click at module level; their heavy imports happen inside the commands.
    from .bench import bench_command
    from .run import run_command

    cli.add_command(run_command)
    cli.add_command(bench_command)


_register_pipeline_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits the process with the command's status."""
    cli.main(args=argv, prog_name="arrowflow")
