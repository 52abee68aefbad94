"""Pure-Python reference of :mod:`arrowflow._ext.json_decode` (a test oracle, never used at run time).

Built on :func:`json.loads` with hooks that keep numbers as their text and objects as key/value
pairs. Differences from the kernel, outside what the tests generate: keys written with escapes and
nesting deeper than 64 levels are not reported as ``"unsupported"``, and the reason given for a
payload with several problems may differ (the first failing *row* is the same).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa


class _Num(str):
    """A JSON number, kept as its text."""


class _Obj(list):  # type: ignore[type-arg]
    """A JSON object, kept as its ``(key, value)`` pairs."""


class _Unsupported(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def _check_surrogates(value: Any) -> None:
    if isinstance(value, _Obj):
        for k, v in value:
            if _has_surrogate(k):
                raise _Unsupported()
            _check_surrogates(v)
    elif isinstance(value, list):
        for v in value:
            _check_surrogates(v)
    elif isinstance(value, str) and not isinstance(value, _Num) and _has_surrogate(value):
        raise _Unsupported()


def scan(
    data: np.ndarray,
    offsets: np.ndarray,
    keys: Sequence[bytes],
    kinds: Sequence[int],
    strict: bool = False,
) -> tuple[list[pa.Array] | None, str | None, int]:
    """Same contract as the kernel (see ``ext/json_decode.pyx``)."""
    raw = np.asarray(data, dtype=np.uint8).tobytes()
    offs = [int(o) for o in offsets]
    wanted = {k.decode(): j for j, k in enumerate(keys)}
    columns: list[list[bytes | None]] = [[] for _ in keys]
    for row in range(len(offs) - 1):
        text = raw[offs[row] : offs[row + 1]].decode("utf-8")
        try:
            doc = json.loads(
                text,
                parse_int=_Num,
                parse_float=_Num,
                parse_constant=_reject_constant,
                object_pairs_hook=_Obj,
            )
            _check_surrogates(doc)
        except _Unsupported:
            return None, "unsupported", row
        except (ValueError, RecursionError):
            return None, "syntax", row
        if not isinstance(doc, _Obj):
            return None, "syntax", row
        got: list[bytes | None] = [None] * len(keys)
        seen: set[int] = set()
        for key, value in doc:
            j = wanted.get(key)
            if j is None:
                if strict:
                    return None, "unexpected", row
                continue
            if j in seen:
                return None, "duplicate", row
            seen.add(j)
            if value is None:
                continue
            if isinstance(value, _Num):
                ok = kinds[j] == 1
            elif isinstance(value, bool):
                ok = kinds[j] == 2
                value = "true" if value else "false"
            elif isinstance(value, str):
                ok = kinds[j] == 0
            else:
                ok = False
            if not ok:
                return None, "mismatch", row
            got[j] = str(value).encode("utf-8")
        for j in range(len(keys)):
            columns[j].append(got[j])
    return [pa.array(c, pa.large_string()) for c in columns], None, -1
