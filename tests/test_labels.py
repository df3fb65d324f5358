"""Label resolution through the customer state machine (CONTRACT "Labels for the online models")."""

import math

import pytest
from helpers import at, ev, ms_at

from operators.customer import CustomerState
from operators.features import DAY, churn_horizon
from operators.rules import RuleConfig
from operators.messages import Label, ScoreRequest

CFG = RuleConfig()


def run(*events, until=None):
    state = CustomerState(events[0].customer_id)
    out = []
    for e in events:
        out.extend(state.process(e, CFG)[0])
    # end of input (a replay's end): what is held applies, timers due by ``until`` fire
    out.extend(state.flush(max(e.ts for e in events) if until is None else until, CFG))
    return state, out


def labels(out, model):
    return {x.decision_id: x for x in out if type(x) is Label and x.model == model}


def decisions(out, model):
    return [x for x in out if type(x) is ScoreRequest and x.model == model and x.decision]


# ------------------------------------------------------------------ churn


def session_end_id():
    return f"c1|{ms_at(minutes=30)}|session_end"


def test_session_end_is_a_churn_decision_point():
    _, out = run(ev("page_view", at(0)), until=ms_at(minutes=30))
    (req,) = decisions(out, "churn")
    assert req.decision_id == session_end_id()
    assert req.ts == ms_at(minutes=30)
    assert req.features["decision_session_end"] == 1.0


def test_a_new_customers_horizon_is_four_prior_gaps():
    # one active day, no tenure: the prior's rhythm (an active day every 3 days) x 4 = about 12 days
    _, out = run(ev("page_view", at(0)), ev("page_view", at(days=11)))
    got = labels(out, "churn")
    lab = got[session_end_id()]
    assert lab.label == 0
    assert lab.ts == ms_at(days=11)  # known as soon as the customer is back
    assert lab.decided_ts == ms_at(minutes=30)
    # the re-score after 7 quiet days was a decision point too, answered by the return
    assert got[f"c1|{ms_at(days=7)}|inactive"].label == 0


def test_customer_back_after_the_horizon_churned():
    _, out = run(ev("page_view", at(0)), ev("page_view", at(days=13)))
    lab = labels(out, "churn")[session_end_id()]
    assert lab.label == 1
    # due 4 x (3 days + the 30 min of tenure at the decision) = 12 days 2 h after the decision point
    assert lab.ts == ms_at(minutes=30, days=12, hours=2)
    assert session_end_id() in {r.decision_id for r in decisions(out, "churn")}


def test_horizon_follows_the_customers_own_rhythm():
    # active every day for 20 days: 20 active days over 20 days of tenure -> a gap of ~1.15 days
    daily = [ev("page_view", at(days=d), event_id=f"e{d}") for d in range(21)]
    state, out = run(*daily, until=ms_at(days=26))
    last = f"c1|{ms_at(days=20, minutes=30)}|session_end"
    lab = labels(out, "churn")[last]
    assert lab.label == 1 and ms_at(days=24) < lab.ts < ms_at(days=25)  # ~4.6 days of silence
    # someone gone a long time gets a long horizon, never beyond labels.churn_horizon (90 days)
    h = state.history
    gone = churn_horizon(h, ms_at(0), ms_at(days=400), CFG.churn_horizon_min, CFG.churn_horizon, 4.0)
    assert gone == pytest.approx(4 * 403 / 21 * DAY, rel=1e-6)  # 21 active days in 400: a gap of 19 days
    assert churn_horizon(h, ms_at(0), ms_at(days=800), CFG.churn_horizon_min, CFG.churn_horizon, 4.0) \
        == CFG.churn_horizon
    assert churn_horizon(h, ms_at(0), ms_at(days=20), CFG.churn_horizon_min, CFG.churn_horizon, 100.0) \
        == CFG.churn_horizon
    assert churn_horizon(h, ms_at(0), ms_at(days=20), CFG.churn_horizon_min, CFG.churn_horizon, 0.1) \
        == CFG.churn_horizon_min


def test_churn_label_carries_the_decision_features():
    _, out = run(ev("page_view", at(0)), ev("page_view", at(days=31)))
    req = next(r for r in decisions(out, "churn") if r.decision_id == session_end_id())
    carried = labels(out, "churn")[session_end_id()].features  # kept packed while pending: equal, in order
    assert carried == req.features and list(carried) == list(req.features)
    assert req.features["_horizon_days"] == pytest.approx(12 + 2 / 24)


def test_churned_by_time_alone_when_nothing_comes_back():
    _, out = run(ev("page_view", at(0)), until=ms_at(days=12, hours=2, minutes=30))
    assert labels(out, "churn")[session_end_id()].label == 1
    _, out = run(ev("page_view", at(0)), until=ms_at(days=12, hours=2, minutes=29))
    assert session_end_id() not in labels(out, "churn")


