"""Type stubs for the compiled ``arrowflow._ext.datagen`` kernel (source: ``ext/datagen.pyx``)."""

from typing import Any

__all__ = ["generate", "stream_key", "word"]

def stream_key(seed: int, block: int, field: int, stream: int) -> int:
    """The 64-bit key of one random stream (``mix64`` chained over the parts).

    ``seed`` within ``[0, 2**128)``, the other parts within ``[0, 2**64)``; ``ValueError`` otherwise.
    """

def word(key: int, c: int) -> int:
    """The ``c``-th output of SplitMix64 seeded with ``key`` (every random value derives from these)."""

def generate(specs: list[tuple[Any, ...]], n: int, threads: int = 0) -> list[Any]:
    """Fill ``n`` rows for every spec with the GIL released; one result per spec, in order.

    Specs and results (see the module docstring for the exact formulas):
    ``("int", key, low, high, width)`` -> ``pa.Buffer``; ``("float", key, low, high, width)`` ->
    ``pa.Buffer``; ``("normal", key, key2, mean, std)`` -> ``pa.Buffer`` (float64);
    ``("seq", first, step)`` -> ``pa.Buffer`` (int64); ``("bits", key, threshold, invert)`` ->
    ``(pa.Buffer, bits_set)``; ``("string", len_key, byte_key, min_len, max_len, alphabet)`` ->
    ``(offsets pa.Buffer, data pa.Buffer, is_large)``. ``threads=0``: two threads for
    ``n >= 8192``, else one; the values never depend on ``threads``. ``ValueError`` for a
    malformed spec.
    """
