"""Feature functions for the online models (pure; computed at decision points only).

``History`` is the per-customer running summary the churn features read; the customer state
machine calls :meth:`History.observe` for every accepted event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

DAY = 86_400_000

if TYPE_CHECKING:  # pragma: no cover
    from operators.customer import CustomerState
    from operators.events import Event


class History:
    """Compact running counts of one customer's behaviour."""

    __slots__ = ("events", "sessions", "orders", "late_orders", "returns", "refunds", "chats",
                 "help_views", "carts_abandoned", "last_order_ts")

    def __init__(self) -> None:
        self.events = 0
        self.sessions = 0
        self.orders = 0
        self.late_orders = 0
        self.returns = 0
        self.refunds = 0
        self.chats = 0
        self.help_views = 0
        self.carts_abandoned = 0
        self.last_order_ts = None

    def observe(self, ev: "Event") -> None:
        """Every accepted event (duplicates excluded, late ones included), in arrival order."""
        type, ts = ev.type, ev.ts
        self.events += 1
        if type == "order_placed":
            self.orders += 1
            self.last_order_ts = ts
        elif type == "return_requested":
            self.returns += 1
        elif type == "refund_issued":
            self.refunds += 1
        elif type == "help_view":
            self.help_views += 1

    def __getstate__(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state):
        for s, v in zip(self.__slots__, state):
            setattr(self, s, v)


def churn_features(state: "CustomerState", now: int) -> dict[str, float]:
    h = state.history
    tenure_days = (now - state.first_seen) / DAY
    recency_days = (now - state.last_seen) / DAY
    since_order = (now - h.last_order_ts) / DAY if h.last_order_ts is not None else tenure_days
    return {
        "recency_days": recency_days,
        "tenure_days": tenure_days,
        "since_order_days": since_order,
        "orders": float(h.orders),
        "spend": state.spend,
        "events": float(h.events),
        "sessions": float(h.sessions),
        "late_orders": float(h.late_orders),
        "returns": float(h.returns + h.refunds),
        "chats": float(h.chats),
        "help_views": float(h.help_views),
        "carts_abandoned": float(h.carts_abandoned),
    }


def message_features(text: str, ctx: dict) -> dict[str, float]:
    letters = [c for c in text if c.isalpha()]
    caps = sum(1 for c in letters if c.isupper()) / len(letters) if letters else 0.0
    n = max(len(text), 1)
    feats = {
        "length": float(len(text)),
        "caps_share": caps,
        "exclaim_density": text.count("!") / n,
        "question_density": text.count("?") / n,
    }
    feats.update(ctx)
    return feats
