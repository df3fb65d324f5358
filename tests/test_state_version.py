"""A release resumes from customer state pickled by an earlier one (issue 14, "state is versioned").

``tests/golden/customer_state_v0.pickle`` was written by the code before the rule interface
(commit "Golden files..."; ``CRM_GOLDEN_WRITE=1`` rewrites it, only ever with that code): the
state of 40 customers of the seed-3 golden log after the first half of their events (in arrival
order, the settings' reorder buffer on), and of a customer whose cart is full and still armed.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import orjson

from helpers import Machine, at, ev, ms_at
from operators.customer import CustomerState
from operators.events import Invalid, validate
from operators.rules import RuleConfig

GOLDEN = Path(__file__).resolve().parent / "golden"
SNAPSHOT = GOLDEN / "customer_state_v0.pickle"
WRITE = os.environ.get("CRM_GOLDEN_WRITE") == "1"


def log_events(customers: int = 40) -> list:
    """The seed-3 golden log's valid events of its first ``customers`` customers, in file order."""
    events, ids = [], {}
    for line in gzip.decompress((GOLDEN / "seed3.events.jsonl.gz").read_bytes()).splitlines():
        try:
            e = validate(orjson.loads(line))
        except (Invalid, orjson.JSONDecodeError):
            continue
        if e.customer_id in ids or len(ids) < customers:
            ids.setdefault(e.customer_id, len(ids))
            events.append(e)
    return events


def plain(o):
    """An output as plain data (pickle bytes differ with object sharing; the content must not)."""
    if isinstance(o, dict):
        return {k: plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [plain(v) for v in o]
    if hasattr(o, "__slots__"):
        return [type(o).__name__] + [plain(getattr(o, s, None)) for s in o.__slots__]
    return o


def run(states: dict, events: list, cfg: RuleConfig) -> list:
    """Feed ``events``; return every output as plain data."""
    outs = []
    for e in events:
        st = states.get(e.customer_id)
        if st is None:
            st = states[e.customer_id] = CustomerState(e.customer_id, cfg.recs)
        outs.extend(st.process(e, cfg)[0])
    return [plain(o) for o in outs]


def end(states: dict, now: int, cfg: RuleConfig) -> list:
    return [plain(o) for cid in sorted(states) for o in states[cid].flush(now, cfg)]


def cart_machine() -> Machine:
    m = Machine(customer="cart")
    m.feed(ev("add_to_cart", at(0), customer="cart", product_id="p7", quantity=2, price=12.5))
    return m


def test_old_snapshot_resumes_and_behaves_as_an_uninterrupted_run():
    cfg = RuleConfig()
    events = log_events()
    half = len(events) // 2
    last = max(e.ts for e in events)
    if WRITE:
        states: dict = {}
        run(states, events[:half], cfg)
        SNAPSHOT.write_bytes(pickle.dumps({"log": states, "cart": cart_machine().state},
                                          protocol=pickle.HIGHEST_PROTOCOL))
    saved = pickle.loads(SNAPSHOT.read_bytes())
    fresh: dict = {}
    run(fresh, events[:half], cfg)
    expected = run(fresh, events[half:], cfg) + end(fresh, last, cfg)
    resumed = saved["log"]
    assert sorted(resumed) == sorted(fresh)
    got = run(resumed, events[half:], cfg) + end(resumed, last, cfg)
    assert len(expected) > 100
    assert got == expected


def test_a_full_cart_resumed_from_the_old_snapshot_still_gets_its_reminder():
    m = Machine(customer="cart")
    m.state = pickle.loads(SNAPSHOT.read_bytes())["cart"]
    m.advance(ms_at(hours=2))
    (cand,) = m.candidates("abandoned_cart")
    assert cand.payload["items"] == [{"product_id": "p7", "quantity": 2, "price": 12.5}]
    assert cand.event_ts == ms_at(0) + m.cfg.cart_idle


SNAPSHOT_V2 = GOLDEN / "customer_state_v2.pickle"


def test_a_version_2_snapshot_resumes_and_behaves_as_an_uninterrupted_run():
    """``customer_state_v2.pickle`` was written by the code before pending churn decisions were
    packed into one ``bytes`` each (issue 19; ``CRM_GOLDEN_WRITE=1`` rewrites it, only ever with
    that code): the seed-3 log's first 40 customers after half of their events, then advanced a
    week so that their churn decisions wait for labels (features packed as (names, array))."""
    cfg = RuleConfig()
    events = log_events()
    half = len(events) // 2
    last = max(e.ts for e in events)
    week = max(e.ts for e in events[:half]) + 7 * 86_400_000

    def first_half(states: dict) -> list:
        out = run(states, events[:half], cfg)
        return out + [plain(o) for cid in sorted(states) for o in states[cid].advance(week, cfg)]

    if WRITE:
        states: dict = {}
        first_half(states)
        SNAPSHOT_V2.write_bytes(pickle.dumps(states, protocol=pickle.HIGHEST_PROTOCOL))
    resumed = pickle.loads(SNAPSHOT_V2.read_bytes())
    fresh: dict = {}
    first_half(fresh)
    assert sum(len(s.churn_pending) for s in resumed.values()) > 20  # what this test is about
    expected = run(fresh, events[half:], cfg) + end(fresh, last, cfg)
    got = run(resumed, events[half:], cfg) + end(resumed, last, cfg)
    assert sum(o[0] == "Label" and o[1] == "churn" for o in expected) > 20
    assert got == expected
