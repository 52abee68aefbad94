"""0.1.0's name of the JSON encoding kernel, now :mod:`arrowflow._ext.json_encode` (kernels are named
``<format>_<direction>``, beside ``json_decode``). Re-exports the same functions."""

from __future__ import annotations

from .json_encode import QUOTE_KEY, encode_ndjson, encode_rows

__all__ = ["QUOTE_KEY", "encode_ndjson", "encode_rows"]
