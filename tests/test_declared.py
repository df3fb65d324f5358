"""Rules declared in the settings file (``[[rules.declared]]``, operators/declared.py): filters, keys,
occurrences within a window, the three kinds of due time, cancel by key or any, bounded state,
pickling, identity merges, and one-line errors naming the rule and the field."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import Machine, at, ev, ms_at
from config.settings import SettingsError, load_settings
from operators.customer import CustomerState
from operators.rules import RuleConfig

ROOT = Path(__file__).resolve().parents[1]
DAY = 86_400_000


def machine(*defs: dict, **rules) -> Machine:
    names = [d["name"] for d in defs]
    return Machine(RuleConfig(load_settings(rules={"enabled": names, "declared": list(defs), **rules})))


def big_order(**kw) -> dict:
    return {"name": "big_order", "open": {"type": "order_placed", "where": {"total": {"gte": 100}}},
            "key": "order_id", "due": {"delay": 3600}, "payload": {"order_id": "$key", "total": "total"}, **kw}


def test_a_rule_declared_in_a_toml_file_runs_when_enabled(tmp_path):
    toml = tmp_path / "shop.toml"
    toml.write_text('''
[rules]
enabled = ["abandoned_cart", "big_order"]

[[rules.declared]]
name = "big_order"
policy_class = "service"
open = { type = "order_placed", where = { total = { gte = 100 }, currency = ["EUR", "USD"] } }
key = "order_id"
cancel = ["order_cancelled"]
due = { delay = "PT1H" }
payload = { order_id = "$key", total = "total" }
priority = "urgent"
''')
    m = Machine(RuleConfig(load_settings(toml)))
    m.feed(ev("order_placed", at(0), order_id="o1", total=150.0, currency="EUR"),
           ev("order_placed", at(1), order_id="o2", total=99.0, currency="EUR"),
           ev("order_placed", at(2), order_id="o3", total=500.0, currency="GBP"),
           ev("order_placed", at(3), order_id="o4", total=500.0, currency="USD"),
           ev("order_cancelled", at(30), order_id="o4"))
    m.advance(ms_at(hours=3))
    (c,) = m.candidates("big_order")
    assert (c.event_ts, c.payload, c.policy_class, c.reasons) == (ms_at(60), {"order_id": "o1", "total": 150.0},
                                                                   "service", ["big_order"])
    assert c.to_trigger()["priority"] == "urgent"


@pytest.mark.parametrize("where, fires", [
    ({"total": 150.0}, True), ({"total": {"ne": 150.0}}, False), ({"total": {"gt": 150}}, False),
    ({"total": {"lt": 151, "gt": 149}}, True), ({"currency": {"not_in": ["EUR"]}}, True),
    ({"coupon": {"exists": False}}, True), ({"coupon": {"exists": True}}, False),
    ({"coupon": {"ne": "X"}}, False),  # a comparison needs the field (absent: use `exists`)
    ({"items[].product_id": "p2"}, True), ({"items[].product_id": "p3"}, False),
    ({"total": {"lte": "150"}}, None),  # a number compared with a string: a bad definition
])
def test_filters(where, fires):
    rule = big_order(open={"type": "order_placed", "where": where})
    if fires is None:
        with pytest.raises(SettingsError, match="rule 'big_order', field open.0.where.total: `lte` compares numbers"):
            machine(rule)
        return
    m = machine(rule)
    m.feed(ev("order_placed", at(0), total=150.0, currency="USD", items=[{"product_id": "p1"}, {"product_id": "p2"}]))
    m.advance(ms_at(hours=2))
    assert bool(m.candidates()) is fires


def test_true_is_not_one_in_a_filter():
    m = machine(big_order(open={"type": "order_placed", "where": {"gift": True}}))
    m.feed(ev("order_placed", at(0), order_id="o1", gift=1), ev("order_placed", at(1), order_id="o2", gift=True))
    m.advance(ms_at(hours=2))
    assert [c.payload["order_id"] for c in m.candidates()] == ["o2"]


def test_a_list_key_opens_one_episode_per_value_and_a_cancel_of_any_key_ends_them_all():
    rule = {"name": "restock_nudge", "open": "order_placed", "key": "items[].product_id", "due": {"idle": 3600},
            "cancel": [{"type": "chat_message", "key": "any"}], "payload": {"product_id": "$key"}}
    m = machine(rule)
    m.feed(ev("order_placed", at(0), items=[{"product_id": "p1"}, {"product_id": "p2"}]))
    m.advance(ms_at(61))
    assert sorted(c.payload["product_id"] for c in m.candidates()) == ["p1", "p2"]
    m = machine(rule)
    m.feed(ev("order_placed", at(0), items=[{"product_id": "p1"}, {"product_id": "p2"}]), ev("chat_message", at(30)))
    m.advance(ms_at(hours=2))
    assert m.candidates() == []


def test_due_at_a_time_in_a_field_plus_an_offset_and_never_beyond_max_wait():
    rule = {"name": "promise_day", "open": "order_placed", "key": "order_id", "payload": {"order_id": "$key"},
            "due": {"at": "gift.deliver_on", "after": 7200}}
    m = machine(rule)
    m.feed(ev("order_placed", at(0), order_id="o1", gift={"deliver_on": at(days=3)}),
           ev("order_placed", at(1), order_id="o2", gift={"deliver_on": at(days=400)}),
           ev("order_placed", at(2), order_id="o3"), ev("order_placed", at(3), order_id="o4", gift={"deliver_on": "soon"}))
    m.advance(ms_at(days=500))
    assert [(c.event_ts, c.payload["order_id"]) for c in m.candidates()] == [(ms_at(days=3, hours=2), "o1")]
    assert "promise_day" not in m.state.slices  # no episode left: the slice is forgotten (Rule.quiet)


def test_n_occurrences_within_a_window_and_extend_by_another_type():
    rule = {"name": "help_loop", "open": "help_view", "count": 2, "window": 600, "extend": ["search"],
            "due": {"idle": 1800}, "payload": {"views": "$count", "since": "$opened", "until": "$last"}}
    m = machine(rule)
    m.feed(ev("help_view", at(0)), ev("help_view", at(11)), ev("help_view", at(15)), ev("search", at(40)))
    m.advance(ms_at(hours=3))
    (c,) = m.candidates()
    assert c.event_ts == ms_at(70) and c.payload == {"views": 3, "since": "2026-01-05T10:00:00.000Z",
                                                     "until": "2026-01-05T10:40:00.000Z"}


def test_episodes_per_customer_are_capped_and_stale_ones_expire():
    rule = {"name": "views", "open": "product_view", "key": "product_id", "count": 2, "window": 3600,
            "due": {"idle": 60}}
    m = machine(rule, max_episodes=4)
    m.feed(*[ev("product_view", at(i), product_id=f"p{i}") for i in range(10)])
    assert sorted(m.state.slices["views"].episodes) == ["p6", "p7", "p8", "p9"]  # the least recently active went
    m.feed(ev("product_view", at(hours=5), product_id="q"))  # the others' single views are out of the window
    assert sorted(m.state.slices["views"].episodes) == ["q"]


def test_late_events_cancel_but_never_open():
    rule = big_order(cancel=["order_cancelled"])
    m = Machine(RuleConfig(load_settings(rules={"enabled": ["big_order"], "declared": [rule]})), lateness_ms=60_000)
    m.feed(ev("order_placed", at(0), order_id="o1", total=500.0), ev("page_view", at(30)),
           ev("order_placed", at(1), order_id="o2", total=500.0), ev("order_cancelled", at(2), order_id="o1"))
    m.advance(ms_at(hours=3))
    assert m.candidates() == []


def test_a_late_cancel_ends_only_the_episodes_it_came_after():
    def fired_with(cart_at: float) -> bool:
        m = Machine(RuleConfig(load_settings(rules={"enabled": ["browse_abandonment"]})), lateness_ms=60_000)
        m.feed(*[ev("product_view", at(t), product_id="p9") for t in (10, 11, 12, 14)],
               ev("add_to_cart", at(cart_at), product_id="p9"))
        assert m.out == [] and m.state.slices["browse_abandonment"].episodes is not None
        m.advance(ms_at(days=1))
        return bool(m.candidates())

    assert fired_with(5)  # carted before the views began: not what they abandoned
    assert not fired_with(10.5)


def test_state_pickles_by_name_quiet_says_nothing_pending_and_an_identity_merge_joins_episodes():
    cfg = RuleConfig(load_settings(rules={"enabled": ["big_order"], "declared": [big_order()]}))
    cfg.lateness = 0
    rule = cfg.named["big_order"]
    a, b = CustomerState("c1"), CustomerState("guest")
    a.process(ev("order_placed", at(0), order_id="o1", total=500.0), cfg)
    b.process(ev("order_placed", at(1), order_id="o2", total=500.0, customer="guest"), cfg)
    a = pickle.loads(pickle.dumps(a))
    assert not rule.quiet(a, a.slices["big_order"]) and rule.quiet(a, None)
    a.absorb(b, cfg)
    assert sorted(a.slices["big_order"].episodes) == ["o1", "o2"]
    out = a.flush(ms_at(hours=2), cfg)
    assert sorted(c.payload["order_id"] for c in out if getattr(c, "type", None) == "big_order") == ["o1", "o2"]
    assert "big_order" not in a.slices  # quiet once both fired: forgotten (a fresh one when next needed)


@pytest.mark.parametrize("rule, words", [
    ({"name": "x", "open": "order_placed"}, "rule 'x', field due: is required"),
    ({"name": "x", "open": "order_placed", "due": {"idle": 60, "at": "ts"}}, "rule 'x', field due: give exactly one"),
    ({"name": "x", "open": "order_placed", "due": {"idle": 60}, "count": 3}, "rule 'x', field definition: count > 1 needs a window"),
    ({"name": "x", "open": "order_placed", "due": {"idle": 60}, "key": "a..b"}, "rule 'x', field key: 'a..b' is not a field path"),
    ({"name": "x", "open": "order_placed", "due": {"idle": 60}, "payload": {"n": "$nope"}}, "rule 'x', field payload: n: '$nope'"),
    ({"name": "x", "open": {"type": "order_placed", "where": {"total": {"about": 3}}}, "due": {"idle": 60}},
     "rule 'x', field open.0.where.total: unknown comparison 'about'"),
    ({"name": "x", "policy_class": "service", "open": "order_placed", "due": {"idle": 60}, "cooldown": 60},
     "rule 'x', field definition: cooldown: service triggers always go out"),
    ({"name": "Big Order", "open": "order_placed", "due": {"idle": 60}}, "rule 'Big Order', field name"),
    ({"name": "escalation", "open": "order_placed", "due": {"idle": 60}}, "'escalation' is a contract rule"),
    ({"name": "x", "open": "order_placd", "due": {"idle": 60}}, "rule 'x', field open.0.type: unknown event type 'order_placd'"),
    ({"name": "x", "open": "search", "cancel": ["search", "consent_updated"], "due": {"idle": 60}},
     "rule 'x', field cancel.1.type: 'consent_updated' never reaches rules"),
])
def test_a_bad_definition_fails_at_start_in_one_line_naming_the_rule_and_the_field(rule, words):
    with pytest.raises(SettingsError) as err:
        RuleConfig(load_settings(rules={"enabled": ["x"], "declared": [rule]}))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_declared_rule_named_like_a_hand_written_one_is_refused(monkeypatch):
    from importlib.metadata import EntryPoint

    from operators import registry

    eps = [EntryPoint("shop_rule", "operators.contract_rules:AbandonedCart", registry.GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    with pytest.raises(SettingsError, match="rule 'shop_rule' is already a hand-written rule"):
        RuleConfig(load_settings(rules={"declared": [{"name": "shop_rule", "open": "search", "due": {"idle": 60}}]}))


def test_a_catalogue_rule_is_replaced_by_a_declaration_of_its_name():
    mine = {"name": "win_back", "open": "order_placed", "due": {"idle": 86400}, "reason": "one_day"}
    m = machine(mine)
    m.feed(ev("order_placed", at(0)))
    m.advance(ms_at(days=2))
    assert [(c.type, c.event_ts, c.reasons) for c in m.candidates()] == [("win_back", ms_at(days=1), ["one_day"])]


def test_the_cli_refuses_a_bad_declaration_in_one_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[rules]\nenabled = ["x"]\n[[rules.declared]]\nname = "x"\nopen = "search"\ndue = { idle = "soon" }\n')
    log = tmp_path / "e.jsonl"
    log.write_text("")
    res = subprocess.run([sys.executable, "-m", "flows.cli", "replay", str(log), "--config", str(cfg),
                          "--triggers-out", str(tmp_path / "t"), "--dlq-out", str(tmp_path / "d"),
                          "--summary", str(tmp_path / "s")], capture_output=True, text=True, cwd=ROOT,
                         env={"PATH": ""})
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "rule 'x', field due.idle" in res.stderr


def test_the_readme_example_declaration_loads_and_fires(tmp_path):
    readme = (ROOT / "README.md").read_text().split("## Your own triggers", 1)[1].split("\n## ", 1)[0]
    toml = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "shop.toml").write_text(toml)
    m = Machine(RuleConfig(load_settings(tmp_path / "shop.toml")))
    m.feed(ev("order_placed", at(0), total=800.0, currency="EUR", items=[{"product_id": "p1", "quantity": 1,
                                                                          "price": 800.0}]))
    m.advance(ms_at(hours=3))
    (c,) = m.candidates("big_order_thanks")
    assert c.event_ts == ms_at(120) and c.payload == {"order_id": "o1", "total": 800.0, "first_item": "p1",
                                                      "since": "2026-01-05T10:00:00.000Z"}
    assert c.to_trigger()["priority"] == "urgent" and c.policy_class == "service"  # high, one up for `regular`


def test_a_field_outside_the_contract_is_named_in_a_warning_at_start(caplog):
    """A misspelt field matches nothing, silently: the start says so (a shop's own field still works)."""
    import logging

    with caplog.at_level(logging.WARNING, logger="crm.rules"):
        machine(big_order(open={"type": "order_placed", "where": {"totl": {"gte": 100}}},
                          payload={"total": "totel"}))
    text = caplog.text
    assert "rule 'big_order', field open.0.where.totl: 'totl' is not a contract field of order_placed" in text
    assert "field payload.total: 'totel'" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="crm.rules"):
        machine(big_order())  # contract fields only: nothing to say
    assert "big_order" not in caplog.text
