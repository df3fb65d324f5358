"""The watch-list core (operators/watch.py): price_drop and back_in_stock against an oracle that
computes, from all events at once in event time, who should get each, whatever the arrival order
within the lateness bound; the bounds; erasure; pickling."""

from __future__ import annotations

import pickle
import random

import pytest
from helpers import ev, ms_at

from config.settings import load_settings
from operators.events import validate
from operators.watch import BACK_IN_STOCK, PRICE_DROP, WatchConfig, WatchShard, interest_of

LATE = 5 * 60_000
DAY = 86_400_000
T = ms_at()


def cfg(**watch) -> WatchConfig:
    s = load_settings(rules={"enabled": ["price_drop", "back_in_stock"]}, watch=watch)
    return WatchConfig(s, lateness=LATE)


_n = iter(range(10**9))


def iso(ts: int) -> str:
    from operators.events import format_ts
    return format_ts(ts)


def view(c: str, p: str, ts: int, kind: str = "product_view"):
    return ev(kind, iso(ts), c, product_id=p)


def buy(c: str, p: str, ts: int):
    return ev("order_placed", iso(ts), c, items=[{"product_id": p}])


def price(p: str, value: float, ts: int, **kw):
    return validate({"event_id": f"k{next(_n)}", "type": "price_changed", "ts": iso(ts), "product_id": p,
                     "price": value, **kw})


def stock(p: str, in_stock: bool, ts: int):
    return validate({"event_id": f"k{next(_n)}", "type": "stock_changed", "ts": iso(ts), "product_id": p,
                     "in_stock": in_stock})


def run(events: list, c: WatchConfig, shard: WatchShard | None = None) -> set:
    """Feed in this arrival order, advancing to the latest ts after each; flush at the end."""
    w = shard or WatchShard()
    out = []
    for e in events:
        if e.type in ("price_changed", "stock_changed"):
            w.change(e, c)
        else:
            w.observe(interest_of(e), c)
        out += w.advance(w.clock, c)
    out += w.flush(c)
    return {(x.type, x.customer_id, x.key) for x in out}


def oracle(events: list, c: WatchConfig) -> set:
    """Who gets what, from every event at once, in event time (no caps)."""
    changes = sorted((e for e in events if e.type.endswith("_changed")), key=lambda e: (e.ts, e.event_id))
    last_price, last_stock, want = {}, {}, set()
    for ch in changes:
        pid = ch.data["product_id"]
        if ch.type == "price_changed":
            before = ch.data.get("old_price", last_price.get(pid))
            last_price[pid] = ch.data["price"]
            fires = c.price_drop and before and ch.data["price"] <= before * (1 - c.min_drop)
            kind = PRICE_DROP
        else:
            fires = c.back_in_stock and ch.data["in_stock"] and last_stock.get(pid) is False
            last_stock[pid] = ch.data["in_stock"]
            kind = BACK_IN_STOCK
        if not fires:
            continue
        for cust in {e.customer_id for e in events if e.type in ("product_view", "add_to_cart")}:
            views = [e.ts for e in events if e.type in ("product_view", "add_to_cart") and e.customer_id == cust
                     and e.data["product_id"] == pid and ch.ts - c.window <= e.ts <= ch.ts]
            if not views:
                continue
            bought = any(e.type == "order_placed" and e.customer_id == cust and max(views) <= e.ts <= ch.ts
                         and any(i["product_id"] == pid for i in e.data["items"]) for e in events)
            if not bought:
                want.add((kind, cust, f"{pid}|{ch.event_id}"))
    return want


def test_view_then_drop_in_either_arrival_order():
    c = cfg()
    v, d = view("c1", "p1", T + 10), price("p1", 8.0, T + 11, old_price=10.0)
    expected = {(PRICE_DROP, "c1", f"p1|{d.event_id}")}
    assert run([v, d], c) == expected
    assert run([d, v], c) == expected  # the view arrives after the drop, within lateness


def test_a_drop_below_min_drop_or_a_rise_sends_nothing():
    c = cfg(min_drop=0.05)
    events = [view("c1", "p1", T), price("p1", 10.0, T + 1), price("p1", 9.6, T + 2), price("p1", 12.0, T + 3)]
    assert run(events, c) == set()  # 4 % is below 5 %
    d = price("p1", 9.5, T + 4)  # 5 % below the last price seen (12 -> 9.5 is 21 %)
    assert run(events + [d], c) == {(PRICE_DROP, "c1", f"p1|{d.event_id}")}


def test_bought_since_the_view_or_viewed_too_long_ago():
    c = cfg(window=14 * 86400)
    events = [view("c1", "p1", T), buy("c1", "p1", T + 1000),  # bought after viewing: no
              view("c2", "p1", T - 15 * DAY),  # outside the window: no
              view("c3", "p1", T), buy("c3", "p1", T - 1000),  # bought before the view: yes
              view("c4", "p1", T, "add_to_cart"),  # carted: yes
              price("p1", 5.0, T + 2000, old_price=10.0)]
    got = run(events, c)
    assert {g[1] for g in got} == {"c3", "c4"} and got == oracle(events, c)


