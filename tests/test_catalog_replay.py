"""price_drop and back_in_stock through the whole dataflow on a replayed log (crm.catalog lines
in the same JSONL as the customers' events): who gets one, what policy does to them, order of
arrival within lateness, and nothing at all with the two rules off."""

from __future__ import annotations

from pathlib import Path

import orjson

from config.settings import CONTRACT_RULES, load_settings
from flows.replay import ReplayOutputs, replay

ON = {"enabled": [*CONTRACT_RULES, "price_drop", "back_in_stock"]}
CONSENT = {"consent": {"default": "opt_out"}, "quiet_hours": {"enabled": False}}


def ts(minutes: float) -> str:
    from helpers import at
    return at(minutes)


def view(eid: str, cust: str, pid: str, minutes: float, type: str = "product_view") -> dict:
    extra = {"price": 10.0} if type == "add_to_cart" else {}
    return {"event_id": eid, "type": type, "customer_id": cust, "ts": ts(minutes), "session_id": "s",
            "product_id": pid, **extra}


def price(eid: str, pid: str, value: float, minutes: float, **kw) -> dict:
    return {"event_id": eid, "type": "price_changed", "ts": ts(minutes), "product_id": pid, "price": value, **kw}


def stock(eid: str, pid: str, in_stock: bool, minutes: float) -> dict:
    return {"event_id": eid, "type": "stock_changed", "ts": ts(minutes), "product_id": pid, "in_stock": in_stock}


def run(tmp_path: Path, events: list, name: str = "out", **settings) -> tuple[list, list, dict]:
    log = tmp_path / f"{name}.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    out = ReplayOutputs(tmp_path / f"{name}.triggers.jsonl", tmp_path / f"{name}.dlq.jsonl",
                        tmp_path / f"{name}.summary.json", suppressed=tmp_path / f"{name}.suppressed.jsonl")
    summary = replay(load_settings(**settings), [log], out)
    read = lambda p: [orjson.loads(x) for x in p.read_bytes().splitlines()]  # noqa: E731
    return read(out.triggers), read(out.suppressed), summary


def catalogue(triggers: list) -> list:
    return sorted((t["type"], t["customer_id"], t["payload"]["product_id"]) for t in triggers
                  if t["type"] in ("price_drop", "back_in_stock"))


EVENTS = [
    view("v1", "alice", "p1", 0),
    view("v2", "bob", "p1", 1, "add_to_cart"),
    {"event_id": "o1", "type": "order_placed", "customer_id": "bob", "ts": ts(2), "order_id": "o1",
     "total": 10.0, "items": [{"product_id": "p1"}]},
    view("v3", "carol", "p2", 3),
    price("k1", "p1", 10.0, 4),
    price("k2", "p1", 8.0, 5, currency="EUR"),  # 20 % below the last price: alice (bob bought it)
    stock("k3", "p2", False, 6),
    stock("k4", "p2", True, 7),  # back: carol
    view("v4", "dave", "p3", 400),  # the log goes on past lateness
]


def test_a_replay_sends_each_to_watchers_who_did_not_buy(tmp_path):
    triggers, _, summary = run(tmp_path, EVENTS, rules=ON, **CONSENT)
    assert catalogue(triggers) == [("back_in_stock", "carol", "p2"), ("price_drop", "alice", "p1")]
    drop = next(t for t in triggers if t["type"] == "price_drop")
    assert drop["payload"]["old_price"] == 10.0 and drop["payload"]["price"] == 8.0
    assert drop["payload"]["currency"] == "EUR" and drop["event_ts"] == "2026-01-05T10:05:00.000Z"
    assert summary["events_invalid"] == 0 and summary["events_valid"] == len(EVENTS)


def test_the_triggers_match_the_trigger_schema(tmp_path):
    import json

    from jsonschema import Draft202012Validator

    schema = json.loads((Path(__file__).resolve().parent.parent / "config/schemas/trigger.schema.json").read_text())
    triggers, _, _ = run(tmp_path, EVENTS, rules=ON, **CONSENT)
    found = [t for t in triggers if t["type"] in ("price_drop", "back_in_stock")]
    assert len(found) == 2
    for t in found:
        Draft202012Validator(schema).validate(t)
    bad = {**found[0], "payload": {k: v for k, v in found[0]["payload"].items() if k != "viewed_at"}}
    assert not Draft202012Validator(schema).is_valid(bad)


def test_arrival_order_within_lateness_does_not_matter(tmp_path):
    """The view at +10 arrives after the price drop at +11 (the log is written out of order, within
    the 5 min lateness): the customer still gets it, as in ts order."""
    in_order = [view("v1", "erin", "p9", 10), price("k1", "p9", 5.0, 11, old_price=9.0),
                view("v9", "zed", "p0", 400)]
    swapped = [in_order[1], in_order[0], in_order[2]]
    a, _, _ = run(tmp_path, in_order, "a", rules=ON, **CONSENT)
    b, _, _ = run(tmp_path, swapped, "b", rules=ON, **CONSENT)
    assert catalogue(a) == catalogue(b) == [("price_drop", "erin", "p9")]
    assert [t["trigger_id"] for t in a] == [t["trigger_id"] for t in b]


def test_policy_decides_consent_and_cooldown(tmp_path):
    events = [view("v1", "alice", "p1", 0), price("k1", "p1", 5.0, 1, old_price=10.0),
              price("k2", "p1", 2.0, 2), view("v9", "zed", "p0", 400)]
    # no consent to marketing (the GDPR default): suppressed, not sent
    triggers, suppressed, _ = run(tmp_path, events, "a", rules=ON, quiet_hours={"enabled": False},
                                  consent={"default": "opt_in"})
    assert catalogue(triggers) == [] and {s["suppressed"] for s in suppressed} == {"no_consent"}
    # consented, with a cooldown of a day for the type: the second drop is held back
    triggers, suppressed, _ = run(tmp_path, events, "b", rules=ON, policy={"cooldown": {"price_drop": 86400}},
                                  **CONSENT)
    assert catalogue(triggers) == [("price_drop", "alice", "p1")]
    assert [(s["type"], s["suppressed"]) for s in suppressed] == [("price_drop", "cooldown")]


def test_with_the_rules_off_catalogue_lines_change_nothing(tmp_path):
    base = [e for e in EVENTS if e["type"] not in ("price_changed", "stock_changed")]
    with_catalogue, _, s1 = run(tmp_path, EVENTS, "a", **CONSENT)
    without, _, s2 = run(tmp_path, base, "b", **CONSENT)
    strip = lambda ts: [{k: v for k, v in t.items() if k != "emitted_at"} for t in ts]  # noqa: E731
    assert strip(with_catalogue) == strip(without) and catalogue(with_catalogue) == []
    assert s1["events_invalid"] == s2["events_invalid"] == 0
