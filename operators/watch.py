"""Watch lists: the join of product-keyed catalogue changes with customer-keyed interest (issue 14).

``price_drop`` and ``back_in_stock`` go to customers who viewed or carted a product within
``watch.window`` before its price fell or it came back in stock, and have not bought it since
(an ``order_placed`` listing it in ``items``, between that view and the change). One
:class:`WatchShard` holds the lists of the products of one product shard; the shell feeds it
:class:`Interest` (views, carts, purchases, erasures) and catalogue events, and moves its clock.

Event time (ms since the epoch, UTC) throughout, arrival order within ``lateness`` does not
matter: a change is only *decided* once the shard's frontier (its latest event time minus
``lateness``) has passed it, in ``(ts, event_id)`` order per product, so a view at t=10 that
arrives after the price drop at t=11 still counts. Bounded: at most ``per_product`` watchers per
product and ``per_customer`` products per customer (the most recent stay), entries older than
the window expire by event time, a change sends at most ``per_change`` candidates.

Pure: no Bytewax, Kafka or Redis; the candidates go on keyed by customer to policy, which alone
decides what is sent (consent, quiet hours, cooldown, caps, holdouts).
"""

from __future__ import annotations

import heapq
from typing import Any, Optional

from operators.events import Event, format_ts
from operators.ruleset import MARKETING, Rule
from operators.triggers import Candidate

PRICE_DROP, BACK_IN_STOCK = "price_drop", "back_in_stock"
WATCH_TYPES = frozenset({"product_view", "add_to_cart", "order_placed"})  # the interest the lists keep
KEEP_TS = 4  # view and purchase times kept per (product, customer): enough to judge changes just behind
KEEP_CHANGES = 16  # change event ids kept per product: a repeated change is not decided twice


class WatchConfig:
    """``watch`` settings in engine units (ms), and which of the two rules run."""

    def __init__(self, settings: Any = None, lateness: int = 300_000):
        from config.settings import Settings, ms

        s = settings or Settings()
        w = s.watch
        self.window = ms(w.window)
        self.min_drop = w.min_drop
        self.per_product = w.per_product
        self.per_customer = w.per_customer
        self.per_change = w.per_change
        self.lateness = lateness
        enabled = set(s.rules.enabled)
        self.price_drop = PRICE_DROP in enabled
        self.back_in_stock = BACK_IN_STOCK in enabled

    @property
    def on(self) -> bool:
        return self.price_drop or self.back_in_stock


class Interest:
    """A customer's interest in products: ``kind`` ``view`` (a product_view or add_to_cart),
    ``buy`` (an order_placed's items) or ``erase`` (an erasure: forget the customer, no products)."""

    __slots__ = ("kind", "customer_id", "products", "ts")

    def __init__(self, kind: str, customer_id: str, products: tuple, ts: int):
        self.kind, self.customer_id, self.products, self.ts = kind, customer_id, products, ts

    def __reduce__(self):
        return (Interest, (self.kind, self.customer_id, self.products, self.ts))

    def __repr__(self) -> str:  # never the id: reprs end up in logs
        return f"Interest({self.kind}, {len(self.products)} products, {self.ts})"


def interest_of(ev: Event) -> Optional[Interest]:
    """The interest an input event shows (``None``: none the watch lists keep)."""
    t = ev.type
    if t == "product_view" or t == "add_to_cart":
        return Interest("view", ev.customer_id, (ev.data["product_id"],), ev.ts)
    if t == "order_placed":
        items = ev.data.get("items") or ()
        products = tuple(dict.fromkeys(i["product_id"] for i in items))
        return Interest("buy", ev.customer_id, products, ev.ts) if products else None
    if t == "erasure_requested":
        return Interest("erase", ev.customer_id, (), ev.ts)
    return None


class Product:
    """One product's watchers and catalogue state."""

    __slots__ = ("watchers", "price", "in_stock", "pending", "changes")

    def __init__(self) -> None:
        self.watchers: dict[str, list] = {}  # customer -> [view times (asc, <= KEEP_TS), buy times (asc)]
        self.price: Optional[float] = None  # the last price decided (in event-time order)
        self.in_stock: Optional[bool] = None  # the last stock state decided
        self.pending: list = []  # heap of (ts, event_id, Event): changes the frontier has not passed
        self.changes: list[str] = []  # ids of the latest decided changes

    def __getstate__(self):
        return (self.watchers, self.price, self.in_stock, self.pending, self.changes)

    def __setstate__(self, s):
        self.watchers, self.price, self.in_stock, self.pending, self.changes = s


