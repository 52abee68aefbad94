"""Integrations with other engines (top of the layer stack: they may use everything below).

* :mod:`arrowflow.integrations.ray` (also importable as :mod:`arrowflow.ray`): sources as Ray Data
  datasources, sinks as Ray Data datasinks, and partitioned streaming pipelines on Ray actors.

Importing this package imports nothing heavy; each integration module imports its engine itself.
"""

from __future__ import annotations

__all__: list[str] = []
