"""The event ids a customer has seen in the duplicate window, packed tight.

A dict of id strings to timestamps cost about 130 bytes per id: most of a customer's memory, as a
customer sends dozens of events a week. Here each id is 16 bytes of one immutable ``bytes``: 8
bytes of its BLAKE2b hash, then its ``ts``. Appending copies the blob (a few hundred bytes) but
allocates exactly, where a growing buffer keeps spare capacity per customer. Two ids of one
customer collide with probability about n^2 / 2^65 (n ids in the window): never, in practice.
"""

from __future__ import annotations

import sys
from hashlib import blake2b
from typing import Optional

_ENTRY = 16
_LITTLE = sys.byteorder == "little"  # the ts bytes read as native int64s in prune()


def _key(event_id: str) -> bytes:
    return blake2b(event_id.encode(), digest_size=8).digest()


class SeenIds:
    __slots__ = ("blob",)

    def __init__(self) -> None:
        self.blob = b""  # (key, ts) entries of 16 bytes, in arrival order

    def __getstate__(self):
        return self.blob

    def __setstate__(self, state) -> None:
        self.blob = state

    def __len__(self) -> int:
        return len(self.blob) // _ENTRY

    def _find(self, key: bytes) -> int:
        blob = self.blob
        i = blob.rfind(key)
        while i > 0 and i % _ENTRY:  # a match across an entry's key and ts bytes: look further back
            i = blob.rfind(key, 0, i + 7)
        return -1 if i < 0 or i % _ENTRY else i

    def lookup(self, event_id: str) -> tuple[bytes, int, Optional[int]]:
        """(key, where, ts seen with or ``None``): check an id, then :meth:`put` it, hashing once."""
        key = _key(event_id)
        i = self._find(key)
        return key, i, None if i < 0 else int.from_bytes(self.blob[i + 8:i + _ENTRY], "little", signed=True)

    def admit(self, event_id: str, ts: int, window: int) -> bool:
        """False when ``event_id`` was seen with a ``ts`` within ``window`` (ms) of this one (a
        duplicate: nothing changes); else True, and the id is remembered with the later of the
        two times (:meth:`lookup` then :meth:`put` in one call)."""
        key = blake2b(event_id.encode(), digest_size=8).digest()
        blob = self.blob
        i = blob.rfind(key)
        if i < 0:  # the usual case: a new id (one copy of the blob, not two)
            self.blob = b"".join((blob, key, ts.to_bytes(8, "little", signed=True)))
            return True
        if i % _ENTRY:
            i = self._find(key)
            if i < 0:
                self.blob = b"".join((blob, key, ts.to_bytes(8, "little", signed=True)))
                return True
        seen = int.from_bytes(blob[i + 8:i + _ENTRY], "little", signed=True)
        if abs(ts - seen) <= window:
            return False
        self.put(key, i, ts if ts > seen else seen)
        return True

    def put(self, key: bytes, i: int, ts: int) -> None:
        """:meth:`add` for a ``(key, where)`` from :meth:`lookup` (nothing added in between)."""
        blob = self.blob if i < 0 else self.blob[:i] + self.blob[i + _ENTRY:]
        self.blob = blob + key + ts.to_bytes(8, "little", signed=True)

    def get(self, event_id: str) -> Optional[int]:
        """The ``ts`` the id was seen with, or ``None``."""
        return self.lookup(event_id)[2]

    def add(self, event_id: str, ts: int) -> None:
        """Remember the id with ``ts`` (replacing the ``ts`` it had, if any)."""
        key = _key(event_id)
        self.put(key, self._find(key), ts)

    def prune(self, horizon: int) -> None:
        """Forget the ids seen with a ``ts`` before ``horizon``."""
        blob = self.blob
        if not blob:
            return
        if _LITTLE:
            stamps = memoryview(blob).cast("q")[1::2]
            if min(stamps) >= horizon:
                return  # the usual case, read in place: nothing to drop
            k, n = 0, len(stamps)  # ids arrive in about ts order: usually the ones to drop are the oldest, a prefix
            while k < n and stamps[k] < horizon:
                k += 1
            if k == n or min(stamps[k:]) >= horizon:
                self.blob = blob[k * _ENTRY:]
                return
        entries = [blob[i:i + _ENTRY] for i in range(0, len(blob), _ENTRY)]
        self.blob = b"".join(e for e in entries if int.from_bytes(e[8:], "little", signed=True) >= horizon)
