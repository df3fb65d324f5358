"""Erasure (GDPR Art. 17 / CCPA delete): tombstones, what a customer's state holds, the audit record.

Pure: no Kafka, Redis or Bytewax. The flow (``flows/dataflow.py``) calls these from its
stateful steps; the connectors store what :class:`Tombstones` holds.

A tombstone is ``(HMAC-SHA256(privacy.tombstone_key, customer_id)[:32 hex], erased_at ms)``:
enough to recognise the customer's events again (replayed logs, late events), not enough to
read the id back without the key. Events of a tombstoned customer with ``ts <= erased_at`` are
dropped (``events_erased``); a later event starts a fresh customer.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Iterable, Optional

from operators import pending

ERASURE = "erasure_requested"
HASH_CHARS = 32  # 128 bits of the HMAC: collisions are out of reach, the tombstone stays small


def tombstone_hash(key: bytes, customer_id: str) -> str:
    """The keyed hash of ``customer_id`` (hex, HASH_CHARS long); the key is ``privacy.tombstone_key``."""
    return hmac.new(key, customer_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:HASH_CHARS]


class Tombstones:
    """hash -> erased_at (epoch ms) of every erased customer: loaded from the store at start, added
    to by erasures as they run. Shared by a process's workers (a customer's key stays on one
    worker; dict reads and writes are atomic under the GIL)."""

    def __init__(self, key: bytes, known: Optional[dict[str, int]] = None):
        self.key = key
        self.erased: dict[str, int] = dict(known or {})

    def hash(self, customer_id: str) -> str:
        return tombstone_hash(self.key, customer_id)

    def erased_at(self, customer_id: str) -> Optional[int]:
        """When the customer was last erased (ms), or ``None`` (no hash computed while nobody was)."""
        if not self.erased:
            return None
        return self.erased.get(self.hash(customer_id))

    def add(self, customer_id: str, ts: int) -> tuple[str, int]:
        """Record an erasure at ``ts``; the later of two erasures wins. Returns the tombstone."""
        h = self.hash(customer_id)
        at = max(ts, self.erased.get(h, ts))
        self.erased[h] = at
        return h, at

    def merge(self, rows: Iterable[tuple[str, int]]) -> None:
        for h, at in rows:
            if at > self.erased.get(h, at - 1):
                self.erased[h] = at


class Erasure:
    """An erasure on its way through the flow: the profile step makes it, the models and policy
    steps add what they removed, the sinks delete the Redis keys and write the audit record.
    ``decisions``: the customer's pending model decision ids (churn and frustration)."""

    __slots__ = ("customer_id", "ts", "event_id", "tombstone", "removed", "decisions", "pos")

    def __init__(self, customer_id: str, ts: int, event_id: str, tombstone: str, removed: dict,
                 decisions: tuple = (), pos: int = 0):
        self.customer_id = customer_id
        self.ts = ts
        self.event_id = event_id
        self.tombstone = tombstone
        self.removed = removed
        self.decisions = decisions
        self.pos = pos

    def __reduce__(self):
        return (Erasure, (self.customer_id, self.ts, self.event_id, self.tombstone, self.removed,
                          self.decisions, self.pos))

    def __repr__(self) -> str:  # never the id: reprs end up in logs
        return f"Erasure({self.tombstone}, {self.ts})"


def state_inventory(state: Any, held: int = 0) -> tuple[dict, tuple]:
    """What a ``CustomerState`` (or ``None``) holds, as counts for the audit record, and the ids of
    its pending model decisions. Counts only: the audit record names no product, order or text."""
    if state is None:
        return {"profile": False, "held_events": held}, ()
    decisions = [pending.decision_id(d, state.customer_id) for d in state.churn_pending]
    for conv in state.convs.values():
        decisions.extend(p[0] for p in getattr(conv, "pending", ()) or ())
    removed = {
        "profile": True,
        "held_events": held + len(state.held),
        "cart_lines": len(state.cart),
        "open_orders": len(state.orders),
        "conversations": len(state.convs),
        "recent_items": _recent(state.recent),
        "seen_event_ids": _size(state.seen),
    }
    return removed, tuple(decisions)


def _recent(recent: Any) -> int:
    """Distinct products a ``RecentItems`` remembers (session views and carts, purchases, recent)."""
    names = ("views", "carts", "bought", "recent")
    return len({p for n in names for p in (getattr(recent, n, None) or ())})


def _size(obj: Any) -> int:
    try:
        return len(obj)
    except TypeError:
        return 0


def audit_record(e: Erasure, completed_at: str, format_ts) -> dict:
    """The ``erasure_completed`` record (``crm.audit``, ``crm:audit``, replay's audit file)."""
    return {
        "type": "erasure_completed",
        "customer_id": e.customer_id,
        "event_id": e.event_id,
        "erased_at": format_ts(e.ts),
        "erased_at_ms": e.ts,
        "completed_at": completed_at,
        "tombstone": e.tombstone,
        "removed": dict(e.removed),
    }
