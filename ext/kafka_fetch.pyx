# cython: language_level=3
"""The Kafka source's columnar fetch: librdkafka's batch consume API drained straight into Arrow.

Why: ``confluent_kafka.Consumer.consume`` builds one Python ``Message`` (and one ``bytes`` per value
and key) per message, and those allocations set off the cyclic GC: about half of the consume CPU.
:class:`Fetcher` owns its own librdkafka consumer handle (never confluent-kafka's, whose callbacks
would run inside the GIL-free call) and copies each batch of messages into Arrow buffers.

Which librdkafka: the one confluent-kafka's wheel ships (``confluent_kafka.libs/librdkafka-*.so.1``),
opened at run time with ``dlopen`` (:func:`load`), with this file's own declarations of the stable C
ABI (``rdkafka.h``: the ``rd_kafka_message_t`` and ``rd_kafka_topic_partition_t`` structs and plain
functions, unchanged since librdkafka 1.0). So the kernel needs no headers to build, always builds,
and runs the very library the rest of the connector runs; :func:`load` fails (the caller falls back
to the client path) when no librdkafka can be opened.

Contract of :class:`Fetcher`:

* ``Fetcher(config, topic)``: ``config`` is a list of ``(name, value)`` strings for
  ``rd_kafka_conf_set`` (no Python callbacks exist on this handle). Statistics (``stats_cb``) and
  client errors (``error_cb``) are kept by C callbacks and handed back as data: :meth:`take_stats`
  and the ``errors`` of :meth:`read`. The consumer's main queue is forwarded to its consumer queue,
  so those callbacks run only inside :meth:`read` (on the calling thread, GIL released) and touch
  only this object's C state.
* :meth:`assign` assigns explicit ``(partition, offset)`` pairs of ``topic`` (no group membership).
* :meth:`read` makes at most one ``rd_kafka_consume_batch_queue(queue, timeout, ., max_rows)`` call
  with the GIL released (none when messages are left over from the previous call) and returns
  ``(columns, errors)``: ``columns`` a dict of equal-length arrays ``value`` (binary; null where the
  message has no payload, as the client's ``Message.value()`` is ``None``), ``partition`` (int32),
  ``offset`` (int64) and, when asked, ``key`` (binary, nullable), ``timestamp`` (int64 ms, -1 where
  librdkafka has none) and ``headers`` (``map<string, binary>``, null where the message has none);
  ``errors`` a list of ``(code, name, reason, fatal, partition, offset)`` for the error messages and
  client errors seen (end-of-partition events are dropped). A batch holds at most ``max_rows``
  messages and at most ``max_bytes`` of value + key + header bytes (always at least one message);
  messages beyond are kept, in order, for the next call. Messages are returned in consume order.
* Every buffer is sized from the messages' own lengths before anything is copied; a byte count
  over ``max_bytes`` (<= 2**31 - 1) never enters a batch, so int32 offsets cannot overflow.
* :meth:`position`, :meth:`commit` (synchronous, GIL released), :meth:`watermarks` (cached) and
  :meth:`close` (idempotent; also on deallocation) wrap the librdkafka calls of the same names. A
  ``close()`` from another thread while a :meth:`read` or :meth:`commit` is inside librdkafka marks
  the fetcher closed and frees the handle when that call returns (never under it).

:func:`columns_from_records` runs the same buffer building over Python records (the test entry that
:mod:`arrowflow._reference.kafka_fetch` is the oracle of).
"""

from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove, memset, strlen
from posix.dlfcn cimport RTLD_LOCAL, RTLD_NOW, dlerror, dlopen, dlsym

import pyarrow as pa

__all__ = ["Fetcher", "columns_from_records", "load", "loaded"]

include "_owned.pxi"


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *, void *)
    int pthread_mutex_lock(pthread_mutex_t *)
    int pthread_mutex_unlock(pthread_mutex_t *)
    int pthread_mutex_destroy(pthread_mutex_t *)


# --- the librdkafka C ABI (rdkafka.h), declared here ------------------------------------------------