def _last(w: list) -> int:
    """The latest view or purchase time of a watcher entry."""
    return max(w[0][-1] if w[0] else -(1 << 62), w[1][-1] if w[1] else -(1 << 62))


def _add(times: list, ts: int) -> None:
    if ts in times:
        return
    times.append(ts)
    times.sort()
    if len(times) > KEEP_TS:
        del times[0]


class WatchShard:
    """The watch lists of one product shard (picklable: the Bytewax step's snapshot).

    ``observe(interest)`` and ``change(event)`` take input; ``advance(now)`` decides the changes
    at or before ``now - lateness`` and returns their candidates; ``flush()`` decides every change
    still pending (end of input); ``next_due()`` says at which ``now`` advance has work."""

    def __init__(self) -> None:
        self.products: dict[str, Product] = {}
        self.by_customer: dict[str, dict[str, int]] = {}  # customer -> {product: latest view ts}
        self.clock: Optional[int] = None  # the latest event time seen
        self.swept = 0  # event time of the last expiry sweep
        self.pending = 0  # changes waiting, over all products

    # ------------------------------------------------------------------ input

    def observe(self, i: Interest, cfg: WatchConfig) -> None:
        self._tick(i.ts, cfg)
        if i.kind == "erase":
            self._forget(i.customer_id)
            return
        for pid in i.products:  # a purchase is kept too: its view may arrive after it (within lateness)
            p = self.products.get(pid)
            if p is None:
                p = self.products[pid] = Product()
            w = p.watchers.get(i.customer_id)
            new = w is None
            if new:
                w = p.watchers[i.customer_id] = [[], []]
            _add(w[0] if i.kind == "view" else w[1], i.ts)
            if new:
                self._bound_product(pid, p, cfg)
            if i.customer_id in p.watchers:
                self._index(i.customer_id, pid, i.ts, cfg)

    def change(self, ev: Event, cfg: WatchConfig) -> None:
        """A ``price_changed`` / ``stock_changed``: decided once the frontier passes its ts."""
        self._tick(ev.ts, cfg)
        pid = ev.data["product_id"]
        p = self.products.get(pid)
        if p is None:
            p = self.products[pid] = Product()
        if ev.event_id in p.changes or any(h[1] == ev.event_id for h in p.pending):
            return  # a repeat
        heapq.heappush(p.pending, (ev.ts, ev.event_id, ev))
        self.pending += 1

    def next_due(self, cfg: WatchConfig) -> Optional[int]:
        """The ``now`` at which :meth:`advance` decides something (``None``: nothing waits)."""
        if not self.pending:
            return None
        return min(p.pending[0][0] for p in self.products.values() if p.pending) + cfg.lateness

    def advance(self, now: int, cfg: WatchConfig) -> list:
        """Decide every change at or before ``now - lateness`` (per product in ts order)."""
        return self._decide(now - cfg.lateness, cfg) if self.pending else []

    def flush(self, cfg: WatchConfig) -> list:
        return self._decide(1 << 62, cfg) if self.pending else []

    # ------------------------------------------------------------------ deciding

    def _decide(self, frontier: int, cfg: WatchConfig) -> list:
        out: list = []
        for pid, p in list(self.products.items()):
            while p.pending and p.pending[0][0] <= frontier:
                _, _, ev = heapq.heappop(p.pending)
                self.pending -= 1
                p.changes = (p.changes + [ev.event_id])[-KEEP_CHANGES:]
                if ev.type == "price_changed":
                    self._price(pid, p, ev, cfg, out)
                else:
                    self._stock(pid, p, ev, cfg, out)
        return out

    def _price(self, pid: str, p: Product, ev: Event, cfg: WatchConfig, out: list) -> None:
        price = ev.data["price"]
        before = ev.data.get("old_price", p.price)
        p.price = price
        if not cfg.price_drop or before is None or before <= 0 or price > before * (1 - cfg.min_drop):
            return
        payload = {"product_id": pid, "price": price, "old_price": before, "drop": round(1 - price / before, 4)}
        if type(ev.data.get("currency")) is str:
            payload["currency"] = ev.data["currency"]
        self._fan_out(PRICE_DROP, pid, p, ev, payload, cfg, out)

    def _stock(self, pid: str, p: Product, ev: Event, cfg: WatchConfig, out: list) -> None:
        was, now = p.in_stock, ev.data["in_stock"]
        p.in_stock = now
        if not cfg.back_in_stock or not now or was is not False:
            return
        payload = {"product_id": pid, "quantity": ev.data.get("quantity"), "price": p.price}
        self._fan_out(BACK_IN_STOCK, pid, p, ev, payload, cfg, out)

    def _fan_out(self, type: str, pid: str, p: Product, ev: Event, payload: dict, cfg: WatchConfig,
                 out: list) -> None:
        """One candidate per watcher who viewed within the window before ``ev`` and did not buy
        since (the most recent ``per_change``), in customer order (deterministic)."""
        t = ev.ts
        found = []
        for cid, (views, buys) in p.watchers.items():
            seen = [v for v in views if t - cfg.window <= v <= t]
            if not seen or any(seen[-1] <= b <= t for b in buys):
                continue
            found.append((seen[-1], cid))
        if len(found) > cfg.per_change:
            found = sorted(found, reverse=True)[:cfg.per_change]
        for viewed, cid in sorted(found, key=lambda f: f[1]):
            out.append(Candidate(type, cid, t, [type], {**payload, "viewed_at": format_ts(viewed)},
                                 f"{pid}|{ev.event_id}", policy_class=MARKETING))

    # ------------------------------------------------------------------ bounds

    def _tick(self, ts: int, cfg: WatchConfig) -> None:
        if self.clock is None or ts > self.clock:
            self.clock = ts
        if self.clock - self.swept > cfg.window // 7 + cfg.lateness:
            self.swept = self.clock
            self._expire(self.clock - cfg.window - 2 * cfg.lateness, cfg)

    def _expire(self, old: int, cfg: WatchConfig) -> None:
        """Forget views older than ``old`` (no change still to be decided can reach them)."""
        floor = min((p.pending[0][0] for p in self.products.values() if p.pending), default=None)
        if floor is not None:
            old = min(old, floor - cfg.window)
        for pid in list(self.products):
            p = self.products[pid]
            for cid in [c for c, w in p.watchers.items() if _last(w) < old]:
                del p.watchers[cid]
                self._unindex(cid, pid)
            if not p.watchers and not p.pending and p.price is None and p.in_stock is None:
                del self.products[pid]

    def _bound_product(self, pid: str, p: Product, cfg: WatchConfig) -> None:
        if len(p.watchers) > cfg.per_product:  # the watcher seen longest ago goes
            cid = min(p.watchers, key=lambda c: (_last(p.watchers[c]), c))
            del p.watchers[cid]
            self._unindex(cid, pid)

    def _index(self, cid: str, pid: str, ts: int, cfg: WatchConfig) -> None:
        mine = self.by_customer.get(cid)
        if mine is None:
            mine = self.by_customer[cid] = {}
        if ts >= mine.get(pid, ts):
            mine[pid] = ts
        if len(mine) > cfg.per_customer:  # the product viewed longest ago goes
            drop = min(mine, key=lambda q: (mine[q], q))
            del mine[drop]
            p = self.products.get(drop)
            if p is not None:
                p.watchers.pop(cid, None)

    def _unindex(self, cid: str, pid: str) -> None:
        mine = self.by_customer.get(cid)
        if mine is not None:
            mine.pop(pid, None)
            if not mine:
                del self.by_customer[cid]

    def _forget(self, cid: str) -> None:
        for pid in self.by_customer.pop(cid, {}):
            p = self.products.get(pid)
            if p is not None:
                p.watchers.pop(cid, None)

    def size(self) -> int:
        """Watch entries held (for bounds tests and telemetry)."""
        return sum(len(p.watchers) for p in self.products.values())


class CatalogRule(Rule):
    """``price_drop`` / ``back_in_stock`` in ``rules.enabled``: the rule itself runs in the product
    step (:class:`WatchShard`), so the customer step dispatches nothing to it."""

    policy_class = MARKETING
    types: frozenset = frozenset()
    product_keyed = True


class PriceDrop(CatalogRule):
    name = PRICE_DROP


class BackInStock(CatalogRule):
    name = BACK_IN_STOCK


CATALOG_RULE_CLASSES = (PriceDrop, BackInStock)
