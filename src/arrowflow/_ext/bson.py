"""0.1.0's name of the BSON encoding kernel, now :mod:`arrowflow._ext.bson_encode` (kernels are named
``<format>_<direction>``, beside ``bson_decode``). Re-exports the same functions."""

from __future__ import annotations

from .bson_encode import encode_documents, encode_documents_checked

__all__ = ["encode_documents", "encode_documents_checked"]
