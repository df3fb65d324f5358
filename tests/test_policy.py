"""Every clause of the anti-spam policy, in event time."""

import pytest
from helpers import ms_at

from config.settings import load_settings
from operators.policy import PolicyConfig, PolicyState
from operators.messages import Candidate, Notice, Suppressed, priority

CFG = PolicyConfig()


def cand(type, ts, key=None, score=None, threshold=None, tier="regular"):
    return Candidate(type, "c1", ts, ["r"], {}, key or f"{type}|{ts}", tier=tier, score=score, threshold=threshold)


def decide(state, item, cfg=CFG):
    out = state.decide(item, cfg)
    if not out:
        return None
    return out[0].reason if isinstance(out[0], Suppressed) else "emitted"


def test_apology_suppresses_marketing_23h_later_but_not_25h_later():
    s = PolicyState()
    assert decide(s, cand("delay_apology", ms_at(0), key="o1")) == "emitted"
    assert decide(s, cand("abandoned_cart", ms_at(hours=23))) == "apology_quiet"
    assert decide(s, cand("abandoned_cart", ms_at(hours=25))) == "emitted"


def test_open_escalation_suppresses_marketing_until_the_conversation_closes():
    s = PolicyState()
    assert decide(s, cand("escalation", ms_at(0), key="conv1")) == "emitted"
    assert decide(s, cand("proactive_outreach", ms_at(hours=1))) == "escalation_open"
    assert decide(s, Notice("conversation_closed", "c1", ms_at(hours=2), "conv1")) is None
    assert decide(s, cand("proactive_outreach", ms_at(hours=3))) == "emitted"


def test_closing_a_conversation_that_was_never_escalated_changes_nothing():
    s = PolicyState()
    decide(s, cand("escalation", ms_at(0), key="conv1"))
    decide(s, Notice("conversation_closed", "c1", ms_at(1), "other"))
    assert decide(s, cand("abandoned_cart", ms_at(2))) == "escalation_open"


def test_cooldowns_per_type():
    s = PolicyState()
    assert decide(s, cand("abandoned_cart", ms_at(0))) == "emitted"
    assert decide(s, cand("abandoned_cart", ms_at(hours=23, minutes=59))) == "cooldown"
    assert decide(s, cand("abandoned_cart", ms_at(hours=24, minutes=1))) == "emitted"
    s = PolicyState()
    assert decide(s, cand("proactive_outreach", ms_at(0))) == "emitted"
    assert decide(s, cand("proactive_outreach", ms_at(days=6))) == "cooldown"
    assert decide(s, cand("proactive_outreach", ms_at(days=7))) == "emitted"


def test_marketing_cap_counts_both_marketing_types():
    cfg = PolicyConfig(load_settings(policy={"cooldown": {"abandoned_cart": 60, "proactive_outreach": 60}}))
    s = PolicyState()
    assert decide(s, cand("abandoned_cart", ms_at(0)), cfg) == "emitted"
    assert decide(s, cand("proactive_outreach", ms_at(hours=1)), cfg) == "emitted"
    assert decide(s, cand("abandoned_cart", ms_at(hours=5)), cfg) == "marketing_cap"
    assert decide(s, cand("proactive_outreach", ms_at(hours=23)), cfg) == "marketing_cap"
    # The first one left the rolling 24 h window: one slot is free again.
    assert decide(s, cand("abandoned_cart", ms_at(hours=24, minutes=1)), cfg) == "emitted"


def test_suppressed_candidates_do_not_count_towards_cap_or_cooldown():
    s = PolicyState()
    decide(s, cand("delay_apology", ms_at(0), key="o1"))
    assert decide(s, cand("abandoned_cart", ms_at(hours=1))) == "apology_quiet"
    assert decide(s, cand("abandoned_cart", ms_at(hours=25))) == "emitted"


def test_service_triggers_are_never_suppressed_or_capped():
    s = PolicyState()
    decide(s, cand("escalation", ms_at(0), key="conv1"))
    for i in range(5):
        assert decide(s, cand("delay_apology", ms_at(minutes=i), key=f"o{i}")) == "emitted"
    assert decide(s, cand("escalation", ms_at(10), key="conv2")) == "emitted"


def test_one_escalation_per_conversation_whatever_the_reason():
    s = PolicyState()
    assert decide(s, cand("escalation", ms_at(0), key="conv1")) == "emitted"
    assert decide(s, cand("escalation", ms_at(1), key="conv1", score=0.95)) is None


def test_model_candidates_need_the_score_to_reach_the_threshold():
    s = PolicyState()
    assert decide(s, cand("proactive_outreach", ms_at(0), score=0.69, threshold=0.7)) is None
    assert decide(s, cand("proactive_outreach", ms_at(0), score=None, threshold=0.7)) is None
    assert decide(s, cand("proactive_outreach", ms_at(0), score=0.7, threshold=0.7)) == "emitted"


def test_priority_rises_with_tier_and_score():
    assert priority("abandoned_cart", "new", None) == "low"
    assert priority("abandoned_cart", "regular", None) == "normal"
    assert priority("abandoned_cart", "vip", 0.95) == "urgent"
    assert priority("escalation", "new", 0.5) == "normal"
    assert priority("escalation", "vip", None) == "urgent"
    assert priority("proactive_outreach", "new", 0.92) == "normal"


def test_policy_state_pickles():
    import pickle

    s = PolicyState()
    decide(s, cand("abandoned_cart", ms_at(0)))
    clone = pickle.loads(pickle.dumps(s))
    assert decide(clone, cand("abandoned_cart", ms_at(1))) == "cooldown"


@pytest.mark.parametrize("given", ["environment", "file"])
def test_overriding_one_types_cooldown_keeps_the_others(given, monkeypatch, tmp_path):
    """`CRM_POLICY__COOLDOWN__ABANDONED_CART` (or a file's `[policy.cooldown]` with that key alone)
    changes the cart's cooldown; proactive_outreach keeps its 7 days (it once had none at all)."""
    cfg_file = None
    if given == "environment":
        monkeypatch.setenv("CRM_POLICY__COOLDOWN__ABANDONED_CART", "3600")
    else:
        cfg_file = tmp_path / "crm.toml"
        cfg_file.write_text("[policy.cooldown]\nabandoned_cart = 3600\n")
    cfg = PolicyConfig(load_settings(cfg_file))
    s = PolicyState()
    assert decide(s, cand("proactive_outreach", ms_at(0)), cfg) == "emitted"
    assert decide(s, cand("proactive_outreach", ms_at(days=6)), cfg) == "cooldown"
    assert decide(s, cand("abandoned_cart", ms_at(days=6, hours=1)), cfg) == "emitted"
    assert decide(s, cand("abandoned_cart", ms_at(days=6, hours=1, minutes=59)), cfg) == "cooldown"  # 1 h, not 1 d
    assert decide(s, cand("abandoned_cart", ms_at(days=6, hours=2, minutes=1)), cfg) == "emitted"
    assert decide(s, cand("proactive_outreach", ms_at(days=7, hours=3)), cfg) == "emitted"
