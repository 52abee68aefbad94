# Included (``include "_owned.pxi"``) by kernels that hand malloc'd blocks to Arrow without a copy.
# The including module cimports ``PyBuffer_FillInfo`` (cpython.buffer), ``free`` (libc.stdlib) and
# ``uint8_t`` (libc.stdint).


cdef class _Owned:
    """A malloc'd block handed to Arrow without a copy (freed when the last view goes)."""

    cdef uint8_t *data
    cdef Py_ssize_t size

    def __getbuffer__(self, Py_buffer *view, int flags):
        PyBuffer_FillInfo(view, self, <void *>self.data, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __dealloc__(self):
        free(self.data)
