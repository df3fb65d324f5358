"""The rule interface (operators/ruleset.py): dispatch by event type, one due time over all rules,
named state slices, policy classes, the ``crm_stream.rules`` registry and ``rules.enabled``."""

from __future__ import annotations

import pickle
import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest

from helpers import Machine, at, ev, ms_at
from config.settings import SettingsError, load_settings
from operators import registry
from operators.contract_rules import CONTRACT_RULES
from operators.policy import PolicyConfig, PolicyState
from operators.rules import RuleConfig
from operators.ruleset import MARKETING, NEVER, SERVICE, Rule, Slice
from operators.messages import Candidate, Suppressed

GOLDEN = Path(__file__).resolve().parent / "golden"


class Views(Slice):
    __slots__ = ("first", "n")

    def __init__(self) -> None:
        self.first = None
        self.n = 0


class BrowseNudge(Rule):
    """A shop's own rule: a page viewed, then nothing for an hour since the first view."""

    name = "browse_nudge"
    types = frozenset({"page_view"})
    policy_class = MARKETING
    timed = True
    calls: list = []

    def new_slice(self) -> Views:
        return Views()

    def on_event(self, ctx, s, ev, late, cfg, out):
        BrowseNudge.calls.append(ev.type)
        s.n += 1
        if s.first is None:
            s.first = ev.ts

    def next_due(self, ctx, s, cfg):
        return s.first + 3_600_000 if s is not None and s.first is not None else NEVER

    def on_timer(self, ctx, s, due, cfg, out):
        out.append(Candidate("browse_nudge", ctx.customer_id, due, [f"views_{s.n}"], {}, key=str(due),
                             tier=ctx.tier(cfg), policy_class=self.policy_class))
        s.first = None


class Broken(Rule):
    name = "broken"

    def __init__(self, cfg):
        raise RuntimeError("no such table")


@pytest.fixture
def shop_rules(monkeypatch):
    """``browse_nudge`` and ``broken`` registered as a shop's package would, by entry point."""
    eps = [EntryPoint("browse_nudge", "test_rule_interface:BrowseNudge", registry.GROUP),
           EntryPoint("broken", "test_rule_interface:Broken", registry.GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == registry.GROUP else [])
    BrowseNudge.calls = []


def config(*enabled: str) -> RuleConfig:
    cfg = RuleConfig(load_settings(rules={"enabled": list(enabled)}))
    cfg.lateness = 0
    return cfg


def test_the_contract_rules_are_registered_under_the_entry_point_group():
    assert {ep.name for ep in entry_points(group=registry.GROUP)} >= {r.name for r in CONTRACT_RULES}
    for ep in entry_points(group=registry.GROUP):
        if ep.name in registry.builtin_rules():
            assert ep.load() is registry.builtin_rules()[ep.name]


def test_a_shops_rule_gets_only_its_event_types_and_its_timer_fires(shop_rules):
    m = Machine(config("abandoned_cart", "browse_nudge"))
    m.feed(ev("page_view", at(0)), ev("product_view", at(1)), ev("add_to_cart", at(2)), ev("page_view", at(10)))
    assert BrowseNudge.calls == ["page_view", "page_view"]
    assert m.state.next_deadline(m.cfg) == ms_at(32) + 1  # the cart's timer is the earliest of the two
    m.advance(ms_at(hours=2))
    assert [c.type for c in m.candidates()] == ["abandoned_cart", "browse_nudge"]
    nudge = m.candidates("browse_nudge")[0]
    assert (nudge.event_ts, nudge.reasons, nudge.policy_class) == (ms_at(60), ["views_2"], MARKETING)
    assert nudge.to_trigger()["priority"] == "low"


def test_a_rule_switched_off_sends_nothing_and_arms_no_timer():
    m = Machine(config("delay_apology", "escalation", "proactive_outreach"))
    m.feed(ev("add_to_cart", at(0)))
    assert "abandoned_cart" not in m.state.slices and m.state.cart
    m.advance(ms_at(hours=2))
    assert m.candidates("abandoned_cart") == []


def test_marketing_policy_applies_by_class_not_by_type():
    s, cfg = PolicyState(), PolicyConfig()
    assert len(s.decide(Candidate("delay_apology", "c1", ms_at(0), ["r"], {}, "o1"), cfg)) == 2
    own = Candidate("back_in_stock", "c1", ms_at(1), ["r"], {}, "p1", policy_class=MARKETING)
    assert isinstance(s.decide(own, cfg)[0], Suppressed)  # the apology's quiet period holds it back
    sla = Candidate("support_sla_breach", "c1", ms_at(2), ["r"], {}, "conv1", policy_class=SERVICE)
    assert s.decide(sla, cfg)[0] is sla
    assert sla.to_trigger()["priority"] == "normal"  # service starts one step above marketing


@pytest.mark.parametrize("enabled, words", [(["abandoned_cart", "nope"], "'nope'"),
                                            (["broken"], "'broken' failed to load: RuntimeError: no such table")])
def test_a_bad_rule_fails_at_start_naming_it(shop_rules, enabled, words):
    with pytest.raises(SettingsError) as err:
        RuleConfig(load_settings(rules={"enabled": enabled}))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_rule_listed_twice_is_a_bad_setting():
    with pytest.raises(SettingsError, match="CRM_RULES__ENABLED.*'escalation' is listed twice"):
        load_settings(rules={"enabled": ["escalation", "escalation"]})


def test_the_cli_refuses_an_unknown_rule_in_one_line(tmp_path):
    env = {"CRM_RULES__ENABLED": '["abandoned_cart", "win_bak"]', "PATH": ""}
    log = tmp_path / "e.jsonl"
    log.write_text("")
    res = subprocess.run([sys.executable, "-m", "flows.cli", "replay", str(log), "--triggers-out", str(tmp_path / "t"),
                          "--dlq-out", str(tmp_path / "d"), "--summary", str(tmp_path / "s")],
                         capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "unknown rule 'win_bak'" in res.stderr


def test_slices_are_pickled_by_name_and_a_rule_added_since_starts_fresh(shop_rules):
    cfg = config("abandoned_cart", "browse_nudge")
    old = pickle.loads((GOLDEN / "customer_state_v0.pickle").read_bytes())["cart"]  # before rules existed
    m = Machine(cfg, customer="cart")
    m.state = pickle.loads(pickle.dumps(old))
    assert set(m.state.slices) == {"abandoned_cart"}
    m.feed(ev("page_view", at(5), customer="cart"))
    assert m.state.slices["browse_nudge"].n == 1
    state, facts, slices = m.state.__getstate__()
    assert state == 2 and set(slices) == {"abandoned_cart", "browse_nudge"}
    m.state = pickle.loads(pickle.dumps(m.state))
    m.cfg = config("abandoned_cart")  # browse_nudge switched off: its slice waits, unused
    m.advance(ms_at(hours=3))
    assert [c.type for c in m.candidates()] == ["abandoned_cart"]
