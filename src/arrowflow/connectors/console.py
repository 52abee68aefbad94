"""0.1.0's name of :mod:`arrowflow.connectors.print` (the module is named after its registry entry
now). It re-exports the same objects; new code imports :mod:`arrowflow.connectors.print`."""

from __future__ import annotations

from .print import PrintSink, PrintSinkConfig, format_table

__all__ = ["PrintSink", "PrintSinkConfig", "format_table"]
