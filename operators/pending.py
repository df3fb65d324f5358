"""Pending churn decisions, packed: one ``bytes`` per decision (issue 19).

A churn decision waits up to the churn horizon for its label with the features it was scored on
(68 doubles, about half of them zero). As a tuple ``(decision id, ts, (names, array('d')), due)``
it cost some 900 bytes of objects; an entry here is one ``bytes`` of about 300:

====== ===================================================================================
bytes  content
====== ===================================================================================
8      ``due``: the label's due time (int64, ms; first, so the timer scan reads it in place)
8      ``ts``: the decision's event time (int64, ms)
2      the feature names' layout, an index into this worker's layout table (uint16)
1      how the decision id is kept: 1, after ``"<customer id>|<ts>|"``; 0, whole
1      the id's length in bytes (utf-8), then the id (or its tail)
n/8    one bit per feature, set when its double is not +0.0 (bit pattern zero)
8 each the doubles whose bit is set, in layout order (little-endian)
====== ===================================================================================

Exact: bit patterns go through as they are (only +0.0 is left out). A decision with a feature
value not a float or -0.0, an id longer than 255 bytes, or beyond the layout table's bound
stays a tuple (:func:`make` says which); every function here reads both forms.
Layout indexes are the worker's own: a snapshot carries ``(names, entry)`` (:func:`portable`),
a resume indexes the names again (:func:`resume`), which also packs pending decisions of a
snapshot written before entries were packed. Pure: no engine, no I/O.
"""

from __future__ import annotations

import struct
import sys
from array import array
from itertools import compress, repeat
from math import copysign
from typing import Any, Union

Entry = Union[bytes, tuple]  # a packed decision, or (decision_id, ts, features, due) as before packing

_HEAD = struct.Struct("<qqHBB")  # due, ts, layout, id mode, id length
_KEY = struct.Struct("<qq").unpack_from  # (due, ts): the sort key, read in place
_BITS = bytes.maketrans(b"\x00\x01", b"01")  # selector bytes <-> the mask's binary digits
_SELECT = bytes.maketrans(b"01", b"\x00\x01")
_FLIP = bytes.maketrans(b"\x00\x01", b"\x01\x00")
_NEGATIVE_ZERO = struct.pack("=d", -0.0)
_BIG = sys.byteorder == "big"  # entries hold little-endian doubles, as snapshots may move between machines
MAX_LAYOUTS = 4096

_LAYOUTS: dict[tuple, "Names"] = {}  # feature-name tuples, one object per layout (a few dozen in practice)
_JOINED: dict[str, "Names"] = {}  # the same, by their pickled form
_INDEX: dict[tuple, int] = {}  # a layout's index in _TABLE (what an entry stores)
_TABLE: list["Names"] = []
_FLOATS = {float}


class Names(tuple):
    """A layout's feature names, shared by every pending decision of the worker; pickled as one
    string (a snapshot would otherwise carry, and a resume allocate, 68 strings per customer)."""

    __slots__ = ()

    def __reduce__(self):
        return _names, ("\x1f".join(self),)


def _names(joined: str) -> Names:
    names = _JOINED.get(joined)
    if names is None:
        names = Names(joined.split("\x1f"))
        if len(_JOINED) < MAX_LAYOUTS:
            _JOINED[joined] = _LAYOUTS.setdefault(names, names)
            names = _JOINED[joined]
    return names


def shared(names: tuple) -> Names:
    """The worker's one ``Names`` object for ``names`` (a new, unshared one past the bound)."""
    found = _LAYOUTS.get(names)
    if found is None:
        found = Names(names)
        if len(_LAYOUTS) < MAX_LAYOUTS:
            _LAYOUTS[names] = found
    return found


def _layout(names: tuple) -> int:
    """``names``' index in the layout table (-1: the table is full)."""
    i = _INDEX.get(names)
    if i is None:
        if len(_TABLE) >= MAX_LAYOUTS:
            return -1
        i = _INDEX[names] = len(_TABLE)
        _TABLE.append(shared(names))
    return i


def make(decision_id: str, ts: int, feats: dict, due: int, customer_id: str) -> Entry:
    """A decision of ``customer_id`` as one entry: packed ``bytes`` when every feature value is a
    float (else the tuple form, features as :func:`pack_features` keeps them)."""
    if set(map(type, feats.values())) != _FLOATS:
        return decision_id, ts, pack_features(feats), due
    entry = _pack(decision_id, ts, tuple(feats), list(feats.values()), due, customer_id)
    return (decision_id, ts, pack_features(feats), due) if entry is None else entry


