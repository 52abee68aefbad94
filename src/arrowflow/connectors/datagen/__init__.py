"""Synthetic data (Flink's DataGen connector): :class:`DataGenSource`, bounded or unbounded.

Columns come from small frozen field generators (:class:`Sequence`, :class:`Uniform`,
:class:`Normal`, :class:`Zipf`, :class:`RandomString`, :class:`Choice`, :class:`Timestamps`,
:class:`Bool`), each with a ``null_rate``, or from one user function that receives the row indices
(``generator=``). Every random draw of a block (values, string lengths and bytes, null masks) is
made by one call of the compiled kernel :func:`arrowflow._ext.datagen.generate`, which releases the
GIL, builds no Python object per row and fills the columns on up to ``threads`` threads; numpy only
does sequences and inverse-CDF lookups (Zipf, weighted Choice).

Determinism. Rows are generated in *blocks* of ``batch_size`` rows: block ``b`` holds the global row
indices ``[b * batch_size, (b + 1) * batch_size)``. Field ``j`` of block ``b`` draws from counter-based
SplitMix64 streams keyed by ``stream_key(seed, b, j, stream)`` (``stream`` 0 for values and string
lengths, 1 for the null mask, 2 for string bytes, 3 for the normal sampler's rare extra draws), and
row ``r`` of the block uses counter ``r`` (see the kernel's docstring). So the values of row ``i``
depend only on ``seed``, ``batch_size``, the field's position and generator, and ``i`` — never on the
number of splits, on ``max_rows``, on ``threads`` or on where reading resumed. (Generating a prefix of
a block gives the prefix of the full block, so ``count`` does not change earlier rows either.) The
values are the same on every platform with IEEE doubles; :mod:`arrowflow._reference.datagen` is a
pure-Python oracle of the kernel.

Splits and positions. A bounded source (``count`` given) is cut into ``num_splits`` contiguous,
equal row ranges; an unbounded one gives split ``k`` the blocks ``k, k + n, k + 2n, ...``.
A position (``snapshot()``) is the global index of the next row the split will return, so reopening
from it regenerates exactly the remaining rows. ``commit`` is a no-op.

Rate limiting. ``rows_per_second`` (for the whole source, shared evenly by the splits) is a token
bucket per reader, starting empty and holding at most one second of tokens. ``read_batch`` waits
for tokens but never past its ``timeout``; it returns ``None`` when no row is allowed yet. The clock
and sleep function are injectable for tests.
"""

from __future__ import annotations

from . import generators
from .config import DataGenConfig
from .generators import *  # noqa: F403 - the field generators, as generators.__all__ lists them
from .source import DataGenSource

__all__ = ["DataGenConfig", "DataGenSource", *generators.__all__]
