"""Deliberately bad input lines mixed into ``events.jsonl`` (malformed JSON, garbage bytes, missing
fields, wrong types, unknown types, exact duplicates re-sent later, late ``page_view`` events).
Bad lines never replace real events, so the truth stays exact."""

from __future__ import annotations

import bisect
import math
import random

import orjson

from flows.generator.catalogue import Catalogue, cumulate
from flows.generator.texts import PAGES
from flows.generator.timefmt import HOUR, MIN, SEC, iso
from flows.generator.truth import CART_ACTIVITY

BAD_KINDS = (  # kind, weight
    ("truncated_json", 0.14), ("garbage_bytes", 0.08), ("missing_field", 0.14),
    ("price_string", 0.08), ("quantity_zero", 0.07), ("ts_no_offset", 0.08), ("unknown_type", 0.07),
    ("duplicate", 0.22), ("late", 0.12),
)
_UNKNOWN_TYPES = ("wishlist_add", "page_vieww", "coupon_applied", "ORDER_PLACED", "login", "")


class BadLines:
    """Draws ``n_bad`` bad lines over the real ``lines`` (sorted by ``ts_list``; ``cust_of`` the
    customer index of each, ``customers`` for catalog events). ``inserts``: (insert before index, order, line); ``counts`` per kind."""

    def __init__(self, seed: int, cat: Catalogue, lines: list[bytes], ts_list: list[int], cust_of: list[int],
                 start_ms: int, customers: int):
        self.rb = random.Random(seed * 131 + 3)
        self.cat, self.lines, self.ts_list, self.cust_of, self.start_ms = cat, lines, ts_list, cust_of, start_ms
        # bad lines are made from customer events (catalog rows have customer index ``customers``)
        self.sources = [i for i, c in enumerate(cust_of) if c < customers]
        self.counts = {k: 0 for k, _ in BAD_KINDS}
        self.inserts: list[tuple[int, int, bytes]] = []
        self.next_id = len(lines)

    def draw(self, n_bad: int) -> list[tuple[int, int, bytes]]:
        """The insertions sorted by position (then draw order)."""
        rb, n_real = self.rb, len(self.lines)
        kinds = [k for k, _ in BAD_KINDS]
        kcum = cumulate([w for _, w in BAD_KINDS])
        for j in range(n_bad if self.sources else 0):
            kind = kinds[min(len(kinds) - 1, bisect.bisect_right(kcum, rb.random() * kcum[-1]))]
            src = self.sources[rb.randrange(len(self.sources))]
            if kind == "duplicate":
                delay = int(math.exp(rb.uniform(math.log(2 * SEC), math.log(6 * HOUR))))
                pos = bisect.bisect_right(self.ts_list, self.ts_list[src] + delay)
                self.inserts.append((max(pos, src + 1), j, self.lines[src]))
            elif kind == "late":
                self.inserts.append((src + 1, j, self._late(src, j)))
            else:
                pos = rb.randrange(n_real + 1)
                self.inserts.append((pos, j, self._broken(kind, src)))
            self.counts[kind] += 1
        self.inserts.sort(key=lambda x: (x[0], x[1]))
        return self.inserts

    def _new_id(self) -> str:
        eid = f"e{self.next_id:09d}"
        self.next_id += 1
        return eid

    def _late(self, src: int, j: int) -> bytes:
        """A ``page_view`` of the same customer 6-60 min before ``src``, arriving after it."""
        rb = self.rb
        obj = orjson.loads(self.lines[src])
        late_ts = self.ts_list[src] - int(rb.uniform(6 * MIN, 60 * MIN))
        if late_ts < self.start_ms:
            late_ts = self.ts_list[src] - 6 * MIN
        ev = {"event_id": self._new_id(), "type": "page_view", "customer_id": obj["customer_id"],
              "ts": iso(late_ts), "session_id": obj.get("session_id") or f"s{self.cust_of[src]:06d}late{j}",
              "page": rb.choice(PAGES)}
        return orjson.dumps(ev)

    def _broken(self, kind: str, src: int) -> bytes:
        rb, line = self.rb, self.lines[src]
        if kind == "truncated_json":
            return line[: rb.randrange(5, len(line) - 1)]
        if kind == "garbage_bytes":
            size = rb.randint(8, 120)
            out = bytes(rb.choice(b"abcdefXYZ{}[]:,\"0123456789 \x80\xff\xfe\xc3") for _ in range(size))
            out = out.replace(b"\n", b" ").replace(b"\r", b" ")
            if rb.random() < 0.5:
                return line[: rb.randrange(5, len(line) - 1)] + b"\xff\xfe" + out
            return b"\xff" + out  # never valid UTF-8
        obj = orjson.loads(line)
        obj["event_id"] = self._new_id()
        if kind == "missing_field":
            del obj[rb.choice(_required(obj))]
        elif kind in ("price_string", "quantity_zero"):
            self._bad_add(kind, obj, src)
        elif kind == "ts_no_offset":
            obj["ts"] = obj["ts"][:-1] if rb.random() < 0.6 else obj["ts"][:19]
        else:  # unknown_type
            obj["type"] = rb.choice(_UNKNOWN_TYPES)
        return orjson.dumps(obj)

    def _bad_add(self, kind: str, obj: dict, src: int) -> None:
        """An ``add_to_cart`` with a price as text, or with quantity 0."""
        rb, cat = self.rb, self.cat
        obj["type"] = "add_to_cart"
        obj.setdefault("session_id", f"s{self.cust_of[src]:06d}x")
        obj.setdefault("product_id", cat.ids[cat.pick(rb)])
        if kind == "price_string":
            obj["price"] = f"{rb.uniform(1, 500):.2f}"
            obj["quantity"] = 1
        else:
            obj.setdefault("price", cat.price[cat.pick(rb)])
            obj["quantity"] = 0


def _required(obj: dict) -> list[str]:
    """The contract's required fields of this event (one of them gets dropped)."""
    required = ["event_id", "type", "customer_id", "ts"]
    et = obj["type"]
    if "session_id" in obj:
        required.append("session_id")
    if et in ("product_view",) + CART_ACTIVITY[:2]:
        required.append("product_id")
    if et == "add_to_cart":
        required.append("price")
    if "order_id" in obj:
        required.append("order_id")
    if "conversation_id" in obj:
        required.append("conversation_id")
    if et == "chat_message":
        required += ["sender", "text"]
    if et == "order_placed":
        required += ["total", "promised_delivery_ts"]
    return required
