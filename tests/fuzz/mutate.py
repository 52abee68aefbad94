"""A small deterministic mutator for the smoke run (atheris/libFuzzer does this under ``make fuzz``).

:func:`inputs` yields ``count`` inputs made from the seeds by a seeded RNG: byte flips, interesting
values, insertions, deletions, duplicated ranges, splices of two seeds and truncations, a few
stacked per input. The same seeds and name give the same inputs on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

_INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x22, 0x5C, 0x7B, 0x7D, 0xC0, 0xED, 0xF4]


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(1 + rng.randrange(4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[pos % len(buf)] = rng.choice(_INTERESTING)
        elif op == 2:
            buf[pos:pos] = rng.randbytes(1 + rng.randrange(8))
        elif op == 3 and buf:
            del buf[pos : pos + 1 + rng.randrange(16)]
        elif op == 4 and buf:
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start : start + 1 + rng.randrange(32)]
        elif op == 5 and seeds:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
        elif op == 6:
            del buf[pos:]
        elif buf:
            # a 4-byte little/big-endian length or count set to an edge value
            value = rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, len(buf), len(buf) + 1])
            order = rng.choice(["little", "big"])
            buf[pos : pos + 4] = value.to_bytes(4, order)
    return bytes(buf)


def inputs(name: str, seeds: list[bytes], count: int) -> Iterator[bytes]:
    """``count`` inputs: the seeds themselves first, then mutants (deterministic for ``name``)."""
    rng = random.Random(f"arrowflow-fuzz-smoke-{name}")
    pool = [s for s in seeds if s is not None]
    for k in range(count):
        if k < len(pool):
            yield pool[k]
        else:
            yield mutate(rng, rng.choice(pool) if pool else b"", pool)