ctypedef struct rd_kafka_message_t:
    int err
    void *rkt
    int32_t partition
    void *payload
    size_t len
    void *key
    size_t key_len
    int64_t offset
    void *_private

ctypedef struct rd_kafka_topic_partition_t:
    char *topic
    int32_t partition
    int64_t offset
    void *metadata
    size_t metadata_size
    void *opaque
    int err
    void *_private

ctypedef struct rd_kafka_topic_partition_list_t:
    int cnt
    int size
    rd_kafka_topic_partition_t *elems

ctypedef void (*error_cb_t)(void *rk, int err, const char *reason, void *opaque) noexcept nogil
ctypedef int (*stats_cb_t)(void *rk, char *json, size_t json_len, void *opaque) noexcept nogil

ctypedef struct _Api:
    void *(*conf_new)() noexcept nogil
    int (*conf_set)(void *conf, const char *name, const char *value, char *errstr, size_t n) noexcept nogil
    void (*conf_destroy)(void *conf) noexcept nogil
    void (*conf_set_opaque)(void *conf, void *opaque) noexcept nogil
    void (*conf_set_error_cb)(void *conf, error_cb_t cb) noexcept nogil
    void (*conf_set_stats_cb)(void *conf, stats_cb_t cb) noexcept nogil
    void *(*new)(int kind, void *conf, char *errstr, size_t n) noexcept nogil
    void (*destroy)(void *rk) noexcept nogil
    int (*consumer_close)(void *rk) noexcept nogil
    int (*poll_set_consumer)(void *rk) noexcept nogil
    void *(*queue_get_consumer)(void *rk) noexcept nogil
    void (*queue_destroy)(void *q) noexcept nogil
    Py_ssize_t (*consume_batch_queue)(void *q, int timeout_ms, rd_kafka_message_t **msgs, size_t n) noexcept nogil
    void (*message_destroy)(rd_kafka_message_t *m) noexcept nogil
    int64_t (*message_timestamp)(const rd_kafka_message_t *m, int *tstype) noexcept nogil
    int (*message_headers)(const rd_kafka_message_t *m, void **hdrs) noexcept nogil
    size_t (*header_cnt)(const void *hdrs) noexcept nogil
    int (*header_get_all)(const void *hdrs, size_t i, const char **name, const void **value, size_t *size) noexcept nogil
    const char *(*err2str)(int err) noexcept nogil
    const char *(*err2name)(int err) noexcept nogil
    int (*fatal_error)(void *rk, char *errstr, size_t n) noexcept nogil
    rd_kafka_topic_partition_list_t *(*tpl_new)(int size) noexcept nogil
    void (*tpl_destroy)(rd_kafka_topic_partition_list_t *l) noexcept nogil
    rd_kafka_topic_partition_t *(*tpl_add)(rd_kafka_topic_partition_list_t *l, const char *topic, int32_t p) noexcept nogil
    int (*assign)(void *rk, const rd_kafka_topic_partition_list_t *l) noexcept nogil
    int (*commit)(void *rk, const rd_kafka_topic_partition_list_t *l, int async_) noexcept nogil
    int (*position)(void *rk, rd_kafka_topic_partition_list_t *l) noexcept nogil
    int (*get_watermark_offsets)(void *rk, const char *topic, int32_t p, int64_t *low, int64_t *high) noexcept nogil
    const char *(*version_str)() noexcept nogil

cdef _Api api
cdef bint _loaded = False
_loaded_path = None

cdef enum:
    _CONSUMER = 1
    _ERR_PARTITION_EOF = -191
    _ERR_NOENT = -156
    _ERR_FATAL = -150
    _MAX_ERRORS = 16
    _REASON = 512

_SYMBOLS = (
    "conf_new", "conf_set", "conf_destroy", "conf_set_opaque", "conf_set_error_cb",
    "conf_set_stats_cb", "new", "destroy", "consumer_close", "poll_set_consumer",
    "queue_get_consumer", "queue_destroy", "consume_batch_queue", "message_destroy",
    "message_timestamp", "message_headers", "header_cnt", "header_get_all", "err2str",
    "err2name", "fatal_error", "topic_partition_list_new", "topic_partition_list_destroy",
    "topic_partition_list_add", "assign", "commit", "position", "get_watermark_offsets",
    "version_str",
)


