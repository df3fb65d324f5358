"""JSON that never fails: the last line of defence of every output encoder (sinks, dead letters).

Validation (``operators/events.py``) keeps what the engine produces inside what orjson writes;
this module makes an encoder survive a value that slipped through anyway. ``dumps`` is orjson on
the normal path; only when orjson refuses does it rebuild the value with :func:`plain`:

* a lone UTF-16 surrogate (``"\\ud83d"``) in a string or key becomes U+FFFD;
* an integer beyond orjson's 64-bit range becomes a float (or its decimal string if even that
  overflows); NaN and infinities become ``null`` (what orjson writes for them anyway);
* nesting deeper than :data:`MAX_DEPTH` becomes the string ``"..."`` (orjson stops at 255);
* any other object becomes its ``str()``.

It lives in ``config`` because both the functional core and the connectors use it and neither
may import the other.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1


def clean_str(s: str) -> str:
    """``s`` with every lone surrogate replaced by U+FFFD (a str that always encodes as UTF-8)."""
    return _SURROGATE.sub("\ufffd", s) if _SURROGATE.search(s) else s


def has_surrogate(s: str) -> bool:
    return _SURROGATE.search(s) is not None


def encode_str(s: str) -> bytes:
    """UTF-8 bytes of ``s``; lone surrogates become U+FFFD instead of raising."""
    try:
        return s.encode()
    except UnicodeEncodeError:
        return clean_str(s).encode()


def _scalar(v: Any) -> Any:
    t = type(v)
    if t is str:
        return clean_str(v)
    if v is None or t is bool:
        return v
    if isinstance(v, int):
        if _INT64_MIN <= v <= _UINT64_MAX:
            return int(v)
        try:
            return float(v)  # what JSON readers make of it anyway
        except OverflowError:
            return str(v)
    if isinstance(v, float):
        return float(v) if math.isfinite(v) else None
    return clean_str(str(v))


def plain(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """A copy of ``value`` made only of what orjson always writes (see the module docstring).

    Iterative, so a deeply nested value costs no Python recursion."""
    if type(value) not in (dict, list, tuple):
        return _scalar(value)
    root: list = [None]
    stack = [(root, 0, value, 1)]  # (parent container, slot, source, depth)
    while stack:
        parent, slot, src, depth = stack.pop()
        if type(src) is dict or isinstance(src, dict):
            if depth > max_depth:
                parent[slot] = "..."
                continue
            out: Any = {}
            parent[slot] = out
            for k, v in src.items():
                key = clean_str(k) if type(k) is str else clean_str(str(k))
                if isinstance(v, (dict, list, tuple)):
                    out[key] = None
                    stack.append((out, key, v, depth + 1))
                else:
                    out[key] = _scalar(v)
        elif isinstance(src, (list, tuple)):
            if depth > max_depth:
                parent[slot] = "..."
                continue
            out = [None] * len(src)
            parent[slot] = out
            for i, v in enumerate(src):
                if isinstance(v, (dict, list, tuple)):
                    stack.append((out, i, v, depth + 1))
                else:
                    out[i] = _scalar(v)
    return root[0]


def dumps(value: Any, option: int = 0) -> bytes:
    """``orjson.dumps(value)``, or, if orjson refuses it, of :func:`plain` ``(value)``. Never raises."""
    try:
        return orjson.dumps(value, option=option)
    except (orjson.JSONEncodeError, TypeError, ValueError, OverflowError, RecursionError):
        return orjson.dumps(plain(value), option=option)


def safe(value: Any) -> bool:
    """Whether orjson writes ``value`` as it is (the tests' check of what the core produces)."""
    try:
        orjson.dumps(value)
        return True
    except (orjson.JSONEncodeError, TypeError):
        return False