def test_order_placed_is_a_decision_point_labelled_by_the_next_event():
    _, out = run(ev("order_placed", at(0), order_id="o1"), ev("order_shipped", at(days=1), order_id="o1"))
    did = f"c1|{ms_at(0)}|order_placed"
    assert did in {r.decision_id for r in decisions(out, "churn")}
    assert labels(out, "churn")[did].label == 0
    req = next(r for r in decisions(out, "churn") if r.decision_id == did)
    assert req.features["_btyd_x"] == 0.0 and req.features["_btyd_T"] == 0.0  # BG/NBD's clock starts


def test_rescore_every_7_days_of_inactivity_within_the_longest_horizon():
    _, out = run(ev("order_placed", at(0), order_id="o1"), until=ms_at(days=200))
    inactive = [r for r in decisions(out, "churn") if r.decision_id.endswith("|inactive")]
    assert [r.ts for r in inactive] == [ms_at(days=d) for d in range(7, 90, 7)]
    assert [r.features["recency_log"] for r in inactive] == sorted(r.features["recency_log"] for r in inactive)
    assert all(lab.label == 1 for lab in labels(out, "churn").values())
    # replay: no payload-only refreshes (only a live profile is read between events)
    assert not [r for r in out if type(r) is ScoreRequest and not r.decision]


def test_live_refreshes_the_score_daily_while_the_customer_stays_away():
    live = RuleConfig()
    live.churn_refresh = live.refresh_every
    state = CustomerState("c1")
    out = state.process(ev("order_placed", at(0), order_id="o1"), live)[0]
    out += state.flush(ms_at(days=120), live)
    refresh = [r for r in out if type(r) is ScoreRequest and r.model == "churn" and not r.decision]
    decided = [r.ts for r in decisions(out, "churn") if r.decision_id.endswith("|inactive")]
    assert decided == [ms_at(days=d) for d in range(7, 90, 7)]  # the labelled ones, as in replay
    # every other day, beyond the horizon too, a score without label or trigger
    assert [r.ts for r in refresh] == [ms_at(days=d) for d in range(1, 121) if d % 7 or d >= 90]
    assert all(r.candidate is None for r in refresh)
    # a refresh the customer's return has overtaken is not scored
    state = CustomerState("c2")
    state.process(ev("order_placed", at(0), customer_id="c2", order_id="o1"), live)
    out = state.process(ev("page_view", at(days=5), customer_id="c2"), live)[0]
    assert not [r for r in out if type(r) is ScoreRequest and not r.decision]


def test_a_refresh_describes_the_customer_at_its_time():
    state, _ = run(ev("order_placed", at(0), order_id="o1"), until=ms_at(days=1))
    req = state.churn_refresh(ms_at(days=300), CFG)
    assert not req.decision and req.candidate is None and req.ts == ms_at(days=300)
    assert req.features["recency_log"] == pytest.approx(math.log1p(300))
    assert req.features["_btyd_T"] == pytest.approx(300.0)


# ------------------------------------------------------------------ frustration


def chat(*closing, texts=("where is my order?", "hello??")):
    events = [ev("chat_message", at(i), text=t) for i, t in enumerate(texts)]
    events.append(ev("chat_message", at(len(texts)), sender="agent", text="on it"))
    return events + list(closing)


@pytest.mark.parametrize("fields,label", [
    ({"escalated": True}, 1),
    ({"escalated": True, "csat": 5}, 1),
    ({"csat": 2}, 1),
    ({"csat": 1, "escalated": False}, 1),
    ({"csat": 3}, 0),
    ({"csat": 5, "escalated": False}, 0),
    ({}, 0),
])
def test_frustration_label_is_the_conversation_outcome(fields, label):
    _, out = run(*chat(ev("chat_closed", at(10), **fields)))
    reqs = decisions(out, "frustration")
    got = labels(out, "frustration")
    assert len(reqs) == 2  # one decision point per customer message, none for the agent's
    assert {r.decision_id for r in reqs} == set(got)
    assert all(lab.label == label and lab.ts == ms_at(10) for lab in got.values())


def test_frustration_label_1_when_the_conversation_is_left_for_24_hours():
    _, out = run(*chat(), until=ms_at(hours=24, minutes=2))
    got = labels(out, "frustration")
    assert len(got) == 2 and all(lab.label == 1 for lab in got.values())
    assert all(lab.ts == ms_at(hours=24, minutes=2) for lab in got.values())  # 24 h after the last message
    _, out = run(*chat(), until=ms_at(hours=24, minutes=1))
    assert not labels(out, "frustration")


def test_frustration_label_features_are_the_message_features():
    _, out = run(*chat(ev("chat_closed", at(10), csat=1)))
    reqs = {r.decision_id: r.features for r in decisions(out, "frustration")}
    assert all(lab.features is reqs[d] for d, lab in labels(out, "frustration").items())
