# Included (``include "_owned.pxi"``) by every kernel that reads Arrow buffers by address or hands
# malloc'd blocks to Arrow without a copy: the one copy of both helpers. The including module imports
# ``pyarrow as pa``; the cimports below may repeat the module's own (Cython allows that).

from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free

#: Gives a block back to an allocator other than ``malloc`` (``ptr``, the capacity it was made with).
ctypedef void (*_release_fn)(char *ptr, int64_t cap) noexcept nogil


cdef class _Owned:
    """A malloc'd block handed to Arrow without a copy (freed when the last view goes; a block of
    another allocator is given back through ``release`` with ``cap``)."""

    cdef uint8_t *data
    cdef Py_ssize_t size
    cdef int64_t cap
    cdef _release_fn release

    def __getbuffer__(self, Py_buffer *view, int flags):
        PyBuffer_FillInfo(view, self, <void *>self.data, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __dealloc__(self):
        if self.release != NULL:
            self.release(<char *>self.data, self.cap)
        else:
            free(self.data)
        self.data = NULL


cdef object _own(void *data, Py_ssize_t size, int64_t cap=0, _release_fn release=NULL):
    """A ``pa.Buffer`` of ``size`` bytes at ``data`` that takes ownership of the block (no copy):
    freed with ``free``, or with ``release(data, cap)`` when given."""
    cdef _Owned owner = _Owned.__new__(_Owned)
    owner.data = <uint8_t *>data
    owner.size = size
    owner.cap = cap
    owner.release = release
    return pa.py_buffer(owner)


cdef inline const uint8_t *_addr(object buf):
    """The address of an Arrow buffer's data, or NULL for an absent buffer (``None`` in
    ``Array.buffers()``: no validity bitmap, no data in an all-empty array)."""
    if buf is None:
        return NULL
    return <const uint8_t *> <size_t> buf.address
