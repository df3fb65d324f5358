"""The catalogue's five declared flows (issue 14), each in event time on hand-built events: a few
cases written out, and an oracle (an independent computation of what should fire, per key, from the
whole event list) checked against the rule on hand cases and on hypothesis-generated histories."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from helpers import Machine, at, ev, ms_at
from config.settings import load_settings
from operators.policy import PolicyConfig, PolicyState
from operators.rules import RuleConfig
from operators.messages import Candidate, Suppressed

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def machine(*rules: str, **groups) -> Machine:
    return Machine(RuleConfig(load_settings(rules={"enabled": list(rules)}, **groups)))


def fired(m: Machine, type: str) -> list[tuple[int, str]]:
    return [(c.event_ts, c.payload[KEY_FIELD[type]] if KEY_FIELD[type] else c.customer_id)
            for c in m.candidates(type)]


KEY_FIELD = {"browse_abandonment": "product_id", "post_purchase_review": "order_id", "win_back": None,
             "support_sla_breach": "conversation_id", "satisfaction_survey": "conversation_id"}


def run(type: str, events: list, end: int, **groups) -> list[tuple[int, str]]:
    m = machine(type, **groups)
    m.feed(*events)
    m.advance(end)
    return sorted(fired(m, type))


# --------------------------------------------------------------------------- oracles
# Each walks the events of one key in ts order; a timer due strictly before an event fires first,
# one due at the end of input fires (the replay's end).


def oracle_browse(events, end, views=3, window=DAY, wait=4 * HOUR) -> list:
    out = []
    products = {e.get("product_id") for e in events if e.type == "product_view"}
    for p in sorted(products):
        hits, last, qualified, n = [], None, False, 0
        for e in events + [None]:
            ts = end + 1 if e is None else e.ts
            if qualified and last + wait < ts:
                out.append((last + wait, p))
                hits, last, qualified = [], None, False
            if e is None:
                break
            bought = e.type == "order_placed" and p in [i["product_id"] for i in e.get("items") or []]
            if (e.type == "add_to_cart" and e.get("product_id") == p) or bought:
                hits, last, qualified = [], None, False
            elif e.type == "product_view" and e.get("product_id") == p:
                last = e.ts
                if not qualified:
                    hits = [h for h in hits if h > e.ts - window] + [e.ts]
                    qualified = len(hits) >= views
    return sorted(out)


def oracle_review(events, end, after=7 * DAY) -> list:
    out = []
    for o in sorted({e.get("order_id") for e in events if e.get("order_id")}):
        last = None
        for e in [e for e in events if e.get("order_id") == o] + [None]:
            ts = end + 1 if e is None else e.ts
            if last is not None and last + after < ts:
                out.append((last + after, o))
                last = None
            if e is None:
                break
            if e.type in ("return_requested", "refund_issued"):
                last = None
            elif e.type == "order_delivered":
                last = e.ts
    return sorted(out)


def oracle_win_back(events, end, after=60 * DAY) -> list:
    orders = [e.ts for e in events if e.type == "order_placed"]
    out = [(a + after, "c1") for a, b in zip(orders, orders[1:]) if b > a + after]
    if orders and orders[-1] + after <= end:
        out.append((orders[-1] + after, "c1"))
    return out


def oracle_sla(events, end, within=15 * MIN) -> list:
    out = []
    for c in sorted({e.get("conversation_id") for e in events if e.get("conversation_id")}):
        since, blocked = None, False
        for e in [e for e in events if e.get("conversation_id") == c] + [None]:
            ts = end + 1 if e is None else e.ts
            if since is not None and since + within < ts:
                out.append((since + within, c))
                since, blocked = None, True
            if e is None:
                break
            if e.type == "chat_closed" or e.get("sender") == "agent":
                since, blocked = None, False
            elif e.get("sender") == "customer" and since is None and not blocked:
                since = e.ts
    return sorted(out)


def oracle_survey(events, end, after=HOUR) -> list:
    out = []
    for c in sorted({e.get("conversation_id") for e in events if e.get("conversation_id")}):
        closed = None
        for e in [e for e in events if e.get("conversation_id") == c] + [None]:
            ts = end + 1 if e is None else e.ts
            if closed is not None and closed + after < ts:
                out.append((closed + after, c))
                closed = None
            if e is None:
                break
            if e.type == "chat_message" or (e.type == "chat_closed" and e.get("csat") is not None):
                closed = None
            elif e.type == "chat_closed" and closed is None:
                closed = e.ts
    return sorted(out)


ORACLES = {"browse_abandonment": oracle_browse, "post_purchase_review": oracle_review, "win_back": oracle_win_back,
           "support_sla_breach": oracle_sla, "satisfaction_survey": oracle_survey}


def check(type: str, events: list, end: int, expected: list) -> None:
    """The rule, the oracle and the hand-written expectation agree."""
    assert ORACLES[type](events, end) == expected
    assert run(type, events, end) == expected


# --------------------------------------------------------------------------- browse_abandonment

def test_browse_three_views_in_a_day_and_no_cart_fire_four_hours_after_the_last():
    events = [ev("product_view", at(m), product_id="p9", price=5.0) for m in (0, 10, 20)]
    check("browse_abandonment", events, ms_at(days=2), [(ms_at(20) + 4 * HOUR, "p9")])
    m = machine("browse_abandonment")
    m.feed(*events)
    m.advance(ms_at(days=2))
    (c,) = m.candidates()
    assert c.payload == {"product_id": "p9", "views": 3, "last_viewed_at": "2026-01-05T10:20:00.000Z",
                         "price": 5.0}
    assert (c.reasons, c.policy_class, c.to_trigger()["priority"]) == (["viewed_not_carted"], "marketing", "low")


@pytest.mark.parametrize("cancel", [ev("add_to_cart", at(hours=2), product_id="p9"),
                                    ev("order_placed", at(hours=3), items=[{"product_id": "p9", "quantity": 1,
                                                                            "price": 5.0}])])
def test_browse_carted_or_bought_within_the_wait_sends_nothing(cancel):
    events = [ev("product_view", at(m), product_id="p9") for m in (0, 10, 20)] + [cancel]
    check("browse_abandonment", events, ms_at(days=2), [])


def test_browse_views_spread_over_more_than_the_window_do_not_count_and_other_products_stay_apart():
    events = [ev("product_view", at(hours=h), product_id="p1") for h in (0, 1, 26)]
    events += [ev("product_view", at(hours=h, minutes=5), product_id="p2") for h in (0, 1, 2)]
    events.append(ev("order_placed", at(hours=3), items=[{"product_id": "p1", "quantity": 1, "price": 1.0}]))
    check("browse_abandonment", sorted(events, key=lambda e: e.ts), ms_at(days=3),
          [(ms_at(hours=2, minutes=5) + 4 * HOUR, "p2")])


def test_browse_a_view_exactly_a_window_old_no_longer_counts():
    views = lambda *h: [ev("product_view", at(hours=x), product_id="p9") for x in h]  # noqa: E731
    check("browse_abandonment", views(0, 12, 24), ms_at(days=3), [])
    check("browse_abandonment", views(0, 12, 23.99), ms_at(days=3), [(ms_at(hours=23.99) + 4 * HOUR, "p9")])


def test_browse_a_view_within_the_wait_moves_it():
    events = [ev("product_view", at(hours=h), product_id="p9") for h in (0, 1, 2, 5)]
    check("browse_abandonment", events, ms_at(days=2), [(ms_at(hours=9), "p9")])


# --------------------------------------------------------------------------- post_purchase_review

def test_review_seven_days_after_the_last_delivery_unless_returned():
    events = [ev("order_placed", at(0), order_id="o1"), ev("order_placed", at(1), order_id="o2"),
              ev("order_delivered", at(days=2), order_id="o1"), ev("order_delivered", at(days=2, hours=1), order_id="o2"),
              ev("return_requested", at(days=4), order_id="o2")]
    check("post_purchase_review", events, ms_at(days=20), [(ms_at(days=9), "o1")])


def test_review_split_delivery_waits_for_the_last_parcel_and_a_refund_after_it_fired_changes_nothing():
    events = [ev("order_delivered", at(days=2), shipment_id="s1"), ev("order_delivered", at(days=3), shipment_id="s2"),
              ev("refund_issued", at(days=11))]
    check("post_purchase_review", events, ms_at(days=20), [(ms_at(days=10), "o1")])


# --------------------------------------------------------------------------- win_back

def test_win_back_sixty_days_after_the_last_order_and_again_after_a_later_one():
    events = [ev("order_placed", at(0), order_id="o1"), ev("order_placed", at(days=30), order_id="o2"),
              ev("page_view", at(days=95)), ev("order_placed", at(days=100), order_id="o3")]
    check("win_back", events, ms_at(days=170), [(ms_at(days=90), "c1"), (ms_at(days=160), "c1")])
    m = machine("win_back")
    m.feed(*events[:2])
    m.advance(ms_at(days=91))
    assert m.candidates()[0].payload == {"last_order_id": "o2", "last_order_at": "2026-02-04T10:00:00.000Z",
                                         "last_order_total": 50.0}


def test_win_back_an_order_exactly_at_the_due_time_still_counts_as_within():
    events = [ev("order_placed", at(0), order_id="o1"), ev("order_placed", at(days=60), order_id="o2")]
    check("win_back", events, ms_at(days=100), [])


def test_win_back_days_are_a_setting():
    events = [ev("order_placed", at(0))]
    assert run("win_back", events, ms_at(days=20), win_back={"after": timedelta(days=14)}) == [(ms_at(days=14), "c1")]


# --------------------------------------------------------------------------- support_sla_breach

def test_sla_a_customer_message_unanswered_fifteen_minutes_breaches_once_until_a_reply():
    events = [ev("chat_message", at(0)), ev("chat_message", at(5)), ev("chat_message", at(30)),
              ev("chat_message", at(40), sender="agent", text="hi"), ev("chat_message", at(50)),
              ev("chat_message", at(60), sender="bot", text="we are busy")]
    check("support_sla_breach", events, ms_at(hours=3), [(ms_at(15), "conv1"), (ms_at(65), "conv1")])
    m = machine("support_sla_breach")
    m.feed(*events)
    m.advance(ms_at(hours=3))
    first = m.candidates()[0]
    assert first.payload == {"conversation_id": "conv1", "waiting_since": "2026-01-05T10:00:00.000Z",
                             "messages_waiting": 2}
    assert (first.policy_class, first.to_trigger()["priority"]) == ("service", "high")


def test_sla_a_reply_in_time_or_a_closed_chat_sends_nothing():
    events = [ev("chat_message", at(0)), ev("chat_message", at(14), sender="agent", text="hello"),
              ev("chat_message", at(20), conversation_id="conv2"), ev("chat_closed", at(25), conversation_id="conv2")]
    check("support_sla_breach", events, ms_at(hours=3), [])


# --------------------------------------------------------------------------- satisfaction_survey

def test_survey_an_hour_after_a_close_without_csat():
    events = [ev("chat_message", at(0)), ev("chat_closed", at(10)),
              ev("chat_message", at(0), conversation_id="conv2"), ev("chat_closed", at(12), conversation_id="conv2", csat=5)]
    events.sort(key=lambda e: e.ts)
    check("satisfaction_survey", events, ms_at(hours=5), [(ms_at(70), "conv1")])


def test_survey_the_customer_writing_again_cancels_it():
    events = [ev("chat_closed", at(10)), ev("chat_message", at(40))]
    check("satisfaction_survey", events, ms_at(hours=5), [])


# --------------------------------------------------------------------------- oracles on generated histories

CHOICES = {
    "browse_abandonment": lambda d, p, o: [ev("product_view", d, product_id=p), ev("product_view", d, product_id=p),
                                           ev("add_to_cart", d, product_id=p),
                                           ev("order_placed", d, order_id=o, items=[{"product_id": p, "quantity": 1,
                                                                                      "price": 1.0}])],
    "post_purchase_review": lambda d, p, o: [ev("order_delivered", d, order_id=o), ev("order_delivered", d, order_id=o),
                                             ev("return_requested", d, order_id=o), ev("refund_issued", d, order_id=o),
                                             ev("order_shipped", d, order_id=o)],
    "win_back": lambda d, p, o: [ev("order_placed", d, order_id=o), ev("page_view", d)],
    "support_sla_breach": lambda d, p, o: [ev("chat_message", d, conversation_id=p),
                                           ev("chat_message", d, conversation_id=p),
                                           ev("chat_message", d, conversation_id=p, sender="agent", text="a"),
                                           ev("chat_message", d, conversation_id=p, sender="bot", text="b"),
                                           ev("chat_closed", d, conversation_id=p)],
    "satisfaction_survey": lambda d, p, o: [ev("chat_closed", d, conversation_id=p),
                                            ev("chat_closed", d, conversation_id=p, csat=4),
                                            ev("chat_message", d, conversation_id=p)],
}
GAPS = {"browse_abandonment": [1, 30, 120, 300, 720, 1440], "post_purchase_review": [60, 2 * 1440, 6 * 1440, 9 * 1440],
        "win_back": [1440, 20 * 1440, 59 * 1440, 61 * 1440], "support_sla_breach": [1, 5, 14, 16, 40],
        "satisfaction_survey": [5, 30, 59, 61, 200]}


def history(type: str):
    step = st.tuples(st.sampled_from(GAPS[type]), st.sampled_from(["p1", "p2"]), st.sampled_from(["o1", "o2"]),
                     st.integers(0, 4))
    return st.lists(step, min_size=1, max_size=25)


@pytest.mark.parametrize("type", sorted(ORACLES))
def test_the_rule_agrees_with_its_oracle_on_generated_histories(type):
    @hsettings(max_examples=60, deadline=None)
    @given(history(type))
    def agree(steps):
        minutes, events = 0, []
        for gap, p, o, pick in steps:
            minutes += gap
            options = CHOICES[type](at(minutes), p, o)
            events.append(options[pick % len(options)])
        end = ms_at(minutes) + 90 * DAY
        assert run(type, events, end) == ORACLES[type](events, end)

    agree()


# --------------------------------------------------------------------------- policy

def test_a_catalogue_rules_cooldown_and_priority_reach_policy():
    s = load_settings(rules={"enabled": ["browse_abandonment", "support_sla_breach"]})
    cfg, state = PolicyConfig(s), PolicyState()
    assert cfg.cooldown["browse_abandonment"] == DAY and "support_sla_breach" not in cfg.cooldown
    state.consent.add(0, "all", "marketing", True)
    m = Machine(RuleConfig(s))
    m.feed(*[ev("product_view", at(m_), product_id="p1") for m_ in (0, 1, 2)],
           *[ev("product_view", at(hours=8, minutes=m_), product_id="p2") for m_ in (0, 1, 2)])
    m.advance(ms_at(days=1))
    first, second = m.candidates()
    assert state.decide(first, cfg)[0] is first
    assert isinstance(state.decide(second, cfg)[0], Suppressed) and state.decide(second, cfg)[0].reason == "cooldown"
    assert first.to_trigger()["priority"] == "low"


def test_policy_counts_a_shops_marketing_type_towards_the_cap():
    cfg, state = PolicyConfig(load_settings(quiet_hours={"enabled": False})), PolicyState()
    state.consent.add(0, "all", "marketing", True)
    sent = [state.decide(Candidate(t, "c1", ms_at(i), ["r"], {}, str(i), policy_class="marketing"), cfg)[0]
            for i, t in enumerate(["win_back", "post_purchase_review", "browse_abandonment"])]
    assert [type(s).__name__ for s in sent] == ["Candidate", "Candidate", "Suppressed"]
    assert sent[2].reason == "marketing_cap"


def test_the_catalogue_is_off_by_default():
    cfg = RuleConfig(load_settings())
    assert [r.name for r in cfg.rules] == ["abandoned_cart", "delay_apology", "escalation", "proactive_outreach"]
    assert set(cfg.definitions) == set(ORACLES)


# --------------------------------------------------------------------------- config/examples/catalogue.toml

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "examples" / "catalogue.toml"
CATALOGUE = ["browse_abandonment", "post_purchase_review", "win_back", "support_sla_breach", "satisfaction_survey",
             "price_drop", "back_in_stock"]
ON_CATALOG_TOPIC = ("price_drop", "back_in_stock")  # hand-written rules on crm.catalog (branch wip-catalog)


def test_the_example_turns_the_whole_catalogue_on():
    """Needs price_drop and back_in_stock registered (wip-catalog): every rule the example names loads."""
    settings = load_settings(EXAMPLE)
    assert set(CATALOGUE) <= set(settings.rules.enabled)
    assert {r.name for r in RuleConfig(settings).rules} >= set(CATALOGUE)


def test_a_replay_of_a_generated_month_with_the_example_emits_every_declared_catalogue_type(tmp_path):
    from flows.replay import ReplayOutputs, replay
    from flows.generator import generate

    generate(400, 30, 7, tmp_path)
    settings = load_settings(EXAMPLE)
    enabled = [n for n in settings.rules.enabled if n not in ON_CATALOG_TOPIC]
    settings = settings.model_copy(update={"rules": settings.rules.model_copy(update={"enabled": enabled})})
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json")
    summary = replay(settings, [tmp_path / "events.jsonl"], out)
    for type in ORACLES:
        assert summary["triggers"].get(type, 0) > 0, type
    import json

    from jsonschema import Draft202012Validator

    schemas = Path(__file__).resolve().parents[1] / "config" / "schemas"
    trigger = Draft202012Validator(json.loads((schemas / "trigger.schema.json").read_text()))
    for line in out.triggers.read_bytes().splitlines():
        assert not list(trigger.iter_errors(json.loads(line))), line
    summary_schema = Draft202012Validator(json.loads((schemas / "summary.schema.json").read_text()))
    assert not list(summary_schema.iter_errors(json.loads(out.summary.read_bytes())))
    assert set(summary["stale_if_live"]) >= {"browse_abandonment", "win_back", "abandoned_cart"}


def test_explain_shows_a_catalogue_rules_episodes_and_why_it_did_not_fire():
    from flows.explain import timeline, why

    s = load_settings(rules={"enabled": ["browse_abandonment"]})
    events = [ev("product_view", at(m), product_id="p9") for m in (0, 10)] + [ev("add_to_cart", at(30), product_id="p9")]
    rows = timeline(s, events, ms_at(days=1))
    assert rows[0]["changed"]["browse_abandonment episodes"] == [None, {"p9": "1 of 3"}]
    assert rows[1]["changed"]["browse_abandonment episodes"] == [{"p9": "1 of 3"}, {"p9": "2 of 3"}]
    assert rows[2]["changed"]["browse_abandonment episodes"] == [{"p9": "2 of 3"}, {}]
    assert "saw 2 of its events but never came due" in why("browse_abandonment", events, rows, [], [], s)
    assert why("win_back", events, rows, [], [], s) == "the win_back rule is not enabled (CRM_RULES__ENABLED, or the settings file given with --config)"
    s = load_settings(rules={"enabled": ["win_back"]})
    assert "never started: none of its events (order_placed)" in why("win_back", events, rows, [], [], s)


@pytest.mark.parametrize("type", sorted(ORACLES))
def test_arrival_order_within_lateness_does_not_change_what_fires(type):
    """CONTRACT.md, Time: events shuffled within ``lateness`` (5 min) give the same triggers as in ts order."""
    @hsettings(max_examples=30, deadline=None)
    @given(history(type), st.lists(st.integers(0, 4 * MIN), min_size=25, max_size=25))
    def same(steps, delays):
        minutes, events = 0, []
        for gap, p, o, pick in steps:
            minutes += gap
            options = CHOICES[type](at(minutes), p, o)
            events.append(options[pick % len(options)])
        end = ms_at(minutes) + 90 * DAY
        arrived = sorted(events, key=lambda e: e.ts + delays[events.index(e)])
        got = []
        for order in (events, arrived):
            m = Machine(RuleConfig(load_settings(rules={"enabled": [type]})), lateness_ms=None)
            assert set(m.feed(*order)) == {"ok"}
            m.advance(end)
            got.append(sorted(fired(m, type)))
        assert got[0] == got[1] == ORACLES[type](events, end)

    same()
