"""Label resolution through the customer state machine (CONTRACT "Labels for the online models")."""

import pytest
from helpers import at, ev, ms_at

from operators.customer import CustomerState
from operators.rules import RuleConfig
from operators.scoring import Label, ScoreRequest

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


def test_customer_back_on_day_29_is_not_churned():
    _, out = run(ev("page_view", at(0)), ev("page_view", at(days=29)))
    got = labels(out, "churn")
    lab = got[session_end_id()]
    assert lab.label == 0
    assert lab.ts == ms_at(days=29)  # known as soon as the customer is back
    assert lab.decided_ts == ms_at(minutes=30)
    # the re-scores after 7, 14, 21 and 28 quiet days were decision points too, all answered by the return
    inactive = [d for d in got if d.endswith("|inactive")]
    assert len(inactive) == 4 and all(got[d].label == 0 for d in inactive)


def test_customer_back_on_day_31_churned():
    _, out = run(ev("page_view", at(0)), ev("page_view", at(days=31)))
    lab = labels(out, "churn")[session_end_id()]
    assert lab.label == 1
    assert lab.ts == ms_at(minutes=30, days=30)  # due 30 days after the decision point
    # the day-7 re-score is only 24 days old on day 31: the return answers it with 0
    assert labels(out, "churn")[f"c1|{ms_at(days=7)}|inactive"].label == 0


def test_churn_label_carries_the_decision_features():
    _, out = run(ev("page_view", at(0)), ev("page_view", at(days=31)))
    req = next(r for r in decisions(out, "churn") if r.decision_id == session_end_id())
    assert labels(out, "churn")[session_end_id()].features is req.features


def test_churned_by_time_alone_when_nothing_comes_back():
    _, out = run(ev("page_view", at(0)), until=ms_at(days=30, minutes=30))
    assert labels(out, "churn")[session_end_id()].label == 1
    _, out = run(ev("page_view", at(0)), until=ms_at(days=30, minutes=29))
    assert session_end_id() not in labels(out, "churn")


def test_order_placed_is_a_decision_point_labelled_by_the_next_event():
    _, out = run(ev("order_placed", at(0), order_id="o1"), ev("order_shipped", at(days=1), order_id="o1"))
    did = f"c1|{ms_at(0)}|order_placed"
    assert did in {r.decision_id for r in decisions(out, "churn")}
    assert labels(out, "churn")[did].label == 0


def test_rescore_every_7_days_of_inactivity_then_stop_at_the_horizon():
    _, out = run(ev("order_placed", at(0), order_id="o1"), until=ms_at(days=60))
    inactive = [r for r in decisions(out, "churn") if r.decision_id.endswith("|inactive")]
    assert [r.ts for r in inactive] == [ms_at(days=d) for d in (7, 14, 21, 28)]
    assert [r.features["recency_log"] for r in inactive] == sorted(r.features["recency_log"] for r in inactive)
    assert all(lab.label == 1 for lab in labels(out, "churn").values())


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
