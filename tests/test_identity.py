"""Identity: a guest identified as a known customer (issue 15). The merge itself (pure, no
Bytewax) and the whole flow in replay: the issue's case, a guest who never identifies, conflicts."""

from pathlib import Path

import orjson
from helpers import Machine, at, ev, ms_at

from config.settings import load_settings
from flows.replay import ReplayOutputs, replay
from operators.events import decode
from operators.identity import Identify, Merge, identify_keys, merge_into, rekey
from operators.rules import RuleConfig

# ----------------------------------------------------------------------------- the merge (pure)


def test_absorb_joins_the_guests_cart_and_its_timer_runs_on_for_the_customer():
    guest, cust = Machine(customer="g"), Machine(customer="c")
    guest.feed(ev("add_to_cart", at(0), customer="g", quantity=2))
    cust.feed(ev("add_to_cart", at(5), customer="c", product_id="p2", price=4.0))
    cust.state.absorb(guest.state, cust.cfg)
    assert cust.state.cart == {"p2": [1, 4.0], "p1": [2, 10.0]}
    assert cust.state.cart_last == ms_at(5) and cust.state.customer_id == "c"
    cust.feed(ev("page_view", at(40), customer="c"))
    [c] = cust.candidates("abandoned_cart")
    assert c.customer_id == "c" and c.event_ts == ms_at(35) and c.payload["cart_value"] == 24.0


def test_absorb_then_purchase_leaves_no_cart_and_no_reminder():
    guest, cust = Machine(customer="g"), Machine(customer="c")
    guest.feed(ev("add_to_cart", at(0), customer="g"))
    cust.state.absorb(guest.state, cust.cfg)
    cust.feed(ev("order_placed", at(10), customer="c"), ev("page_view", at(60), customer="c"))
    assert cust.candidates("abandoned_cart") == [] and not cust.state.cart
    assert cust.state.order_count == 1 and "o1" in cust.state.orders


def test_absorb_takes_open_orders_conversations_recent_items_and_widens_the_clock():
    guest, cust = Machine(customer="g"), Machine(customer="c")
    guest.feed(ev("product_view", at(0), customer="g", product_id="p9"),
               ev("order_placed", at(1), customer="g", order_id="og", total=20.0),
               ev("chat_message", at(2), customer="g", conversation_id="cg"))
    cust.feed(ev("page_view", at(-30), customer="c"))
    cust.state.absorb(guest.state, cust.cfg)
    s = cust.state
    assert "og" in s.orders and "cg" in s.convs and s.order_count == 1 and s.spend == 20.0
    assert "p9" in s.recent.recent and s.clock == ms_at(2) and s.first_seen == ms_at(-30)
    assert s.next_deadline(cust.cfg) is not None  # the guest's open episodes keep their timers


def test_absorb_of_an_empty_guest_changes_nothing_open():
    cust = Machine(customer="c")
    cust.feed(ev("add_to_cart", at(0), customer="c"))
    before = dict(cust.state.cart), cust.state.cart_last, cust.state.next_deadline(cust.cfg)
    cust.state.absorb(Machine(customer="g").state, cust.cfg)
    assert (dict(cust.state.cart), cust.state.cart_last, cust.state.next_deadline(cust.cfg)) == before


def test_merges_in_either_order_give_the_same_open_state():
    cfg = RuleConfig()

    def states():
        g, c = Machine(customer="g"), Machine(customer="c")
        g.feed(ev("add_to_cart", at(0), customer="g"))
        c.feed(ev("add_to_cart", at(3), customer="c", product_id="p2"))
        return g.state, c.state

    g, c = states()
    adopted_first = merge_into(merge_into(None, Merge("c", c, True, ms_at(5)), cfg), Merge("c", g, False, ms_at(5)), cfg)
    g, c = states()
    fresh = Machine(customer="c").state  # the guest's merge arrived before the customer's own state
    absorbed_first = merge_into(merge_into(fresh, Merge("c", g, False, ms_at(5)), cfg), Merge("c", c, True, ms_at(5)), cfg)
    assert adopted_first.cart == absorbed_first.cart == {"p1": [1, 10.0], "p2": [1, 10.0]}
    assert adopted_first.customer_id == absorbed_first.customer_id == "c"


def test_identify_goes_to_both_ids_and_rekey_keeps_the_event():
    e = decode(orjson.dumps({"event_id": "i", "type": "identify", "customer_id": "c", "anonymous_id": "g",
                             "ts": at(10)}))
    keys = identify_keys(e)
    assert [(k, type(v), v.guest) for k, v in keys] == [("g", Identify, True), ("c", Identify, False)]
    same = decode(orjson.dumps({"event_id": "j", "type": "identify", "customer_id": "c", "anonymous_id": "c",
                                "ts": at(10)}))
    assert identify_keys(same) == []
    moved = rekey(ev("page_view", at(1), customer="g"), "c")
    assert moved.customer_id == "c" and moved.data["customer_id"] == "g"


def test_identify_without_anonymous_id_is_a_dead_letter():
    d = decode(orjson.dumps({"event_id": "i", "type": "identify", "customer_id": "c", "ts": at(0)}))
    assert d.reason == "missing_field" and d.detail == "anonymous_id"


# ----------------------------------------------------------------------------- the flow (replay)


def line(eid, cust, ts, type, **kw):
    base = {"event_id": eid, "type": type, "customer_id": cust, "ts": ts}
    if type in ("add_to_cart", "page_view", "product_view"):
        base["session_id"] = f"s-{cust}"
    if type == "add_to_cart":
        base.update(product_id="p1", price=30.0)
    return {**base, **kw}