def test_back_in_stock_only_after_known_out_of_stock():
    c = cfg()
    v = view("c1", "p1", T)
    first_in = stock("p1", True, T + 1)
    assert run([v, first_in], c) == set()  # never known out of stock
    out, back = stock("p1", False, T + 2), stock("p1", True, T + 3)
    assert run([v, first_in, out, back], c) == {(BACK_IN_STOCK, "c1", f"p1|{back.event_id}")}
    assert run([v, out, back, stock("p1", True, T + 4)], c) == {(BACK_IN_STOCK, "c1", f"p1|{back.event_id}")}


def test_rules_off_send_nothing_but_prices_are_still_learned():
    s = load_settings(rules={"enabled": ["back_in_stock"]})
    c = WatchConfig(s, lateness=LATE)
    assert run([view("c1", "p1", T), price("p1", 1.0, T + 1, old_price=10.0)], c) == set()


def test_a_repeated_change_is_decided_once():
    c = cfg()
    d = price("p1", 5.0, T + 1, old_price=10.0)
    assert len(run([view("c1", "p1", T), d, d], c)) == 1


def _world(rng: random.Random) -> list:
    events = []
    products, customers = ["p1", "p2", "p3"], [f"c{i}" for i in range(6)]
    t = T
    for _ in range(120):
        t += rng.randrange(0, 20 * 60_000)
        r = rng.random()
        if r < 0.5:
            events.append(view(rng.choice(customers), rng.choice(products), t,
                               rng.choice(["product_view", "add_to_cart"])))
        elif r < 0.65:
            events.append(buy(rng.choice(customers), rng.choice(products), t))
        elif r < 0.85:
            kw = {"old_price": rng.choice([10.0, 20.0])} if rng.random() < 0.3 else {}
            events.append(price(rng.choice(products), rng.choice([5.0, 9.0, 9.8, 10.0, 20.0]), t, **kw))
        else:
            events.append(stock(rng.choice(products), rng.random() < 0.5, t))
    return events


def _shuffled_within(events: list, bound: int, rng: random.Random) -> list:
    """An arrival order where no event comes after one more than ``bound`` later than it."""
    keyed = [(e.ts + rng.randrange(0, bound), i, e) for i, e in enumerate(events)]
    return [e for _, _, e in sorted(keyed)]


@pytest.mark.parametrize("seed", range(25))
def test_matches_the_oracle_in_any_arrival_order_within_lateness(seed):
    rng = random.Random(seed)
    c = cfg(window=3 * 3600, min_drop=0.05)
    events = _world(rng)
    want = oracle(events, c)
    assert run(events, c) == want
    assert run(_shuffled_within(events, LATE, rng), c) == want


def test_bounds_per_product_per_customer_and_expiry():
    c = cfg(per_product=3, per_customer=2, window=3600)
    w = WatchShard()
    for i in range(10):  # ten customers view p1: the three latest stay
        w.observe(interest_of(view(f"c{i}", "p1", T + i)), c)
    assert set(w.products["p1"].watchers) == {"c7", "c8", "c9"}
    for p in ("p2", "p3", "p4"):  # c9 watches at most two products: the latest two
        w.observe(interest_of(view("c9", p, T + 100)), c)
    assert set(w.by_customer["c9"]) == {"p3", "p4"} and "c9" not in w.products["p1"].watchers
    w.observe(interest_of(view("c0", "p9", T + 3 * 3600 * 1000)), c)  # hours later: the old views expire
    assert w.size() == 1 and set(w.by_customer) == {"c0"}


def test_erasure_forgets_the_customer():
    c = cfg()
    w = WatchShard()
    w.observe(interest_of(view("c1", "p1", T)), c)
    w.observe(interest_of(ev("erasure_requested", iso(T + 1), "c1")), c)
    assert w.size() == 0 and not w.by_customer
    w.change(price("p1", 1.0, T + 2, old_price=5.0), c)
    assert w.flush(c) == []


def test_state_pickles_with_what_is_pending():
    c = cfg()
    w = WatchShard()
    w.observe(interest_of(view("c1", "p1", T)), c)
    d = price("p1", 1.0, T + 1, old_price=5.0)
    w.change(d, c)
    back = pickle.loads(pickle.dumps(w))
    assert back.next_due(c) == d.ts + LATE
    assert [x.customer_id for x in back.flush(c)] == ["c1"]


def test_the_bytewax_step_resumes_from_its_snapshot():
    """Recovery: what the step held (watchers, the pending change) is in its snapshot."""
    from flows.watch_step import WatchLogic

    c = cfg()
    a = WatchLogic(c, live=False, resume=None)
    d = price("p1", 1.0, T + 1, old_price=5.0)
    out, _ = a.on_batch([interest_of(view("c1", "p1", T)), d])
    assert out == []  # the frontier has not passed it yet
    b = WatchLogic(c, live=True, resume=a.snapshot())
    assert b.notify_at() is not None  # live: the wall clock will move the frontier past it
    assert [x.customer_id for x in b.on_eof()[0]] == ["c1"]
    assert WatchLogic(c, live=False, resume=None, recovery=False).snapshot() is None