def load(str path):
    """Open librdkafka at ``path`` (a file, or a soname such as ``librdkafka.so.1``) and resolve
    every function :class:`Fetcher` calls; returns its version string. ``OSError`` when the
    library or a symbol is missing. Loading twice keeps the first library."""
    global _loaded, _loaded_path
    if _loaded:
        return (<bytes>api.version_str()).decode()
    cdef bytes p = path.encode()
    cdef void *lib = dlopen(p, RTLD_NOW | RTLD_LOCAL)
    if lib == NULL:
        raise OSError(f"cannot open librdkafka at {path}: {(<bytes>dlerror()).decode(errors='replace')}")
    cdef void *ptrs[29]
    cdef bytes sym
    for i, name in enumerate(_SYMBOLS):
        sym = ("rd_kafka_" + name).encode()
        ptrs[i] = dlsym(lib, sym)
        if ptrs[i] == NULL:
            raise OSError(f"librdkafka at {path} has no rd_kafka_{name}")
    # The struct's members are declared in _SYMBOLS' order.
    assert sizeof(api) == len(_SYMBOLS) * sizeof(void *)
    memcpy(&api, ptrs, sizeof(api))
    _loaded = True
    _loaded_path = path
    return (<bytes>api.version_str()).decode()


def loaded():
    """The path :func:`load` opened, or ``None``."""
    return _loaded_path


# --- C state the callbacks write (no Python inside) -------------------------------------------------

ctypedef struct _Shared:
    pthread_mutex_t lock
    char *stats
    size_t stats_len
    int nerr
    int dropped
    int codes[_MAX_ERRORS]
    int fatal[_MAX_ERRORS]
    char reasons[_MAX_ERRORS][_REASON]


cdef void _copy_reason(char *dst, const char *src) noexcept nogil:
    cdef size_t n = strlen(src) if src != NULL else 0
    if n >= _REASON:
        n = _REASON - 1
    if n:
        memcpy(dst, src, n)
    dst[n] = 0


cdef void _on_error(void *rk, int err, const char *reason, void *opaque) noexcept nogil:
    cdef _Shared *s = <_Shared *>opaque
    cdef char fatal_text[_REASON]
    cdef int code = err
    cdef int fatal = 0
    if err == _ERR_FATAL:
        fatal = 1
        code = api.fatal_error(rk, fatal_text, _REASON)
        reason = fatal_text
    pthread_mutex_lock(&s.lock)
    if s.nerr < _MAX_ERRORS:
        s.codes[s.nerr] = code
        s.fatal[s.nerr] = fatal
        _copy_reason(s.reasons[s.nerr], reason)
        s.nerr += 1
    else:
        s.dropped += 1
    pthread_mutex_unlock(&s.lock)


cdef int _on_stats(void *rk, char *json, size_t json_len, void *opaque) noexcept nogil:
    cdef _Shared *s = <_Shared *>opaque
    cdef char *copy = <char *>malloc(json_len + 1)
    if copy == NULL:
        return 0
    memcpy(copy, json, json_len)
    copy[json_len] = 0
    pthread_mutex_lock(&s.lock)
    free(s.stats)
    s.stats = copy
    s.stats_len = json_len
    pthread_mutex_unlock(&s.lock)
    return 0  # librdkafka frees its own json


# --- buffer building --------------------------------------------------------------------------------

ctypedef struct _Msg:
    const char *value
    Py_ssize_t value_len
    const char *key
    Py_ssize_t key_len
    int32_t partition
    int64_t offset
    int64_t timestamp
    Py_ssize_t hdr_start
    Py_ssize_t hdr_count  # -1: no headers (a null map)

ctypedef struct _Hdr:
    const char *name
    Py_ssize_t name_len
    const char *value  # NULL: a null header value
    Py_ssize_t value_len

ctypedef struct _Hdrs:
    _Hdr *items
    Py_ssize_t n
    Py_ssize_t cap


