"""Independent readings of issue 14's catalogue flows, computed from a generated log in event time.

Each oracle takes the log's events (dicts with ``_ms``, sorted by time, file order on ties) and
the flows' parameters (read from the settings object: :func:`params_from`), and returns the set of
``(type, customer_id, due_ms)`` candidates the rules should produce before policy, with a replay's
end-of-input semantics: a timer fires when its due time is at or before the latest event time of
the log. An event at exactly a due time comes first (it may cancel or move it). Nothing here
imports the engine's rules; the bounds (episodes per customer, watchers per product, products
per customer) are left out, so a comparison sets them out of reach.

- ``browse_abandonment``: per (customer, product), ``views`` views within ``window`` (a view
  exactly ``window`` old no longer counts) qualify; due ``wait`` after the last view (a later
  view moves it); an ``add_to_cart`` of the product or an ``order_placed`` holding it cancels;
  after firing or a cancel the count starts afresh.
- ``post_purchase_review``: ``after`` past the order's last ``order_delivered``, unless
  ``return_requested`` or ``refund_issued`` for that order comes first.
- ``win_back``: ``after`` past the customer's last ``order_placed``; a later order starts anew.
- ``support_sla_breach``: per conversation, the first unanswered customer message is due
  ``reply_within`` later; an ``agent`` message (not the bot's) or ``chat_closed`` cancels; after
  it fired, once only until such a reply or close.
- ``satisfaction_survey``: ``chat_closed`` without ``csat`` -> ``after`` later, unless the
  conversation goes on (a message) or a close with csat comes.
- ``price_drop``: ``price_changed`` with ``price <= before * (1 - min_drop)`` (before: its
  ``old_price``, else the product's last price) -> customers who viewed or carted the product
  within ``window`` before it (inclusive) and bought it neither at nor after that latest view up
  to the change (due: the change's ts).
- ``back_in_stock``: ``stock_changed`` in stock after out of stock; same recipients.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
TYPES = ("browse_abandonment", "post_purchase_review", "win_back", "support_sla_breach", "satisfaction_survey",
         "price_drop", "back_in_stock")


def ts_ms(text: str) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(dt.astimezone(timezone.utc).timestamp() * 1000 + 0.5)


def read_log(path: Path) -> list[dict]:
    """The events of a log written with ``bad_share=0`` (every line a real event), with ``_ms``;
    sorted by time, file order on ties."""
    events = []
    for line in path.read_bytes().splitlines():
        o = orjson.loads(line)
        o["_ms"] = ts_ms(o["ts"])
        events.append(o)
    events.sort(key=lambda o: o["_ms"])
    return events


@dataclass
class Params:
    """The flows' numbers in ms (take them from the settings: :func:`params_from`)."""

    browse_views: int = 3
    browse_window: int = DAY
    browse_wait: int = 4 * HOUR
    review_after: int = 7 * DAY
    win_back_after: int = 60 * DAY
    reply_within: int = 15 * MIN
    survey_after: int = HOUR
    watch_window: int = 14 * DAY
    min_drop: float = 0.05


def params_from(s: Any) -> Params:
    """The numbers of a :class:`config.settings.Settings` (its catalogue groups and ``watch``)."""
    def ms(d) -> int:
        return int(d.total_seconds() * 1000)

    return Params(
        browse_views=s.browse_abandonment.views, browse_window=ms(s.browse_abandonment.window),
        browse_wait=ms(s.browse_abandonment.wait), review_after=ms(s.post_purchase_review.after),
        win_back_after=ms(s.win_back.after), reply_within=ms(s.support_sla_breach.reply_within),
        survey_after=ms(s.satisfaction_survey.after), watch_window=ms(s.watch.window), min_drop=s.watch.min_drop)