def _pack(decision_id: str, ts: int, names: tuple, values: list, due: int, customer_id: str):
    """The ``bytes`` entry (``None``: not packable: the table is full, the id too long, a -0.0)."""
    layout = _layout(names)
    prefix = f"{customer_id}|{ts}|"
    derived = decision_id.startswith(prefix)
    tail = (decision_id[len(prefix):] if derived else decision_id).encode("utf-8", "surrogatepass")
    if layout < 0 or len(tail) > 255:
        return None
    select = bytes(map(bool, values))  # 0 for a zero
    if _NEGATIVE_ZERO in array("d", values).tobytes() and \
            min(map(copysign, repeat(1.0), compress(values, select.translate(_FLIP)))) < 0:
        return None  # a -0.0 (never, in practice; the bytes search may also match across two doubles): the tuple form
    mask = int(select.translate(_BITS)[::-1], 2).to_bytes((len(values) + 7) // 8, "little")
    kept = array("d", [*compress(values, select)])  # (from a list: faster than from the iterator)
    if _BIG:
        kept.byteswap()
    return b"".join((_HEAD.pack(due, ts, layout, derived, len(tail)), tail, mask, kept.tobytes()))


def due(e: Entry) -> int:
    """The time ``e``'s label is due (ms)."""
    return e[3] if type(e) is tuple else _KEY(e)[0]


def key(e: Entry) -> tuple[int, int]:
    """``(due, ts)``: pending decisions are kept in this order."""
    return (e[3], e[1]) if type(e) is tuple else _KEY(e)


def decided(e: Entry) -> int:
    """The decision's event time (ms)."""
    return e[1] if type(e) is tuple else _KEY(e)[1]


def decision_id(e: Entry, customer_id: str) -> str:
    """The decision's id (``customer_id``: whose entry it is)."""
    if type(e) is tuple:
        return e[0]
    _, ts, _, derived, n = _HEAD.unpack_from(e)
    tail = e[_HEAD.size:_HEAD.size + n].decode("utf-8", "surrogatepass")
    return f"{customer_id}|{ts}|{tail}" if derived else tail


def unpack(e: Entry, customer_id: str) -> tuple[str, int, dict, int]:
    """``(decision_id, ts, features, due)``: the features as the dict they were made from (the
    same keys in the same order, the same doubles bit for bit)."""
    if type(e) is tuple:
        return e[0], e[1], unpack_features(e[2]), e[3]
    return _open(e, _TABLE[_HEAD.unpack_from(e)[2]], customer_id)


def _open(blob: bytes, names: tuple, customer_id: str) -> tuple[str, int, dict, int]:
    due_, ts, _, derived, n = _HEAD.unpack_from(blob)
    at = _HEAD.size + n
    tail = blob[_HEAD.size:at].decode("utf-8", "surrogatepass")
    width = (len(names) + 7) // 8
    select = format(int.from_bytes(blob[at:at + width], "little"), f"0{len(names)}b")[::-1].encode().translate(_SELECT)
    kept = array("d")
    kept.frombytes(blob[at + width:])
    if _BIG:
        kept.byteswap()
    feats = dict.fromkeys(names, 0.0)
    feats.update(zip(compress(names, select), kept))  # (the zeros stay where they were: the keys' order is names')
    return f"{customer_id}|{ts}|{tail}" if derived else tail, ts, feats, due_


def rebase(e: Entry, old: str, new: str) -> Entry:
    """``old``'s entry as customer ``new`` keeps it (identity: a guest's decisions keep their ids)."""
    if type(e) is tuple or old == new:
        return e
    d, ts, feats, due_ = unpack(e, old)
    return make(d, ts, feats, due_, new)


def portable(entries: tuple) -> tuple:
    """``entries`` as a snapshot holds them: ``(names, entry)`` per packed one (layout indexes
    are this worker's), tuples as they are."""
    return tuple(e if type(e) is tuple else (_TABLE[_HEAD.unpack_from(e)[2]], e) for e in entries)


def resume(entries: tuple, customer_id: str) -> tuple:
    """Inverse of :func:`portable`, in this worker; also takes a snapshot's pending decisions
    from before packing (``(decision_id, ts, features, due)``, features a dict or
    ``(names, array)``) and packs them when they can be."""
    out = []
    for e in entries:
        if len(e) == 2:
            names, blob = e
            layout = _layout(names)
            if layout < 0:  # (a full table: the tuple form, as before packing)
                out.append(unpack_packed(names, blob, customer_id))
                continue
            if layout != _HEAD.unpack_from(blob)[2]:
                blob = blob[:16] + layout.to_bytes(2, "little") + blob[18:]
            out.append(blob)
        else:
            d, ts, feats, due_ = e
            if type(feats) is dict:
                out.append(make(d, ts, feats, due_, customer_id))
                continue
            names = shared(feats[0])
            packed = _pack(d, ts, names, feats[1].tolist(), due_, customer_id)
            out.append((d, ts, (names, feats[1]), due_) if packed is None else packed)
    return tuple(out)


def unpack_packed(names: tuple, blob: bytes, customer_id: str) -> tuple:
    """A snapshot's packed entry in the tuple form (its layout index is another worker's)."""
    d, ts, feats, due_ = _open(blob, names, customer_id)
    return d, ts, pack_features(feats), due_


def pack_features(feats: dict) -> Any:
    """Features as ``(names, array('d'))`` (the tuple form's; a dict of 68 floats costs about
    5 KB against 0.6 KB packed). Exact (the same doubles in the same order); a dict with any
    value not a float stays a dict."""
    if set(map(type, feats.values())) != _FLOATS:
        return feats
    return shared(tuple(feats)), array("d", list(feats.values()))  # (from a list: faster than from the view)


def unpack_features(packed: Any) -> dict:
    """Inverse of :func:`pack_features` (a dict, as snapshots from before packing hold, or one not packable, as is)."""
    return packed if type(packed) is dict else dict(zip(packed[0], packed[1].tolist()))
