"""Offline evaluation of the item-to-item recommender (pure Python, no Bytewax).

Streams an ``events.jsonl`` (from ``flows/generator/``) through the same pieces, in the same
order, as the dataflow: decode and de-duplicate, :class:`RecentItems` per customer ->
:class:`Block` s to :class:`ProductNeighbours` per product -> a :class:`NeighbourUpdate` only when
material -> :class:`RecsTable`. For each ``order_placed``, before anything learns from it, the
customer's previous items are the query; hit rate@10 and NDCG@10 are computed against the
products bought, for item-to-item and for :class:`PopularityBaseline` (top sellers of the last
7 days), with the same exclusions (query items and products bought in the last 30 days).

Protocols (what "previous items" means):

* ``leave_out`` (default): the customer's recent products (views, cart adds, purchases of the
  last 30 days, at most 10, most recent first) minus the products of this order. It mirrors
  the abandoned-cart use: what goes with what the customer is looking at now. The model has
  not learned the order's own session yet (sessions are learned when they close), so the
  customer's own co-views of the bought products cannot leak into the score.
* ``previous_sessions``: only products last touched before the order's session began, and
  the order's products that are among them (re-buys, resumed carts) are not targets.

    python -m models.recs_eval DIR_OR_EVENTS_JSONL [--normalisation cosine|lift|confidence]
    crm-stream generate --customers 5000 --days 60 --seed 3 --out /tmp/sim   # a log to evaluate on
"""

from __future__ import annotations

import argparse
import heapq
import json
import time
from pathlib import Path
from typing import Optional

from operators.events import Event, decode
from operators.recs import (DAY, DEFAULT, PopularityBaseline, ProductNeighbours, RecentItems, RecsConfig,
                            RecsEvaluator, RecsTable, observe_blocks)

PRODUCT_EVENTS = ("product_view", "add_to_cart", "order_placed")
DEDUP_WINDOW = 7 * DAY


def events(path: Path):
    """Valid, de-duplicated events of a log in file order (the dataflow's decode step)."""
    seen: dict[tuple[str, str], int] = {}
    with open(path, "rb") as fh:
        for i, line in enumerate(fh):
            line = line.rstrip(b"\n")
            if not line:
                continue
            ev = decode(line, f"{path}:{i + 1}")
            if not isinstance(ev, Event):
                continue
            key = (ev.customer_id, ev.event_id)
            prev = seen.get(key)
            if prev is not None and abs(ev.ts - prev) <= DEDUP_WINDOW:
                continue
            seen[key] = ev.ts
            yield ev