class Timers:
    """Keyed timers in event time: ``fire_before(now)`` fires those due strictly before ``now``.
    Set ``due[key] = (customer, due_ms)`` with :meth:`arm`; ``due.pop(key)`` cancels."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.due: dict[Any, tuple[str, int]] = {}  # key -> (customer, due)
        self.heap: list = []  # (due, seq, key); stale entries skipped
        self.out: set = set()

    def arm(self, key: Any, customer: str, due: int) -> None:
        self.due[key] = (customer, due)
        heapq.heappush(self.heap, (due, len(self.out) + len(self.heap), key))

    def fire_before(self, now: int) -> list:
        fired = []
        while self.heap and self.heap[0][0] < now:
            due, _, key = heapq.heappop(self.heap)
            if self.due.get(key, (None, None))[1] == due:
                self.out.add((self.kind,) + self.due.pop(key))
                fired.append(key)
        return fired

    def finish(self, last: int) -> set:
        self.fire_before(last + 1)
        return self.out


def _bought(o: dict) -> list[str]:
    return [i["product_id"] for i in o.get("items") or ()]


def browse_abandonment(events: list[dict], p: Params, last: int) -> set:
    timers = Timers("browse_abandonment")
    hits: dict[tuple, list[int]] = defaultdict(list)
    for o in events:
        for key in timers.fire_before(o["_ms"]):
            hits.pop(key, None)
        cid, t = o.get("customer_id"), o["_ms"]
        if o["type"] == "product_view":
            key = (cid, o["product_id"])
            if key in timers.due:
                timers.arm(key, cid, t + p.browse_wait)
                continue
            hits[key] = [h for h in hits[key] if h > t - p.browse_window] + [t]
            if len(hits[key]) >= p.browse_views:
                timers.arm(key, cid, t + p.browse_wait)
        elif o["type"] in ("add_to_cart", "order_placed"):
            for pid in [o["product_id"]] if o["type"] == "add_to_cart" else _bought(o):
                timers.due.pop((cid, pid), None)
                hits.pop((cid, pid), None)
    return timers.finish(last)


def post_purchase_review(events: list[dict], p: Params, last: int) -> set:
    timers = Timers("post_purchase_review")
    for o in events:
        timers.fire_before(o["_ms"])
        if o["type"] == "order_delivered":
            timers.arm(o["order_id"], o["customer_id"], o["_ms"] + p.review_after)
        elif o["type"] in ("return_requested", "refund_issued"):
            timers.due.pop(o["order_id"], None)
    return timers.finish(last)


def win_back(events: list[dict], p: Params, last: int) -> set:
    timers = Timers("win_back")
    for o in events:
        timers.fire_before(o["_ms"])
        if o["type"] == "order_placed":
            timers.arm(o["customer_id"], o["customer_id"], o["_ms"] + p.win_back_after)
    return timers.finish(last)


def support_sla_breach(events: list[dict], p: Params, last: int) -> set:
    timers = Timers("support_sla_breach")
    fired: set[str] = set()  # conversations breached and still waiting for a reply or the close
    for o in events:
        fired.update(timers.fire_before(o["_ms"]))
        if o["type"] not in ("chat_message", "chat_closed"):
            continue
        conv = o["conversation_id"]
        if o["type"] == "chat_closed" or o["sender"] == "agent":
            timers.due.pop(conv, None)
            fired.discard(conv)
        elif o["sender"] == "customer" and conv not in fired and conv not in timers.due:
            timers.arm(conv, o["customer_id"], o["_ms"] + p.reply_within)
    return timers.finish(last)


def satisfaction_survey(events: list[dict], p: Params, last: int) -> set:
    timers = Timers("satisfaction_survey")
    for o in events:
        timers.fire_before(o["_ms"])
        if o["type"] == "chat_message" or (o["type"] == "chat_closed" and o.get("csat") is not None):
            timers.due.pop(o["conversation_id"], None)
        elif o["type"] == "chat_closed" and o["conversation_id"] not in timers.due:
            timers.arm(o["conversation_id"], o["customer_id"], o["_ms"] + p.survey_after)
    return timers.finish(last)


def catalog_alerts(events: list[dict], p: Params) -> set:
    """``price_drop`` and ``back_in_stock``, due at the catalog event's ts."""
    seen: dict[str, dict[str, int]] = defaultdict(dict)  # product -> customer -> latest view/cart
    bought: dict[str, dict[str, int]] = defaultdict(dict)  # product -> customer -> latest purchase
    price: dict[str, float] = {}
    in_stock: dict[str, bool] = {}
    out = set()

    def recipients(pid: str, t: int) -> set[str]:
        return {c for c, v in seen[pid].items() if t - p.watch_window <= v and bought[pid].get(c, -1) < v}

    for o in events:
        t = o["type"]
        if t in ("product_view", "add_to_cart"):
            seen[o["product_id"]][o["customer_id"]] = o["_ms"]
        elif t == "order_placed":
            for pid in _bought(o):
                bought[pid][o["customer_id"]] = o["_ms"]
        elif t == "price_changed":
            pid = o["product_id"]
            before = o.get("old_price", price.get(pid))
            price[pid] = o["price"]
            if before and o["price"] <= before * (1 - p.min_drop):
                out |= {("price_drop", c, o["_ms"]) for c in recipients(pid, o["_ms"])}
        elif t == "stock_changed":
            pid = o["product_id"]
            was, in_stock[pid] = in_stock.get(pid), o["in_stock"]
            if o["in_stock"] and was is False:
                out |= {("back_in_stock", c, o["_ms"]) for c in recipients(pid, o["_ms"])}
    return out


def all_flows(events: list[dict], p: Params) -> dict[str, set]:
    """Every flow's expected candidates, by type (every type of :data:`TYPES` present)."""
    last = max(o["_ms"] for o in events)
    found = (browse_abandonment(events, p, last) | post_purchase_review(events, p, last) | win_back(events, p, last)
             | support_sla_breach(events, p, last) | satisfaction_survey(events, p, last) | catalog_alerts(events, p))
    by_type: dict[str, set] = {t: set() for t in TYPES}
    for x in found:
        by_type[x[0]].add(x)
    return by_type
