"""Slow, obviously-correct model of ``arrowflow._ext.datagen``: a test oracle, never used at run time.

It follows the kernel's contract (see ``ext/datagen.pyx``) with Python integers masked to 64 bits and
Python floats (IEEE doubles, the same libm for ``exp``/``log``/``sqrt``), one row at a time, and
returns plain Python values instead of Arrow buffers:

* ``int`` -> list of ints (the arithmetic value ``low + offset``, before storing in ``width`` bytes)
* ``float`` -> list of floats (float32 values rounded through ``struct``)
* ``normal`` -> list of floats
* ``bits`` -> ``(list of bools, number of True)``
* ``string`` -> list of ``bytes``
* ``seq`` -> list of ints modulo ``2**64``
"""

from __future__ import annotations

import math
import struct
from typing import Any

__all__ = ["generate", "mix64", "normal", "stream_key", "word"]

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
ZIG_C = 256
ZIG_R = 3.6541528853610088
ZIG_V = 0.00492867323399


def mix64(z: int) -> int:
    """SplitMix64's finalizer (Stafford's mix13)."""
    z &= MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def word(key: int, c: int) -> int:
    """The ``c``-th output of SplitMix64 seeded with ``key``."""
    return mix64(key + (c + 1) * GAMMA)


def stream_key(seed: int, block: int, field: int, stream: int) -> int:
    k = 0x6A09E667F3BCC909
    for part in (seed & MASK, seed >> 64, block, field, stream):
        k = mix64(k ^ part)
    return k


def unit(w: int) -> float:
    return (w >> 11) * 2.0**-53


def unit_open(w: int) -> float:
    return ((w >> 11) + 0.5) * 2.0**-53


def _zig_tables() -> tuple[list[float], list[float]]:
    x = [0.0] * (ZIG_C + 1)
    f = math.exp(-0.5 * ZIG_R * ZIG_R)
    x[0] = ZIG_V / f
    x[1] = ZIG_R
    for i in range(2, ZIG_C):
        x[i] = math.sqrt(-2.0 * math.log(ZIG_V / x[i - 1] + f))
        f = math.exp(-0.5 * x[i] * x[i])
    return x, [x[i + 1] / x[i] for i in range(ZIG_C)]


ZIG_X, ZIG_RATIO = _zig_tables()


def normal(key: int, key2: int, c: int) -> float:
    """Standard normal of row ``c`` (Doornik's ZIGNOR, as the kernel runs it)."""
    w = word(key, c)
    u = 2.0 * unit(w) - 1.0
    i = w & 0xFF
    if abs(u) < ZIG_RATIO[i]:
        return u * ZIG_X[i]
    sub = mix64(key2 ^ c)
    j = 0
    while True:
        if i == 0:
            while True:
                x = math.log(unit_open(word(sub, j))) / ZIG_R
                y = math.log(unit_open(word(sub, j + 1)))
                j += 2
                if not -2.0 * y < x * x:
                    break
            return x - ZIG_R if u < 0 else ZIG_R - x
        x = u * ZIG_X[i]
        f0 = math.exp(-0.5 * (ZIG_X[i] * ZIG_X[i] - x * x))
        f1 = math.exp(-0.5 * (ZIG_X[i + 1] * ZIG_X[i + 1] - x * x))
        if f1 + unit(word(sub, j)) * (f0 - f1) < 1.0:
            return x
        w = word(sub, j + 1)
        j += 2
        u = 2.0 * unit(w) - 1.0
        i = w & 0xFF
        if abs(u) < ZIG_RATIO[i]:
            return u * ZIG_X[i]


def digits_per_word(k: int) -> int:
    """Characters taken from one word for an alphabet of ``k`` characters."""
    if k <= 1:
        return 64
    if k & (k - 1) == 0:
        return 64 // (k.bit_length() - 1)
    d = 1
    while k ** (d + 1) <= 2**48:
        d += 1
    return d


def _digit(w: int, m: int, k: int) -> int:
    """``floor(k * frac(w * k**m / 2**64))``."""
    return (((w * k**m) & MASK) * k) >> 64


def _f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def _float(key: int, c: int, low: float, high: float, width: int) -> float:
    v = low + (high - low) * unit(word(key, c))
    if width == 8:
        return math.nextafter(high, -math.inf) if (v >= high and high > low) else v
    f = _f32(v)
    fhigh = _f32(high)
    if f >= fhigh and high > low:
        # the largest float32 below fhigh
        bits = struct.unpack("<I", struct.pack("<f", fhigh))[0]
        if fhigh > 0:
            bits -= 1
        elif fhigh == 0:
            bits = 0x80000001
        else:
            bits += 1
        return float(struct.unpack("<f", struct.pack("<I", bits))[0])
    return f


def _bit(key: int, c: int, thr: int) -> bool:
    w = word(key, c // 2)
    u = (w >> 32) if c & 1 else (w & 0xFFFFFFFF)
    return u < thr


def _strings(len_key: int, byte_key: int, n: int, lo: int, hi: int, alphabet: bytes) -> list[bytes]:
    lengths = [lo + ((word(len_key, c) * (hi - lo + 1)) >> 64) for c in range(n)]
    total = sum(lengths)
    k = len(alphabet)
    d = digits_per_word(k)
    data = bytes(
        alphabet[0] if k == 1 else alphabet[_digit(word(byte_key, j // d), j % d, k)] for j in range(total)
    )
    out, pos = [], 0
    for length in lengths:
        out.append(data[pos : pos + length])
        pos += length
    return out


def generate(specs: list[tuple[Any, ...]], n: int) -> list[Any]:
    """What ``arrowflow._ext.datagen.generate(specs, n)`` fills, as Python values (module docstring)."""
    results: list[Any] = []
    for spec in specs:
        kind = spec[0]
        if kind == "int":
            _, key, low, high, _width = spec
            span = high - low + 1
            results.append([low + ((word(key, c) * span) >> 64) for c in range(n)])
        elif kind == "float":
            _, key, low, high, width = spec
            results.append([_float(key, c, float(low), float(high), width) for c in range(n)])
        elif kind == "normal":
            _, key, key2, mean, std = spec
            results.append([mean + std * normal(key, key2, c) for c in range(n)])
        elif kind == "bits":
            _, key, thr, invert = spec
            bits = [_bit(key, c, thr) != bool(invert) for c in range(n)]
            results.append((bits, sum(bits)))
        elif kind == "string":
            _, len_key, byte_key, lo, hi, alphabet = spec
            results.append(_strings(len_key, byte_key, n, lo, hi, bytes(alphabet)))
        elif kind == "seq":
            _, first, step = spec
            results.append([(first + step * c) & MASK for c in range(n)])
        else:
            raise ValueError(f"unknown spec kind {kind!r}")
    return results