class RecsPipeline:
    """The dataflow's recommendation path in one process: customer -> product -> models."""

    def __init__(self, config: RecsConfig = DEFAULT, query_size: int = 10, k: int = 10,
                 protocol: str = "leave_out") -> None:
        self.cfg = config
        self.query_size = query_size
        self.k = k
        self.protocol = protocol
        self.customers: dict[str, RecentItems] = {}
        self.session_start: dict[str, tuple[str, int]] = {}  # customer -> (session_id, first ts)
        self.products: dict[str, ProductNeighbours] = {}
        self.table = RecsTable(config)
        self.popularity = PopularityBaseline()
        self.i2i = RecsEvaluator(k)
        self.pop = RecsEvaluator(k)
        self.timers: list[tuple[int, str]] = []  # (session end due, customer), lazily invalidated
        self.pairs = 0
        self.updates = 0
        self.learn = True  # False: sessions still close, but nothing reaches the product step

    def process(self, ev: Event) -> None:
        t = ev.type
        if t not in PRODUCT_EVENTS:
            return
        cid, ts = ev.customer_id, ev.ts
        self.advance(ts)
        cust = self.customers.get(cid)
        if cust is None:
            cust = self.customers[cid] = RecentItems(self.cfg)
        if t == "order_placed":
            products = [it["product_id"] for it in ev.get("items") or ()]
            self.evaluate(cid, cust, products, ts)
            blocks = cust.observe(t, products, None, ts)
            self.popularity.observe(products, ts)
        else:
            sid = ev.get("session_id")
            cur = self.session_start.get(cid)
            if cur is None or cur[0] != sid:
                self.session_start[cid] = (sid, ts)
            blocks = cust.observe(t, (ev.get("product_id"),), sid, ts)
        self.route(blocks, ts)
        if cust.last_ts is not None:
            heapq.heappush(self.timers, (cust.last_ts + self.cfg.session_gap, cid))

    def advance(self, now: int) -> None:
        """The profile step's session-end timers: close every session idle since before ``now``."""
        timers = self.timers
        while timers and timers[0][0] < now:
            due, cid = heapq.heappop(timers)
            cust = self.customers[cid]
            if cust.last_ts is not None and cust.last_ts + self.cfg.session_gap == due:
                self.route(cust.flush(), due)

    def route(self, blocks, ts: int) -> None:
        """The product step: each block to its products, then an update if material."""
        if not self.learn:
            return
        touched: dict[str, int] = {}
        observe_blocks(self.products, blocks, self.cfg, touched)
        self.pairs += sum(len(mine) * len(others) for mine, others, _w, _t in blocks)
        for a in touched:
            upd = self.products[a].update(ts)
            if upd is not None:
                self.updates += 1
                self.table.apply(upd)

    def query(self, cid: str, cust: RecentItems, bought: list[str], ts: int) -> tuple[list[str], set[str]]:
        """(query items, targets) of an order under the chosen protocol."""
        items = cust.interests(ts, self.query_size + len(bought))
        if self.protocol == "previous_sessions":
            start = self.session_start.get(cid, (None, ts))[1]
            recent = cust.last_touched()
            items = [p for p in items if recent[p] < start][: self.query_size]
            return items, set(bought) - set(items)
        items = [p for p in items if p not in bought][: self.query_size]
        return items, set(bought)

    def evaluate(self, cid: str, cust: RecentItems, bought: list[str], ts: int) -> None:
        items, targets = self.query(cid, cust, bought, ts)
        exclude = cust.recently_bought(ts)
        targets -= exclude
        if not items or not targets:
            self.i2i.skip()
            self.pop.skip()
            return
        self.i2i.add(self.table.recommend(items, exclude, self.k, ts), targets)
        self.pop.add(self.popularity.recommend(exclude | set(items), self.k, ts), targets)


def evaluate(events_path: Path, config: RecsConfig = DEFAULT, protocol: str = "leave_out",
             query_size: int = 10, k: int = 10) -> dict:
    """Stream a log through the recommender; the quality report of the replay summary."""
    events_path = Path(events_path)
    if events_path.is_dir():
        events_path = events_path / "events.jsonl"
    pipe = RecsPipeline(config, query_size, k, protocol)
    t0 = time.perf_counter()
    for ev in events(events_path):
        pipe.process(ev)
    elapsed = time.perf_counter() - t0
    i2i, pop = pipe.i2i, pipe.pop
    return {
        "item_to_item": {"hit_rate_at_10": round(i2i.hit_rate, 4), "ndcg_at_10": round(i2i.ndcg, 4),
                         "orders": i2i.orders},
        "popularity": {"hit_rate_at_10": round(pop.hit_rate, 4), "ndcg_at_10": round(pop.ndcg, 4),
                       "orders": pop.orders},
        "lift": round(i2i.hit_rate / pop.hit_rate, 3) if pop.hit_rate else None,
        "ndcg_lift": round(i2i.ndcg / pop.ndcg, 3) if pop.ndcg else None,
        "orders_skipped": i2i.skipped,
        "protocol": protocol,
        "normalisation": config.normalisation,
        "products": len(pipe.products),
        "pairs": pipe.pairs,
        "updates": pipe.updates,
        "seconds": round(elapsed, 2),
    }


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path", help="events.jsonl or a directory holding it")
    ap.add_argument("--normalisation", default=DEFAULT.normalisation)
    ap.add_argument("--protocol", default="leave_out", choices=("leave_out", "previous_sessions"))
    ap.add_argument("--half-life-days", type=float, default=DEFAULT.half_life / DAY)
    args = ap.parse_args(argv)
    path = args.path
    cfg = DEFAULT._replace(normalisation=args.normalisation, half_life=int(args.half_life_days * DAY))
    print(json.dumps(evaluate(Path(path), cfg, args.protocol), indent=2))


if __name__ == "__main__":
    main()
