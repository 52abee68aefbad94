"""``arrowflow run pipeline.yaml``: build a pipeline from YAML and run it in this process.

The file is validated completely before anything runs (see :mod:`arrowflow.pipeline_spec`); a bad
file exits with status 2 and one line ``error: file:line: key.path: what is wrong``. Command-line
options override the file's ``run:`` section; ``--set key.path=value`` overrides any value of the
file (before ``${ENV}`` expansion and validation). The run blocks until a bounded source is
exhausted, ``--max-rows`` rows were read, or SIGINT/SIGTERM (graceful stop with a final checkpoint;
a second signal aborts). A summary of what the run did is printed on stdout; an error during the run
exits with status 1 and the error's message (never a secret: configuration values that hold secrets
are :class:`~arrowflow.config.Secret`).
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["run_command", "summary_lines"]


def summary_lines(result: Any) -> list[str]:
    """The summary printed after a run (``result`` is a :class:`~arrowflow.pipeline.RunResult`)."""
    secs = max(result.duration, 1e-9)
    lines = [
        f"rows read       {result.rows}",
        f"rows written    {result.rows_written}",
        f"batches written {result.batches_written}",
        f"bytes written   {result.bytes_written}",
        f"checkpoints     {result.checkpoints}",
        f"seconds         {result.duration:.3f}",
        f"rows/s          {result.rows / secs:,.0f}",
        f"MB/s            {result.bytes / secs / 1e6:,.1f}",
    ]
    if result.stopped:
        lines.append("stopped         on request (a final checkpoint was taken)")
    return lines


@click.command("run")
@click.argument("pipeline_file", metavar="PIPELINE.yaml", type=click.Path(dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a value of the file, e.g. --set source.count=1000 (repeatable).",
)
@click.option(
    "--checkpoint-dir", type=click.Path(file_okay=False), default=None, help="Where checkpoints go."
)
@click.option("--checkpoint-interval", type=float, default=None, help="Seconds between checkpoints.")
@click.option(
    "--guarantee",
    type=click.Choice(["at-least-once", "exactly-once", "none"]),
    default=None,
    help="Delivery guarantee (default: the file's, else at-least-once).",
)
@click.option("--max-rows", type=int, default=None, help="Stop after this many source rows.")
@click.option("--no-progress", is_flag=True, help="No live progress line on stderr.")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
@click.option("--check", is_flag=True, help="Validate the file and build the pipeline, but do not run it.")
def run_command(
    pipeline_file: str,
    overrides: tuple[str, ...],
    checkpoint_dir: str | None,
    checkpoint_interval: float | None,
    guarantee: str | None,
    max_rows: int | None,
    no_progress: bool,
    metrics_port: int | None,
    check: bool,
) -> None:
    """Run the pipeline described in PIPELINE.yaml (source, operators, sink, run options)."""
    from arrowflow.errors import ConfigurationError
    from arrowflow.pipeline_spec import load_pipeline

    try:
        spec = load_pipeline(pipeline_file, overrides=overrides)
        options = spec.options(
            checkpoint_dir=checkpoint_dir,
            checkpoint_interval=checkpoint_interval,
            guarantee=guarantee,
            max_rows=max_rows,
            metrics_port=metrics_port,
            progress=False if no_progress else None,
        )
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    if check:
        click.echo(f"ok: {spec.pipeline!r}")
        return
    try:
        result = spec.pipeline.run(**options)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    except Exception as exc:  # any stage's error ends the run; show it without a traceback
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    for line in summary_lines(result):
        click.echo(line)
