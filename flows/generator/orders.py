"""Orders and parcels: placing an order from the cart, what the customer wants next (complements,
refills), cancellation, carriers with their own late and lost rates, delays, deliveries, returns
and refunds. Experiences (late, lost, delay, delivered, return) go on the customer's heap."""

from __future__ import annotations

import bisect

from flows.generator.catalogue import cumulate
from flows.generator.timefmt import DAY, HOUR, MIN, iso
from flows.generator.truth import GRACE

CARRIERS = (  # name, share, late rate, lost rate
    ("SwiftPost", 0.35, 0.05, 0.004),
    ("ParcelOne", 0.30, 0.09, 0.008),
    ("Rapido", 0.20, 0.16, 0.012),
    ("EcoFreight", 0.15, 0.26, 0.02),
)
_CARRIER_CUM = cumulate([c[1] for c in CARRIERS])
DELAY_REASONS = ("weather", "carrier_capacity", "address_issue", "customs", "sorting_center_backlog",
                 "vehicle_breakdown", "high_volume")
CANCEL_REASONS = ("customer_request", "out_of_stock", "payment_failed", "duplicate_order")
RETURN_REASONS = ("wrong_size", "damaged", "not_as_described", "changed_mind", "defective", "late_delivery")


class OrderMixin:
    """Part of ``Customer``: ``place_order(t)`` turns the cart into an order and its parcel's life."""

    def place_order(self, t: int) -> None:
        r, cat = self.r, self.cat
        oid = f"o{self.idx:06d}{self.n_orders:04d}"
        self.n_orders += 1
        items = [{"product_id": cat.ids[p], "quantity": qp[0], "price": qp[1]} for p, qp in sorted(self.cart.items())]
        products = sorted(self.cart)
        total = round(sum(qp[0] * qp[1] for qp in self.cart.values()), 2)
        self.cart = {}
        promised = (t // DAY) * DAY + r.choice((2, 2, 3, 3, 3, 4, 5)) * DAY + r.choice((12, 18, 20)) * HOUR
        self.emit(t, "order_placed", {"order_id": oid, "items": items, "total": total, "currency": "EUR",
                                      "promised_delivery_ts": iso(promised)})
        self._wants_after(t, products)
        name = cat.names[products[0]] if products else "item"
        info = {"oid": oid, "product": name, "promised": promised}
        if r.random() < 0.03:
            self.emit(t + int(r.uniform(10 * MIN, 10 * HOUR)), "order_cancelled",
                      {"order_id": oid, "reason": r.choice(CANCEL_REASONS)})
            return
        self._parcel(t, oid, total, promised, info)

    def _wants_after(self, t: int, products: list[int]) -> None:
        """What was wanted is done; complements of what was bought are wanted within days, and
        consumables are wanted again when they run out."""
        r, cat = self.r, self.cat
        bought = set(products)
        self.wish = [w for w in self.wish if w[0] not in bought]
        if self.mission is not None:
            a = self.mission[0]
            if a in bought or any(q in bought for q in cat.similar[a]):
                self.mission = None
        for p in products:
            for c in cat.complements[p]:
                if c not in bought and r.random() < 0.45:
                    self.wish.append((c, t, t + int(r.uniform(1, 10) * DAY)))
            rep_days = cat.replenish[p]
            if rep_days and r.random() < 0.6:
                due = t + int(r.uniform(*rep_days) * DAY)
                self.wish.append((p, due, due + int(r.uniform(5, 15) * DAY)))

    def _parcel(self, t: int, oid: str, total: float, promised: int, info: dict) -> None:
        """Shipping with a carrier (sometimes a new promise), then lost, late or on time."""
        r = self.r
        cidx = bisect.bisect_right(_CARRIER_CUM, r.random() * _CARRIER_CUM[-1])
        carrier, _share, late_rate, lost_rate = CARRIERS[min(cidx, len(CARRIERS) - 1)]
        info["carrier"] = carrier
        ship = t + int(r.uniform(3 * HOUR, 28 * HOUR))
        promise = promised
        shipped = {"order_id": oid, "carrier": carrier}
        if r.random() < 0.08:
            promise = promised + r.choice((-1, 1)) * DAY
            if promise < ship + 12 * HOUR:
                promise = promised + DAY
            shipped["promised_delivery_ts"] = iso(promise)
        self.emit(ship, "order_shipped", shipped)
        u = r.random()
        if u < lost_rate:
            self._lost(oid, total, promise, info)
            return
        delivered = self._delivery_time(u, lost_rate, late_rate, oid, ship, promise, info)
        self.emit(delivered, "order_delivered", {"order_id": oid, "carrier": carrier})
        if delivered <= promise + GRACE:
            self.push(delivered, "delivered", info)
        self._after_delivery(oid, total, delivered, delivered <= promise + GRACE, info)

    def _lost(self, oid: str, total: float, promise: int, info: dict) -> None:
        r = self.r
        if r.random() < 0.4:
            self.emit(promise - int(r.uniform(0, 20 * HOUR)), "order_delayed",
                      {"order_id": oid, "reason": "parcel_not_found"})
        self.push(promise + int(r.uniform(6 * HOUR, 2 * DAY)), "lost", info)
        if r.random() < 0.6:
            self.emit(promise + int(r.uniform(5, 9) * DAY), "refund_issued",
                      {"order_id": oid, "amount": total, "reason": "lost_parcel"})

    def _delivery_time(self, u: float, lost_rate: float, late_rate: float, oid: str, ship: int, promise: int,
                       info: dict) -> int:
        """When the parcel arrives (``u`` uniform, at least ``lost_rate``): late (often announced
        by ``order_delayed``), a bit late within the grace, or on time (rarely with a false alarm)."""
        r = self.r
        if u < lost_rate + late_rate:
            if r.random() < 0.55:
                lateness = int(r.uniform(2.3 * HOUR, 22 * HOUR))
            else:
                lateness = int(r.uniform(1.0, 6.0) * DAY)
            delivered = promise + lateness
            if r.random() < 0.55:
                lo = ship + HOUR
                hi = min(delivered, promise) - 5 * MIN
                dts = lo + int(r.random() * max(0, hi - lo))
                f = {"order_id": oid, "reason": r.choice(DELAY_REASONS)}
                if r.random() < 0.7:
                    f["promised_delivery_ts"] = iso(delivered + int(r.uniform(0, 8 * HOUR)))
                self.emit(dts, "order_delayed", f)
                self.push(dts, "delay", info)
            self.push(min(delivered, promise + int(r.uniform(2, 10) * HOUR)), "late", info)
            return delivered
        if u < lost_rate + late_rate + 0.05:
            return promise + int(r.uniform(10 * MIN, 110 * MIN))  # a bit late, within grace
        delivered = max(promise - int(r.uniform(0, 30 * HOUR)), ship + 6 * HOUR)
        if r.random() < 0.015:  # carrier warns, then makes it anyway
            self.emit(ship + int((delivered - ship) * r.uniform(0.2, 0.8)), "order_delayed",
                      {"order_id": oid, "reason": r.choice(DELAY_REASONS)})
        return delivered

    def _after_delivery(self, oid: str, total: float, delivered: int, in_time: bool, info: dict) -> None:
        """Some deliveries are returned (more when late), most returns refunded."""
        r = self.r
        if r.random() < (0.06 if in_time else 0.12):
            rts = delivered + int(r.uniform(1, 10) * DAY)
            self.emit(rts, "return_requested", {"order_id": oid, "reason": r.choice(RETURN_REASONS)})
            self.push(rts, "return", info)
            if r.random() < 0.75:
                self.emit(rts + int(r.uniform(2, 7) * DAY), "refund_issued", {"order_id": oid, "amount": total})

    def past_order(self, rh, t0: int, p: int) -> None:
        """An order of product ``p`` placed at ``t0`` (before the log's start) in a short session,
        delivered on time; drawn from ``rh``, not from the customer's own stream."""
        cat, emit = self.cat, self.emit
        sid = f"s{self.idx:06d}h000"
        oid = f"o{self.idx:06d}h000"
        price = cat.price[p]
        t = t0
        emit(t, "page_view", {"session_id": sid, "page": rh.choice(("/", "/deals", "/bestsellers"))})
        for gap, etype, fields in ((40, "product_view", {"product_id": cat.ids[p], "price": price}),
                                   (30, "add_to_cart", {"product_id": cat.ids[p], "price": price, "quantity": 1}),
                                   (60, "checkout_started", {})):
            t += int(rh.uniform(0.5, 2.0) * gap * 1000)
            emit(t, etype, {"session_id": sid, **fields})
        t += int(rh.uniform(30, 120) * 1000)
        promised = (t // DAY) * DAY + rh.choice((2, 3, 4)) * DAY + 20 * HOUR
        emit(t, "order_placed", {"order_id": oid, "items": [{"product_id": cat.ids[p], "quantity": 1, "price": price}],
                                 "total": price, "currency": "EUR", "promised_delivery_ts": iso(promised)})
        carrier = CARRIERS[rh.randrange(len(CARRIERS))][0]
        ship = t + int(rh.uniform(3 * HOUR, 24 * HOUR))
        emit(ship, "order_shipped", {"order_id": oid, "carrier": carrier})
        emit(max(ship + 6 * HOUR, promised - int(rh.uniform(0, 30 * HOUR))), "order_delivered",
             {"order_id": oid, "carrier": carrier})