cdef int _hdrs_push(_Hdrs *h, const char *name, Py_ssize_t name_len, const char *value,
                    Py_ssize_t value_len) noexcept nogil:
    cdef _Hdr *grown
    cdef Py_ssize_t cap
    if h.n == h.cap:
        cap = h.cap * 2 if h.cap else 64
        grown = <_Hdr *>realloc(h.items, cap * sizeof(_Hdr))
        if grown == NULL:
            return -1
        h.items = grown
        h.cap = cap
    h.items[h.n].name = name
    h.items[h.n].name_len = name_len
    h.items[h.n].value = value
    h.items[h.n].value_len = value_len
    h.n += 1
    return 0


cdef _Owned _alloc(Py_ssize_t size):
    cdef _Owned o = _Owned.__new__(_Owned)
    o.data = <uint8_t *>malloc(size if size > 0 else 1)
    if o.data == NULL:
        raise MemoryError()
    o.size = size
    return o


cdef object _binary(Py_ssize_t n, _Owned validity, Py_ssize_t nulls, _Owned offs, _Owned data, object typ):
    return pa.Array.from_buffers(
        typ, n, [pa.py_buffer(validity) if nulls else None, pa.py_buffer(offs), pa.py_buffer(data)], nulls
    )


cdef void _set_valid(uint8_t *bits, Py_ssize_t i, bint valid) noexcept nogil:
    if valid:
        bits[i >> 3] |= <uint8_t>(1 << (i & 7))


