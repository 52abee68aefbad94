"""Inputs placed against a guard page: one byte read past the end (or before the start) of a buffer
is a SIGSEGV at the faulting instruction instead of a silent read of the allocator's neighbour.

:class:`Guarded` copies bytes into a fresh anonymous mapping so that they end exactly where a
``PROT_NONE`` page begins (``before=False``) or begin right after one (``before=True``). Harnesses
alternate the two placements. Arrow buffers and numpy arrays over the mapping keep it alive.
"""

from __future__ import annotations

import ctypes
import mmap

import numpy as np
import pyarrow as pa

PAGE = mmap.PAGESIZE
_PROT_NONE = 0
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mprotect.restype = ctypes.c_int


class Guarded:
    """``data`` in its own mapping, flush against a ``PROT_NONE`` page (after it, or before it)."""

    def __init__(self, data: bytes | bytearray | memoryview, *, before: bool = False) -> None:
        raw = bytes(data)
        n = len(raw)
        body = max(PAGE, -(-n // PAGE) * PAGE)
        self._map = mmap.mmap(-1, body + PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self._anchor = ctypes.c_char.from_buffer(self._map)  # holds the mapping's address
        base = ctypes.addressof(self._anchor)
        if before:
            guard, start = base, base + PAGE
        else:
            guard, start = base + body, base + body - n
        ctypes.memmove(start, raw, n)
        if _libc.mprotect(guard, PAGE, _PROT_NONE) != 0:  # pragma: no cover - kernel refused
            raise OSError(ctypes.get_errno(), "mprotect failed")
        self.address = start
        self.size = n

    def buffer(self) -> pa.Buffer:
        """A zero-copy Arrow buffer over the bytes (keeps the mapping alive)."""
        return pa.foreign_buffer(self.address, self.size, base=self)

    def array(self) -> np.ndarray:
        """A zero-copy uint8 array over the bytes (keeps the mapping alive)."""
        return np.frombuffer(self.buffer(), dtype=np.uint8)

    def view(self) -> memoryview:
        """A zero-copy read-only memoryview over the bytes."""
        return memoryview(self.buffer())


def guarded(data: bytes | bytearray | memoryview, *, before: bool = False) -> pa.Buffer:
    """``data`` as an Arrow buffer against a guard page."""
    return Guarded(data, before=before).buffer()
