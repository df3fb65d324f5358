"""What the rules hand to policy, and what policy hands to the sinks."""

from __future__ import annotations

import hashlib
from typing import Any, Optional

from operators.events import format_ts

SCHEMA_VERSION = 2  # 2: the trigger type is open (a shop's own rules, the catalogue; CHANGELOG)
TRIGGER_TYPES = ("abandoned_cart", "delay_apology", "proactive_outreach", "escalation")  # the contract's; open to more
MARKETING = frozenset({"abandoned_cart", "proactive_outreach"})  # the contract's marketing types
PRIORITIES = ("low", "normal", "high", "urgent")
TIERS = ("new", "regular", "vip")
_BASE_PRIORITY = {"abandoned_cart": 0, "proactive_outreach": 0, "delay_apology": 1, "escalation": 1}


def trigger_id(type: str, customer_id: str, key: str) -> str:
    """Deterministic and unique per trigger: the same input always gives the same id."""
    return hashlib.blake2b(f"{type}\x1f{customer_id}\x1f{key}".encode(), digest_size=12).hexdigest()


def priority(type: str, tier: str, score: Optional[float], policy_class: Optional[str] = None,
             base: Optional[int] = None) -> str:
    """Rises one step per tier above ``new`` and one more for a score of 0.9 or above; a shop's own
    type starts at ``base`` (an index of :data:`PRIORITIES`, the rule's ``priority``) or where its
    policy class does (service one step above marketing)."""
    base = _BASE_PRIORITY.get(type) if base is None else base
    if base is None:
        base = 1 if (policy_class or default_class(type)) == "service" else 0
    level = base + TIERS.index(tier) + (1 if score is not None and score >= 0.9 else 0)
    return PRIORITIES[min(level, len(PRIORITIES) - 1)]


def default_class(type: str) -> str:
    """The policy class of a candidate that names none: the contract's marketing types, else service."""
    return "marketing" if type in MARKETING else "service"


class Candidate:
    """A trigger a rule wants to send; policy decides whether it goes out.

    ``key`` makes the trigger unique (cart due time, order id, conversation id...). A candidate
    with a ``threshold`` waits for a model score and goes out only when ``score >= threshold``.
    ``policy_class`` (``service`` or ``marketing``) says which policy clauses it passes; the
    ``type`` is open (a shop's own rules name their own); ``base``: the priority its rule starts
    at (an index of :data:`PRIORITIES`; None: by type or class).
    """

    __slots__ = ("type", "customer_id", "event_ts", "reasons", "score", "payload", "key", "tier", "threshold", "pos",
                 "recs", "policy_class", "channels", "released_at", "base")

    def __init__(self, type: str, customer_id: str, event_ts: int, reasons: list[str], payload: dict,
                 key: str, tier: str = "new", score: Optional[float] = None, threshold: Optional[float] = None,
                 policy_class: Optional[str] = None, base: Optional[int] = None):
        self.type = type
        self.customer_id = customer_id
        self.event_ts = event_ts
        self.reasons = reasons
        self.payload = payload
        self.key = key
        self.tier = tier
        self.score = score
        self.threshold = threshold
        self.pos = 0  # position in the input of the event that caused it (ordering across customers)
        self.recs = None  # (query products, excluded products) for the recommendations in the payload
        self.policy_class = policy_class or default_class(type)
        self.channels: Optional[list[str]] = None  # policy: the channels the customer consented to
        self.released_at: Optional[int] = None  # policy: when quiet hours let it go (event time)
        self.base = base

    @property
    def trigger_id(self) -> str:
        return trigger_id(self.type, self.customer_id, self.key)

    def to_trigger(self, emitted_at: str = "") -> dict[str, Any]:
        out = {
            "trigger_id": self.trigger_id,
            "type": self.type,
            "customer_id": self.customer_id,
            "event_ts": format_ts(self.event_ts),
            "emitted_at": emitted_at,
            "priority": priority(self.type, self.tier, self.score, self.policy_class, self.base),
            "reasons": list(self.reasons),
            "score": self.score,
            "payload": self.payload,
            "schema_version": SCHEMA_VERSION,
        }
        if self.channels is not None:
            out["channels"] = list(self.channels)
        if self.released_at is not None:
            out["released_at"] = format_ts(self.released_at)
        return out

    def __repr__(self) -> str:
        return f"Candidate({self.type}, {self.customer_id}, {format_ts(self.event_ts)}, {self.reasons})"

    def __reduce__(self):
        return (Candidate, (self.type, self.customer_id, self.event_ts, self.reasons, self.payload, self.key,
                            self.tier, self.score, self.threshold, self.policy_class, self.base),
                (None, {"pos": self.pos, "recs": self.recs, "channels": self.channels, "released_at": self.released_at}))


class Suppressed:
    """A candidate policy held back, with the clause that did it (counted, never emitted)."""

    __slots__ = ("candidate", "reason")

    def __init__(self, candidate: Candidate, reason: str):
        self.candidate = candidate
        self.reason = reason

    def __repr__(self) -> str:
        return f"Suppressed({self.candidate!r}, {self.reason})"


class Notice:
    """Context a later step needs from the customer's state machine (a DAG has no way back)."""

    __slots__ = ("kind", "customer_id", "ts", "key", "pos")

    def __init__(self, kind: str, customer_id: str, ts: int, key: str = ""):
        self.kind = kind
        self.customer_id = customer_id
        self.ts = ts
        self.key = key
        self.pos = 0

    def __repr__(self) -> str:
        return f"Notice({self.kind}, {self.customer_id}, {self.key})"

    def __reduce__(self):
        return (Notice, (self.kind, self.customer_id, self.ts, self.key), (None, {"pos": self.pos}))


class ProfileUpdate:
    """Fields of the ``crm:customer:{id}`` hash that changed (a partial update, merged by sinks).

    ``defaults`` are written only where the field is still absent (the model scores start as
    null and must never overwrite a score that arrived first on another path).
    """

    __slots__ = ("customer_id", "fields", "defaults")

    def __init__(self, customer_id: str, fields: dict[str, Any], defaults: bool = False):
        self.customer_id = customer_id
        self.fields = fields
        self.defaults = defaults

    def __repr__(self) -> str:
        return f"ProfileUpdate({self.customer_id}, {sorted(self.fields)})"
