"""``generate``: simulate every customer, compute the hidden truth from the events they emitted,
number the events in ts order, mix in bad lines, write ``events.jsonl`` and ``truth.ndjson``."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Optional

import orjson

from flows.generator.badinput import BadLines
from flows.generator.catalogue import catalogue
from flows.generator.customer import Customer
from flows.generator.market import Market
from flows.generator.timefmt import DAY, iso, parse_ts
from flows.generator.truth import HUMAN_RE, compute_cart_truth, compute_order_truth

HISTORY_DAYS = 60  # backfilled orders reach this far before the start at most


def generate(customers: int, days: int, seed: int, out_dir: Path, start: str = "2026-01-05T00:00:00Z",
             bad_share: float = 0.005, catalog: bool = True, history: bool = True) -> dict:
    """Simulate ``customers`` customers for ``days`` days; write events.jsonl and truth.ndjson.

    Events lie in [start, start + days), except the backfilled last orders of some customers
    (up to ``HISTORY_DAYS`` before ``start``). ``catalog``: price and stock changes happen and
    their ``crm.catalog`` events (no ``customer_id``) are in the log; False: static prices, always
    in stock, none. ``history``: some existing customers' last order before the start is in the
    log (False: none, every customer starts at the start). Returns stats: events (real events), lines (all lines written), bad (count per
    bad kind), bad_lines, customers, orders, conversations, carts, catalog_events, the truth shares.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of small acyclic objects: the cyclic GC only costs time here
    try:
        return _generate(customers, days, seed, Path(out_dir), start, bad_share, catalog, history)
    finally:
        if gc_was_enabled:
            gc.enable()


def _line(obj: dict) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)


class _Truth:
    """Truth lines by kind (byte buffers: orjson results are page-sized, do not keep them) and counts."""

    def __init__(self) -> None:
        self.customers = bytearray()
        self.carts = bytearray()
        self.orders = bytearray()
        self.convs = bytearray()
        self.n = dict(orders=0, late=0, carts=0, abandoned=0, conversations=0, frustrated=0, human=0, churned=0)
        # An order still open at the end is owed an apology if its due time is at or before the
        # latest event time of the log: that is when a replay's end-of-input flush fires timers.
        self.orders_pending: list[tuple[str, str, bool, Optional[int]]] = []

    def add(self, c: Customer, evs: list[tuple[int, int, str, dict]], end_ms: int) -> None:
        """The truth of one customer from its emitted events ``evs`` (sorted by ts)."""
        cid, n = c.cid, self.n
        simple = [(e[0], e[2], e[3]) for e in evs]
        for abandoned, last in compute_cart_truth(simple, end_ms):
            self.carts.extend(_line({"kind": "cart", "customer_id": cid, "abandoned": abandoned,
                                     "last_activity_ts": iso(last)}))
            n["carts"] += 1
            n["abandoned"] += abandoned
        open_due: dict[str, int] = {}
        for oid, late in compute_order_truth([s for s in simple if s[1].startswith("order_")], end_ms,
                                             open_due).items():
            self.orders_pending.append((oid, cid, late, open_due.get(oid)))
        human = {f["conversation_id"] for _ts, et, f in simple
                 if et == "chat_message" and f["sender"] == "customer" and HUMAN_RE.search(f["text"])}
        for conv, frus in c.convs:
            h = conv in human
            self.convs.extend(_line({"kind": "conversation", "conversation_id": conv, "customer_id": cid,
                                     "frustrated": frus, "human_requested": h}))
            n["conversations"] += 1
            n["frustrated"] += frus
            n["human"] += h
        churned = c.fade_end is not None and c.fade_end <= end_ms and bool(evs)
        n["churned"] += churned
        self.customers.extend(_line({"kind": "customer", "customer_id": cid, "churned": churned,
                                     "churn_ts": iso(evs[-1][0]) if churned else None}))

    def write(self, path: Path, last_event: int) -> None:
        for oid, cid, late, due in self.orders_pending:
            late = late or (due is not None and due <= last_event)
            self.orders.extend(_line({"kind": "order", "order_id": oid, "customer_id": cid, "late": late}))
            self.n["orders"] += 1
            self.n["late"] += late
        with open(path, "wb") as fh:
            for group in (self.customers, self.carts, self.orders, self.convs):
                fh.write(group)


