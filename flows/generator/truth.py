"""The hidden truth, recomputed from the events actually emitted with the contract's definitions:
cart episodes (abandoned or not), orders owed a ``delay_apology``, conversations that ask for a
human (CONTRACT.md sections 2-3)."""

from __future__ import annotations

import re
from typing import Optional

from flows.generator.timefmt import HOUR, MIN, parse_ts

IDLE = 30 * MIN  # abandoned-cart idle time of the contract
GRACE = 2 * HOUR  # delay-apology grace of the contract
CART_ACTIVITY = ("add_to_cart", "remove_from_cart", "checkout_started")

# Word-boundary scan for "asks for a human" (the engine's list, CONTRACT.md section 3, escalation (a)).
HUMAN_WORDS = (
    "human", "agent", "representative", "real person", "supervisor", "manager",
    "someone real", "live person", "talk to a person", "speak to a person",
)
HUMAN_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in HUMAN_WORDS) + r")\b", re.IGNORECASE)


def compute_cart_truth(events: list[tuple[int, str, dict]], end: int) -> list[tuple[bool, int]]:
    """Cart episodes of one customer from its (ts, type, fields) events sorted by ts.

    Returns (abandoned, last_activity_ts) per episode. ``events`` holds product ids in fields.
    """
    out: list[tuple[bool, int]] = []
    cart: dict[str, int] = {}
    open_ = False
    last = 0
    for ts, etype, f in events:
        if etype not in CART_ACTIVITY and etype != "order_placed":
            continue
        if open_ and cart and ts > last + IDLE:
            out.append((True, last))
            open_ = False
        if etype == "add_to_cart":
            if not open_:
                open_ = True
            cart[f["product_id"]] = cart.get(f["product_id"], 0) + f.get("quantity", 1)
            last = ts
        elif etype == "remove_from_cart":
            if open_:
                last = ts
            cart.pop(f["product_id"], None)
            if open_ and not cart:
                out.append((False, last))
                open_ = False
        elif etype == "checkout_started":
            if open_:
                last = ts
        else:  # order_placed
            cart = {}
            if open_:
                out.append((False, last))
                open_ = False
    if open_ and cart:
        out.append((last + IDLE <= end, last))
    return out


def compute_order_truth(events: list[tuple[int, str, dict]], end: int,
                        open_due: Optional[dict[str, int]] = None) -> dict[str, bool]:
    """Orders of one customer that are owed a ``delay_apology``, from its (ts, type, fields) events
    sorted by ts, with the contract's semantics: an order neither delivered nor cancelled gets one
    when the carrier reports a delay or when its promise (the latest ``promised_delivery_ts``, which
    ``order_shipped`` and ``order_delayed`` may update) is missed by more than the grace, whichever
    comes first; orders still open at ``end`` count if their due time is at or before ``end`` (or,
    with ``open_due``, have their due time put there to be decided later)."""
    promise: dict[str, int] = {}
    late: dict[str, bool] = {}
    closed: set[str] = set()

    def missed_before(ts: int) -> None:  # promise timers that expired before this event
        for oid, p in promise.items():
            if oid not in closed and not late[oid] and p + GRACE < ts:
                late[oid] = True

    for ts, etype, f in events:
        missed_before(ts)
        oid = f.get("order_id")
        if etype == "order_placed":
            promise[oid] = parse_ts(f["promised_delivery_ts"])
            late[oid] = False
            continue
        if oid not in promise or oid in closed:
            continue
        if etype in ("order_delivered", "order_cancelled"):
            closed.add(oid)
        elif etype in ("order_shipped", "order_delayed"):
            if etype == "order_delayed":
                late[oid] = True
            if f.get("promised_delivery_ts"):
                promise[oid] = parse_ts(f["promised_delivery_ts"])
    for oid, p in promise.items():
        if oid not in closed and not late[oid]:
            if open_due is not None:
                open_due[oid] = p + GRACE
            elif p + GRACE <= end:
                late[oid] = True
    return late
