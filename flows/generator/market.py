"""The shop's side of the catalogue over time: price changes (sales, their end, small moves) and
stock (products selling out and coming back), as ``crm.catalog`` events keyed by ``product_id``
without a ``customer_id``, and what customers see: the price of a product at a time (views and
carts show it) and whether it can be carted (an out-of-stock product can be viewed, not added).

Own random stream: the customers' lives draw nothing here. ``enabled=False`` (``--no-catalog``):
static prices, always in stock, no catalog events.
"""

from __future__ import annotations

import bisect
import math
import random
from flows.generator.catalogue import Catalogue, cumulate
from flows.generator.timefmt import DAY, HOUR, MIN

PRICE_CHANGES_PER_DAY = 4.0
SELL_OUTS_PER_DAY = 2.0
RESTOCKS_PER_DAY = 2.0  # quantity updates of products in stock (no back-in-stock)
CURRENCY = "EUR"


def shop_price(x: float) -> float:
    """A shelf price: whole euros minus a cent above 5 EUR, cents below (at least 0.99)."""
    return max(0.99, round(x) - 0.01 if x > 5 else round(x, 2))


class Market:
    """Price and stock timelines of the catalogue's products between ``start`` and ``end`` (ms).

    ``events``: ``(ts, seq, type, fields)`` catalog events (fields hold ``product_id``);
    ``price(p, t)`` and ``in_stock(p, t)`` answer for product index ``p`` at ``t``."""

    def __init__(self, cat: Catalogue, seed: int, start: int, end: int, enabled: bool = True):
        self.cat = cat
        self.events: list[tuple[int, int, str, dict]] = []
        self._price_ts: dict[int, list[int]] = {}
        self._price_val: dict[int, list[float]] = {}
        self._out: dict[int, list[tuple[int, int]]] = {}  # product -> [(from, until)] out of stock
        if not enabled:
            return
        rng = random.Random(seed * 7_919_993 + 11)
        self._cum = cumulate([math.sqrt(w) for w in cat.weight])  # head and tail both move
        for day in range((end - start) // DAY):
            d0 = start + day * DAY
            for _ in range(_poisson(rng, PRICE_CHANGES_PER_DAY)):
                self._price_move(rng, d0 + int(rng.uniform(6, 22) * HOUR), end)
            for _ in range(_poisson(rng, SELL_OUTS_PER_DAY)):
                self._sell_out(rng, d0 + int(rng.uniform(0, 24) * HOUR), end)
            for _ in range(_poisson(rng, RESTOCKS_PER_DAY)):
                self._restock(rng, d0 + int(rng.uniform(0, 24) * HOUR), end)
        self.events.sort(key=lambda e: (e[0], e[1]))

    def _pick(self, rng: random.Random) -> int:
        return min(len(self._cum) - 1, bisect.bisect_right(self._cum, rng.random() * self._cum[-1]))

    def _emit(self, ts: int, etype: str, fields: dict) -> None:
        self.events.append((ts, len(self.events), etype, fields))

    def price(self, p: int, t: int) -> float:
        times = self._price_ts.get(p)
        if not times:
            return self.cat.price[p]
        i = bisect.bisect_right(times, t)
        return self.cat.price[p] if i == 0 else self._price_val[p][i - 1]

    def in_stock(self, p: int, t: int) -> bool:
        return not any(a <= t < b for a, b in self._out.get(p, ()))

    def _set_price(self, p: int, ts: int, new: float) -> bool:
        """A ``price_changed`` at ``ts`` (after the product's last change); False if no change
        or a drop too close to the 5 % line to be a clear case either way."""
        times = self._price_ts.setdefault(p, [])
        if times and ts <= times[-1]:
            return False
        old = self.price(p, ts)
        if new == old or 0.045 <= (old - new) / old <= 0.055:
            return False
        times.append(ts)
        self._price_val.setdefault(p, []).append(new)
        self._emit(ts, "price_changed", {"product_id": self.cat.ids[p], "price": new, "old_price": old,
                                         "currency": CURRENCY})
        return True

    def _price_move(self, rng: random.Random, ts: int, end: int) -> None:
        """A sale (8-35 % off, ended after 2-8 days by going back), a small drop (1-4 %), or a rise."""
        p = self._pick(rng)
        old = self.price(p, ts)
        u = rng.random()
        if u < 0.55:
            if self._set_price(p, ts, shop_price(old * (1 - rng.uniform(0.08, 0.35)))):
                back = ts + int(rng.uniform(2, 8) * DAY)
                if back < end:
                    self._set_price(p, back, old)
        elif u < 0.7:
            self._set_price(p, ts, shop_price(old * (1 - rng.uniform(0.01, 0.04))))
        else:
            self._set_price(p, ts, shop_price(old * (1 + rng.uniform(0.03, 0.15))))

    def _sell_out(self, rng: random.Random, ts: int, end: int) -> None:
        """Out of stock at ``ts``, back 8 h to 6 days later (sometimes not before the end)."""
        p = self._pick(rng)
        back = ts + int(rng.uniform(8 * HOUR, 6 * DAY))
        if any(a - DAY <= back and ts <= b + DAY for a, b in self._out.get(p, ())):
            return  # one sell-out of a product at a time, a day apart
        self._out.setdefault(p, []).append((ts, back))
        self._emit(ts, "stock_changed", {"product_id": self.cat.ids[p], "in_stock": False, "quantity": 0})
        if back < end:
            self._emit(back, "stock_changed", {"product_id": self.cat.ids[p], "in_stock": True,
                                               "quantity": rng.randint(5, 200)})

    def _restock(self, rng: random.Random, ts: int, _end: int) -> None:
        """A quantity update of a product in stock: no back-in-stock."""
        p = self._pick(rng)
        quantity = rng.randint(3, 300)
        if self.in_stock(p, ts) and self.in_stock(p, ts - 10 * MIN):
            self._emit(ts, "stock_changed", {"product_id": self.cat.ids[p], "in_stock": True, "quantity": quantity})


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth; lam is small)."""
    limit, k, prod = math.exp(-lam), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def no_market(cat: Catalogue) -> Market:
    """Static prices, always in stock."""
    return Market(cat, 0, 0, 0, enabled=False)