def _simulate(customers: int, seed: int, start_ms: int, end_ms: int, cat, market: Market, truth: _Truth,
              history: bool = True) -> tuple[list[tuple[int, int, int, bytes]], int]:
    """Every customer's life: (ts, customer, seq, body without event_id) rows and the latest ts."""
    rows: list[tuple[int, int, int, bytes]] = []
    last_event = start_ms
    first = start_ms - HISTORY_DAYS * DAY
    for idx in range(customers):
        c = Customer(idx, seed, cat, start_ms, end_ms, market, history)
        c.run()
        evs = [e for e in c.ev if first <= e[0] < end_ms]
        evs.sort(key=lambda e: (e[0], e[1]))
        truth.add(c, evs, end_ms)
        if evs:
            last_event = max(last_event, evs[-1][0])
        for ts, seq, et, f in evs:
            # slice at once: orjson's result owns a page-sized buffer, the slice is compact
            body = orjson.dumps({"type": et, "customer_id": c.cid, "ts": iso(ts), **f})[1:]
            rows.append((ts, idx, seq, body))
    return rows, last_event


def _catalog_rows(market: Market, idx: int, end_ms: int) -> list[tuple[int, int, int, bytes]]:
    """``crm.catalog`` rows (no ``customer_id``), sorted after the customers' events at a tie."""
    return [(ts, idx, seq, orjson.dumps({"type": et, "ts": iso(ts), **f})[1:])
            for ts, seq, et, f in market.events if ts < end_ms]


def _write_events(path: Path, lines: list[bytes], inserts: list[tuple[int, int, bytes]]) -> None:
    """The real lines with the bad ones inserted before their positions, in 8,192-line writes."""
    with open(path, "wb") as fh:
        k = 0
        buf: list[bytes] = []
        for i, line in enumerate(lines):
            while k < len(inserts) and inserts[k][0] <= i:
                buf.append(inserts[k][2])
                k += 1
            buf.append(line)
            if len(buf) >= 8192:
                fh.write(b"\n".join(buf) + b"\n")
                buf = []
        while k < len(inserts):
            buf.append(inserts[k][2])
            k += 1
        if buf:
            fh.write(b"\n".join(buf) + b"\n")


def _generate(customers: int, days: int, seed: int, out_dir: Path, start: str, bad_share: float,
              catalog: bool, history: bool) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    start_ms = parse_ts(start)
    end_ms = start_ms + days * DAY
    cat = catalogue(seed)
    market = Market(cat, seed, start_ms, end_ms, enabled=catalog)
    truth = _Truth()
    rows, last_event = _simulate(customers, seed, start_ms, end_ms, cat, market, truth, history)
    catalog_rows = _catalog_rows(market, customers, end_ms)
    rows.extend(catalog_rows)
    if catalog_rows:
        last_event = max(last_event, catalog_rows[-1][0])
    rows.sort()
    n_real = len(rows)
    lines: list[bytes] = [b'{"event_id":"e%09d",' % i + row[3] for i, row in enumerate(rows)]
    ts_list = [row[0] for row in rows]
    cust_of = [row[1] for row in rows]
    del rows
    bad = BadLines(seed, cat, lines, ts_list, cust_of, start_ms, customers)
    inserts = bad.draw(int(round(bad_share * n_real)))
    _write_events(out_dir / "events.jsonl", lines, inserts)
    truth.write(out_dir / "truth.ndjson", last_event)
    stats = _stats(truth.n, bad.counts, n_real, customers, days, start_ms, end_ms)
    stats["catalog_events"] = len(catalog_rows)
    return stats


def _stats(n: dict, bad_counts: dict, n_real: int, customers: int, days: int, start_ms: int, end_ms: int) -> dict:
    n_bad_total = sum(bad_counts.values())
    return {
        "events": n_real + bad_counts["late"],
        "real_events": n_real,
        "lines": n_real + n_bad_total,
        "bad": bad_counts,
        "bad_lines": n_bad_total,
        "customers": customers,
        "days": days,
        "orders": n["orders"],
        "conversations": n["conversations"],
        "carts": n["carts"],
        "churned": n["churned"],
        "late_orders": n["late"],
        "abandoned_carts": n["abandoned"],
        "frustrated_conversations": n["frustrated"],
        "human_requests": n["human"],
        "start": iso(start_ms),
        "end": iso(end_ms),
    }