cdef Py_ssize_t _fill_binary(const _Msg *m, Py_ssize_t n, bint keys, int32_t *offs, uint8_t *data,
                             uint8_t *bits) noexcept nogil:
    """Offsets, data and validity of the value (or key) column; returns the null count."""
    cdef Py_ssize_t i, pos = 0, nulls = 0, ln
    cdef const char *src
    memset(bits, 0, (n + 7) // 8)
    offs[0] = 0
    for i in range(n):
        src = m[i].key if keys else m[i].value
        ln = m[i].key_len if keys else m[i].value_len
        if src == NULL:
            nulls += 1
        else:
            _set_valid(bits, i, True)
            if ln:
                memcpy(data + pos, src, ln)
                pos += ln
        offs[i + 1] = <int32_t>pos
    return nulls


cdef dict _build(const _Msg *m, Py_ssize_t n, const _Hdrs *h, bint want_keys, bint want_ts,
                 bint want_headers):
    """The columns of ``m[0:n]`` (headers from ``h``); every size is summed before any copy."""
    cdef Py_ssize_t i, j, vbytes = 0, kbytes = 0, hn_bytes = 0, hv_bytes = 0, nulls, pos, vpos, hnulls
    cdef Py_ssize_t nh = h.n if h != NULL else 0
    cdef Py_ssize_t hdr_nulls = 0, hval_nulls = 0
    cdef const _Hdr *hd
    with nogil:
        for i in range(n):
            if m[i].value != NULL:
                vbytes += m[i].value_len
            if m[i].key != NULL:
                kbytes += m[i].key_len
        for j in range(nh):
            hn_bytes += h.items[j].name_len
            if h.items[j].value != NULL:
                hv_bytes += h.items[j].value_len
    if max(vbytes, kbytes, hn_bytes, hv_bytes) > 0x7FFFFFFF:
        raise OverflowError("kafka_fetch: a column over 2 GiB in one batch")
    out = {}
    cdef _Owned voffs = _alloc((n + 1) * 4), vdata = _alloc(vbytes), vbits = _alloc((n + 7) // 8)
    cdef _Owned parts = _alloc(n * 4), offsets = _alloc(n * 8)
    cdef int32_t *pp = <int32_t *>parts.data
    cdef int64_t *po = <int64_t *>offsets.data
    with nogil:
        nulls = _fill_binary(m, n, False, <int32_t *>voffs.data, vdata.data, vbits.data)
        for i in range(n):
            pp[i] = m[i].partition
            po[i] = m[i].offset
    out["value"] = _binary(n, vbits, nulls, voffs, vdata, pa.binary())
    out["partition"] = pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(parts)])
    out["offset"] = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(offsets)])
    cdef _Owned koffs, kdata, kbits, ts
    cdef int64_t *pt
    if want_keys:
        koffs, kdata, kbits = _alloc((n + 1) * 4), _alloc(kbytes), _alloc((n + 7) // 8)
        with nogil:
            nulls = _fill_binary(m, n, True, <int32_t *>koffs.data, kdata.data, kbits.data)
        out["key"] = _binary(n, kbits, nulls, koffs, kdata, pa.binary())
    if want_ts:
        ts = _alloc(n * 8)
        pt = <int64_t *>ts.data
        with nogil:
            for i in range(n):
                pt[i] = m[i].timestamp
        out["timestamp"] = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(ts)])
    cdef _Owned moffs, mbits, noffs, ndata, hvoffs, hvdata, hvbits
    cdef int32_t *pmo
    cdef int32_t *pno
    cdef int32_t *pvo
    if want_headers:
        moffs, mbits = _alloc((n + 1) * 4), _alloc((n + 7) // 8)
        noffs, ndata = _alloc((nh + 1) * 4), _alloc(hn_bytes)
        hvoffs, hvdata, hvbits = _alloc((nh + 1) * 4), _alloc(hv_bytes), _alloc((nh + 7) // 8)
        pmo, pno, pvo = <int32_t *>moffs.data, <int32_t *>noffs.data, <int32_t *>hvoffs.data
        with nogil:
            memset(mbits.data, 0, (n + 7) // 8)
            memset(hvbits.data, 0, (nh + 7) // 8)
            pmo[0] = 0
            pno[0] = 0
            pvo[0] = 0
            pos = 0
            vpos = 0
            j = 0  # headers are appended in message order: message i owns [hdr_start, hdr_start+count)
            for i in range(n):
                if m[i].hdr_count < 0:
                    hdr_nulls += 1
                else:
                    _set_valid(mbits.data, i, True)
                    j += m[i].hdr_count
                pmo[i + 1] = <int32_t>j
            for j in range(nh):
                hd = &h.items[j]
                if hd.name_len:
                    memcpy(ndata.data + pos, hd.name, hd.name_len)
                    pos += hd.name_len
                pno[j + 1] = <int32_t>pos
                if hd.value == NULL:
                    hval_nulls += 1
                else:
                    _set_valid(hvbits.data, j, True)
                    if hd.value_len:
                        memcpy(hvdata.data + vpos, hd.value, hd.value_len)
                        vpos += hd.value_len
                pvo[j + 1] = <int32_t>vpos
        names = pa.Array.from_buffers(pa.string(), nh, [None, pa.py_buffer(noffs), pa.py_buffer(ndata)])
        try:
            names.validate(full=True)  # header names are strings: refuse bytes that are not UTF-8
        except pa.ArrowInvalid as exc:
            raise ValueError(f"kafka_fetch: a header name is not UTF-8: {exc}") from None
        values = _binary(nh, hvbits, hval_nulls, hvoffs, hvdata, pa.binary())
        typ = pa.map_(pa.string(), pa.binary())
        entries = pa.StructArray.from_arrays([names, values], fields=[typ.key_field, typ.item_field])
        out["headers"] = pa.Array.from_buffers(
            typ, n, [pa.py_buffer(mbits) if hdr_nulls else None, pa.py_buffer(moffs)], hdr_nulls,
            children=[entries],
        )
    return out


def columns_from_records(list records, bint keys=True, bint timestamps=True, bint headers=True):
    """The columns :meth:`Fetcher.read` builds, from ``(value, key, partition, offset, timestamp,
    headers)`` records (``bytes``/``None`` value and key; ``headers`` ``None`` or a list of
    ``(name: bytes, value: bytes | None)``). The test entry of the buffer building."""
    cdef Py_ssize_t n = len(records), i
    cdef _Msg *m = <_Msg *>malloc((n if n else 1) * sizeof(_Msg))
    cdef _Hdrs h
    h.items = NULL
    h.n = 0
    h.cap = 0
    keep = []  # the bytes the views point into
    cdef bytes b
    try:
        for i, (value, key, partition, offset, timestamp, hdrs) in enumerate(records):
            m[i].value = NULL
            m[i].value_len = 0
            m[i].key = NULL
            m[i].key_len = 0
            if value is not None:
                b = bytes(value)
                keep.append(b)
                m[i].value = <const char *>b
                m[i].value_len = len(b)
            if key is not None:
                b = bytes(key)
                keep.append(b)
                m[i].key = <const char *>b
                m[i].key_len = len(b)
            m[i].partition = partition
            m[i].offset = offset
            m[i].timestamp = timestamp
            m[i].hdr_start = h.n
            m[i].hdr_count = -1
            if hdrs is not None:
                m[i].hdr_count = len(hdrs)
                for name, hv in hdrs:
                    b = bytes(name)
                    keep.append(b)
                    nb = b
                    if hv is None:
                        if _hdrs_push(&h, <const char *>b, len(b), NULL, 0):
                            raise MemoryError()
                    else:
                        b = bytes(hv)
                        keep.append(b)
                        if _hdrs_push(&h, <const char *>nb, len(nb), <const char *>b, len(b)):
                            raise MemoryError()
        return _build(m, n, &h, keys, timestamps, headers)
    finally:
        free(m)
        free(h.items)


# --- the consumer -----------------------------------------------------------------------------------

cdef class Fetcher:
    """One librdkafka consumer assigned to partitions of one topic (see the module docstring)."""

    cdef void *rk
    cdef void *queue
    cdef _Shared *shared
    cdef rd_kafka_message_t **msgs
    cdef Py_ssize_t cap
    cdef Py_ssize_t npend
    cdef _Msg *views
    cdef Py_ssize_t views_cap
    cdef _Hdrs hdrs
    cdef bytes topic
    cdef bint closed
    cdef int busy  # calls inside librdkafka with the GIL released
    cdef bint close_pending

    def __cinit__(self, list config, str topic):
        cdef char errstr[512]
        cdef void *conf
        cdef bytes k, v
        self.closed = True
        if not _loaded:
            raise RuntimeError("kafka_fetch: call load() first")
        self.topic = topic.encode()
        self.shared = <_Shared *>malloc(sizeof(_Shared))
        if self.shared == NULL:
            raise MemoryError()
        memset(self.shared, 0, sizeof(_Shared))
        pthread_mutex_init(&self.shared.lock, NULL)
        conf = api.conf_new()
        for name, value in config:
            k, v = str(name).encode(), str(value).encode()
            if api.conf_set(conf, k, v, errstr, sizeof(errstr)) != 0:
                api.conf_destroy(conf)
                raise ValueError(f"librdkafka option {name!r}: {(<bytes>errstr).decode(errors='replace')}")
        api.conf_set_opaque(conf, self.shared)
        api.conf_set_error_cb(conf, _on_error)
        api.conf_set_stats_cb(conf, _on_stats)
        self.rk = api.new(_CONSUMER, conf, errstr, sizeof(errstr))  # owns conf on success
        if self.rk == NULL:
            api.conf_destroy(conf)
            raise ValueError(f"librdkafka: {(<bytes>errstr).decode(errors='replace')}")
        self.closed = False
        # Error and statistics events are served by the consume call, on this thread.
        api.poll_set_consumer(self.rk)
        self.queue = api.queue_get_consumer(self.rk)

    cdef _check(self, int err, str what):
        if err:
            raise RuntimeError(
                f"kafka_fetch: {what}: {(<bytes>api.err2name(err)).decode()}: {(<bytes>api.err2str(err)).decode()}"
            )

    def _alive(self):
        if self.closed:
            raise RuntimeError("kafka_fetch: the consumer is closed")

    def assign(self, list parts):
        """Assign ``(partition, offset)`` pairs of the topic (replacing any earlier assignment)."""
        self._alive()
        cdef rd_kafka_topic_partition_list_t *l = api.tpl_new(len(parts) or 1)
        cdef rd_kafka_topic_partition_t *tp
        cdef int err
        for p, off in parts:
            tp = api.tpl_add(l, self.topic, p)
            tp.offset = off
        err = api.assign(self.rk, l)
        api.tpl_destroy(l)
        self._check(err, "assign")

    def read(self, Py_ssize_t max_rows, double timeout, Py_ssize_t max_bytes=0x7FFFFFFF,
             bint keys=False, bint timestamps=False, bint headers=False):
        """One batch: ``(columns, errors)`` (see the module docstring)."""
        self._alive()
        self.busy += 1
        try:
            return self._read(max_rows, timeout, max_bytes, keys, timestamps, headers)
        finally:
            self._leave()

    cdef _leave(self):
        # A close() from another thread while this call was inside librdkafka (GIL released) only
        # marked the fetcher closed: the handle is freed here, once no call uses it.
        self.busy -= 1
        if self.busy == 0 and self.close_pending:
            self.close_pending = False
            self._teardown()

    cdef _read(self, Py_ssize_t max_rows, double timeout, Py_ssize_t max_bytes, bint keys,
               bint timestamps, bint headers):
        cdef Py_ssize_t got, i, k, nmsg, total = 0, size, hstart
        cdef int timeout_ms = <int>(min(timeout, 86400.0) * 1000) if timeout > 0 else 0
        cdef rd_kafka_message_t *msg
        cdef rd_kafka_message_t **grown
        cdef _Msg *gviews
        cdef void *hp
        cdef size_t hc, j, hlen
        cdef const char *hname
        cdef const void *hval
        cdef int tstype
        cdef bint stop = False
        cdef bint oom = False
        if max_rows < 1:
            max_rows = 1
        if max_bytes < 1 or max_bytes > 0x7FFFFFFF:
            max_bytes = 0x7FFFFFFF
        if self.cap < max_rows:
            grown = <rd_kafka_message_t **>realloc(self.msgs, max_rows * sizeof(void *))
            gviews = <_Msg *>realloc(self.views, max_rows * sizeof(_Msg))
            if grown != NULL:
                self.msgs = grown
            if gviews != NULL:
                self.views = gviews
            if grown == NULL or gviews == NULL:
                raise MemoryError()
            self.cap = max_rows
        if self.npend == 0:
            with nogil:
                got = api.consume_batch_queue(self.queue, timeout_ms, self.msgs, max_rows)
            if got < 0:
                raise RuntimeError("kafka_fetch: rd_kafka_consume_batch_queue failed")
            self.npend = got
        errors = []
        # One pass: views of the messages that fit, error messages set aside.
        self.hdrs.n = 0
        nmsg = 0
        k = 0
        with nogil:
            while k < self.npend and k < max_rows:
                msg = self.msgs[k]
                if msg.err:
                    k += 1
                    continue
                size = msg.len + msg.key_len
                hstart = self.hdrs.n
                hc = 0
                hp = NULL
                self.views[nmsg].hdr_count = -1
                if headers and api.message_headers(msg, &hp) == 0 and hp != NULL:
                    hc = api.header_cnt(hp)
                    for j in range(hc):
                        if api.header_get_all(hp, j, &hname, &hval, &hlen) != 0:
                            break
                        if _hdrs_push(&self.hdrs, hname, strlen(hname), <const char *>hval, hlen):
                            oom = True
                            break
                        size += strlen(hname) + hlen
                    self.views[nmsg].hdr_count = self.hdrs.n - hstart
                if oom:
                    break
                if nmsg > 0 and total + size > max_bytes:
                    self.hdrs.n = hstart
                    break
                total += size
                self.views[nmsg].value = <const char *>msg.payload
                self.views[nmsg].value_len = msg.len
                self.views[nmsg].key = <const char *>msg.key
                self.views[nmsg].key_len = msg.key_len
                self.views[nmsg].partition = msg.partition
                self.views[nmsg].offset = msg.offset
                self.views[nmsg].timestamp = api.message_timestamp(msg, &tstype) if timestamps else -1
                self.views[nmsg].hdr_start = hstart
                nmsg += 1
                k += 1
        if oom:
            raise MemoryError()
        for i in range(k):
            msg = self.msgs[i]
            if msg.err and msg.err != _ERR_PARTITION_EOF:
                if msg.payload != NULL and msg.len:
                    reason = (<char *>msg.payload)[:msg.len].decode(errors="replace")
                else:
                    reason = (<bytes>api.err2str(msg.err)).decode(errors="replace")
                errors.append(
                    (msg.err, (<bytes>api.err2name(msg.err)).decode(), reason, msg.err == _ERR_FATAL,
                     msg.partition, msg.offset)
                )
        try:
            columns = _build(self.views, nmsg, &self.hdrs, keys, timestamps, headers)
        finally:
            # The copies are made (or failed): the first k messages go, the rest wait, in order.
            for i in range(k):
                api.message_destroy(self.msgs[i])
            if k < self.npend:
                memmove(self.msgs, self.msgs + k, (self.npend - k) * sizeof(void *))
            self.npend -= k
        errors.extend(self._client_errors())
        return columns, errors

    cdef list _client_errors(self):
        cdef _Shared *s = self.shared
        out = []
        pthread_mutex_lock(&s.lock)
        try:
            for i in range(s.nerr):
                out.append((s.codes[i], (<bytes>api.err2name(s.codes[i])).decode(),
                            (<bytes>s.reasons[i]).decode(errors="replace"), bool(s.fatal[i]), -1, -1))
            if s.dropped:
                out.append((0, "DROPPED", f"{s.dropped} more client errors", False, -1, -1))
            s.nerr = 0
            s.dropped = 0
        finally:
            pthread_mutex_unlock(&s.lock)
        return out

    def take_stats(self):
        """The newest statistics JSON since the last call, or ``None``."""
        cdef _Shared *s = self.shared
        cdef char *stats
        cdef size_t n
        pthread_mutex_lock(&s.lock)
        stats, n = s.stats, s.stats_len
        s.stats = NULL
        s.stats_len = 0
        pthread_mutex_unlock(&s.lock)
        if stats == NULL:
            return None
        try:
            return stats[:n].decode(errors="replace")
        finally:
            free(stats)

    def position(self, int32_t partition):
        """librdkafka's fetch position of ``partition`` (-1001 when it has none yet)."""
        self._alive()
        cdef rd_kafka_topic_partition_list_t *l = api.tpl_new(1)
        api.tpl_add(l, self.topic, partition)
        cdef int err = api.position(self.rk, l)
        cdef int64_t off = l.elems[0].offset
        api.tpl_destroy(l)
        self._check(err, "position")
        return off

    def commit(self, int32_t partition, int64_t offset):
        """Commit ``offset`` as the group offset of ``partition``, synchronously (GIL released);
        raises ``RuntimeError`` naming the error."""
        self._alive()
        cdef rd_kafka_topic_partition_list_t *l = api.tpl_new(1)
        cdef rd_kafka_topic_partition_t *tp = api.tpl_add(l, self.topic, partition)
        tp.offset = offset
        cdef int err
        self.busy += 1
        try:
            with nogil:
                err = api.commit(self.rk, l, 0)
        finally:
            api.tpl_destroy(l)
            self._leave()
        self._check(err, "commit")

    def watermarks(self, int32_t partition):
        """The cached ``(low, high)`` watermarks of ``partition`` (-1001 where unknown)."""
        self._alive()
        cdef int64_t low = -1001, high = -1001
        cdef int err = api.get_watermark_offsets(self.rk, self.topic, partition, &low, &high)
        self._check(err, "watermarks")
        return low, high

    def close(self):
        """Leave (no group rebalance: the consumer is assigned), drop kept messages, free the handle."""
        if self.closed:
            return
        self.closed = True
        if self.busy:
            self.close_pending = True
        else:
            self._teardown()

    cdef _teardown(self):
        cdef Py_ssize_t i
        for i in range(self.npend):
            api.message_destroy(self.msgs[i])
        self.npend = 0
        with nogil:
            api.queue_destroy(self.queue)
            api.consumer_close(self.rk)
            api.destroy(self.rk)
        self.rk = NULL

    def __dealloc__(self):
        self.close()
        free(self.msgs)
        free(self.views)
        free(self.hdrs.items)
        if self.shared != NULL:
            free(self.shared.stats)
            pthread_mutex_destroy(&self.shared.lock)
            free(self.shared)