def run(tmp_path: Path, events: list, name: str = "out"):
    log = tmp_path / f"{name}.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    out = ReplayOutputs(tmp_path / f"{name}.triggers.jsonl", tmp_path / f"{name}.dlq.jsonl",
                        tmp_path / f"{name}.summary.json", tmp_path / f"{name}.profiles.jsonl")
    summary = replay(load_settings(), [log], out)
    triggers = [orjson.loads(x) for x in out.triggers.read_bytes().splitlines()]
    profiles = {p["customer_id"]: p for p in map(orjson.loads, out.profiles.read_bytes().splitlines())}
    dlq = [orjson.loads(x) for x in out.dlq.read_bytes().splitlines()]
    return summary, triggers, profiles, dlq


ISSUE_CASE = [  # guest cart at 10:00; login on another device and purchase of the same item at 10:10
    line("g1", "anon-7", at(0), "add_to_cart"),
    line("id", "cust-42", at(10), "identify", anonymous_id="anon-7"),
    line("o1", "cust-42", at(10, ), "order_placed", order_id="o-1", total=30.0,
         items=[{"product_id": "p1", "quantity": 1, "price": 30.0}]),
    line("later", "someone-else", at(hours=2), "page_view"),  # event time moves far past 10:30
]


def test_issue_case_guest_cart_bought_after_login_gets_no_reminder(tmp_path):
    summary, triggers, profiles, dlq = run(tmp_path, ISSUE_CASE)
    assert [t for t in triggers if t["type"] == "abandoned_cart"] == []
    assert dlq == []
    cust = profiles["cust-42"]
    assert cust["order_count"] == 1 and cust["cart"] == [] and cust["open_orders"][0]["order_id"] == "o-1"
    assert profiles.get("anon-7", {}).get("cart", []) == []


def test_guest_who_never_identifies_still_gets_the_reminder(tmp_path):
    events = [e for e in ISSUE_CASE if e["type"] != "identify"]
    _, triggers, profiles, _ = run(tmp_path, events)
    [t] = [t for t in triggers if t["type"] == "abandoned_cart"]
    assert t["customer_id"] == "anon-7" and t["event_ts"] == "2026-01-05T10:30:00.000Z"


def test_identified_guest_cart_left_unbought_reminds_the_customer(tmp_path):
    events = [e for e in ISSUE_CASE if e["type"] != "order_placed"]
    events.insert(2, line("g2", "anon-7", at(12), "page_view"))  # the guest device goes on: it counts for cust-42
    _, triggers, profiles, _ = run(tmp_path, events)
    [t] = [t for t in triggers if t["type"] == "abandoned_cart"]
    assert t["customer_id"] == "cust-42" and t["payload"]["items"][0]["product_id"] == "p1"
    assert profiles["cust-42"]["last_seen"] == "2026-01-05T10:12:00.000Z"


def test_a_second_identify_to_another_customer_is_a_dead_letter_and_replay_is_deterministic(tmp_path):
    events = ISSUE_CASE + [line("id2", "cust-99", at(20), "identify", anonymous_id="anon-7")]
    _, first, _, dlq = run(tmp_path, events, "one")
    _, second, _, _ = run(tmp_path, events, "two")
    assert [d["reason"] for d in dlq] == ["identify_conflict"]
    strip = lambda ts: sorted((t["type"], t["customer_id"], t["event_ts"]) for t in ts)  # noqa: E731
    assert strip(first) == strip(second)


# ----------------------------------------------------------------------------- recovery


def test_an_identified_key_keeps_forwarding_after_a_restart_from_its_snapshot():
    from connectors.metrics import telemetry
    from flows.dataflow import ProfileLogic

    cfg, t = RuleConfig(), telemetry()
    guest = ProfileLogic(cfg, False, t, None, profiles="none")
    guest.on_batch([ev("add_to_cart", at(0), customer="g")])
    idf = decode(orjson.dumps({"event_id": "i", "type": "identify", "customer_id": "c", "anonymous_id": "g",
                               "ts": at(10)}))
    out, _ = guest.on_batch([identify_keys(idf)[0][1]])
    [merge] = [o for o in out if type(o) is Merge]
    assert merge.customer_id == "c" and not merge.adopt and merge.state.cart
    resumed = ProfileLogic(cfg, False, t, guest.snapshot(), profiles="none")
    out, _ = resumed.on_batch([ev("page_view", at(12), customer="g")])
    assert [(o.type, o.customer_id) for o in out] == [("page_view", "c")]
    assert resumed.state is None and resumed.on_eof() == ([], resumed.on_eof()[1])


def test_absorb_merges_the_reorder_buffers_in_event_time_order():
    guest, cust = Machine(customer="g", lateness_ms=None), Machine(customer="c", lateness_ms=None)
    guest.feed(ev("add_to_cart", at(1), customer="g", event_id="same"), ev("page_view", at(3), customer="g"))
    cust.feed(ev("page_view", at(1), customer="c", event_id="same"), ev("page_view", at(2), customer="c"))
    cust.state.absorb(guest.state, cust.cfg)  # equal (ts, event_id) in both buffers: no Event comparison
    held = cust.state.held
    assert [h[0] for h in held] == sorted(h[0] for h in held) and len(held) == 4
    cust.feed(ev("page_view", at(60), customer="c"))
    assert cust.state.cart == {"p1": [1, 10.0]} and [c.event_ts for c in cust.candidates("abandoned_cart")] == [ms_at(31)]
