# Included (``include "_validate.pxi"``) by kernels whose row loops index Arrow buffers without checks.
# The including module imports ``pyarrow as pa``.


cdef object _structural_type(object t):
    """``t`` with the types whose full validation checks values, not layout, replaced by a type of
    the same layout (date64 -> int64, time32/time64 -> int32/int64, decimals -> fixed_size_binary).

    Arrow's full validation refuses a date64 that is not a whole day, a time of day out of its day,
    a decimal over its precision: values the kernels write as they are (they never index with them),
    and that ``pa.array(..., safe=False)`` or a cast makes. Only layout matters here.
    """
    if pa.types.is_date64(t) or pa.types.is_time64(t):
        return pa.int64()
    if pa.types.is_time32(t):
        return pa.int32()
    if pa.types.is_decimal(t):
        return pa.binary(t.byte_width)
    if pa.types.is_dictionary(t):
        value = _structural_type(t.value_type)
        return t if value == t.value_type else pa.dictionary(t.index_type, value, t.ordered)
    if pa.types.is_map(t):
        key, item = _structural_type(t.key_type), _structural_type(t.item_type)
        if key == t.key_type and item == t.item_type:
            return t
        return pa.map_(key, t.item_field.with_type(item), t.keys_sorted)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        value = _structural_type(t.value_type)
        if value == t.value_type:
            return t
        field = t.value_field.with_type(value)
        if pa.types.is_fixed_size_list(t):
            return pa.list_(field, t.list_size)
        return pa.large_list(field) if pa.types.is_large_list(t) else pa.list_(field)
    if pa.types.is_struct(t):
        fields = [t.field(k) for k in range(t.num_fields)]
        types = [_structural_type(f.type) for f in fields]
        if all(a == f.type for a, f in zip(types, fields)):
            return t
        return pa.struct([f.with_type(a) for a, f in zip(types, fields)])
    return t


cdef object _validated(object arr, str what):
    """``arr`` once Arrow's full validation of its layout passed, else ``ValueError`` naming ``what``.

    The row loops read offsets, dictionary indices, child arrays and string bytes as they are: an
    array built with ``safe=False``, ``from_buffers`` or read from untrusted IPC could point them
    outside their buffers or hold text that is not UTF-8. ``validate(full=True)`` checks offsets
    against their buffers (ascending, in range), dictionary indices against the dictionary, child
    lengths, string views, and that string values are UTF-8, so a kernel that calls this on every
    array it indexes never reads outside a buffer and never writes invalid text. O(bytes) for
    strings (Arrow's vectorized UTF-8 check), O(rows) for offsets and indices, O(1) otherwise.
    Value-only rules (whole-day date64, time of day, decimal precision) are not applied: an array
    that fails only those passes (see :func:`_structural_type`). The common case costs one
    validation; the view is made only when that one fails. Known limit: pyarrow 26's view of a type
    tree with null-typed children comes out broken, so a column holding both a value-rule breach and
    a null-typed child is refused (a ``ValueError``, never a read out of range).
    """
    checked = arr.storage if isinstance(arr.type, pa.ExtensionType) else arr
    layout = _structural_type(checked.type)
    try:
        checked.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowIndexError) as exc:  # IndexError: a string view out of range
        if layout == checked.type:
            raise ValueError(f"{what}: invalid Arrow data ({exc})") from None
        # Maybe only a value rule: check the layout alone. (Never view first: a view of a type
        # tree with null-typed children can come out broken in pyarrow 26.)
        try:
            checked.view(layout).validate(full=True)
        except (pa.ArrowInvalid, pa.ArrowIndexError):
            raise ValueError(f"{what}: invalid Arrow data ({exc})") from None
    return arr
