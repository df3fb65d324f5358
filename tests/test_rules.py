"""delay_apology, escalation and proactive_outreach rules in event time (no Bytewax)."""

from helpers import Machine, at, ev, ms_at

from config.settings import load_settings
from operators.rules import RuleConfig
from operators.messages import ScoreRequest
from operators.text import WordMatcher, cut

# ----------------------------------------------------------------------------- delay_apology


def test_promise_missed_fires_at_promise_plus_grace():
    m = Machine()
    m.feed(ev("order_placed", at(0), promised_delivery_ts=at(days=2)), ev("page_view", at(days=3)))
    [c] = m.candidates("delay_apology")
    assert c.event_ts == ms_at(days=2, hours=2) and c.reasons == ["promise_missed"]
    assert c.payload["order_id"] == "o1" and c.payload["order_total"] == 50.0
    assert c.payload["promised_delivery_ts"] == "2026-01-07T10:00:00.000Z"


def test_delivered_within_grace_no_apology():
    m = Machine()
    m.feed(ev("order_placed", at(0), promised_delivery_ts=at(days=2)),
           ev("order_delivered", at(days=2, hours=1)), ev("page_view", at(days=5)))
    assert m.candidates("delay_apology") == []


def test_delayed_then_delivered_before_promise_gives_one_apology_at_the_delay():
    m = Machine()
    m.feed(ev("order_placed", at(0), promised_delivery_ts=at(days=2)), ev("order_delayed", at(days=1)),
           ev("order_delivered", at(days=1, hours=5)), ev("page_view", at(days=4)))
    [c] = m.candidates("delay_apology")
    assert c.event_ts == ms_at(days=1) and c.reasons == ["carrier_reported"]


def test_delay_after_promise_missed_does_not_apologise_twice():
    m = Machine()
    m.feed(ev("order_placed", at(0), promised_delivery_ts=at(days=1)), ev("page_view", at(days=2)),
           ev("order_delayed", at(days=2, hours=1)))
    assert [c.reasons for c in m.candidates("delay_apology")] == [["promise_missed"]]


def test_cancelled_order_gets_no_apology_and_shipping_update_moves_the_promise():
    m = Machine()
    m.feed(ev("order_placed", at(0), order_id="a", promised_delivery_ts=at(days=1)),
           ev("order_cancelled", at(hours=5), order_id="a"),
           ev("order_placed", at(1), order_id="b", promised_delivery_ts=at(days=1)),
           ev("order_shipped", at(hours=6), order_id="b", promised_delivery_ts=at(days=3)),
           ev("page_view", at(days=2)))
    assert m.candidates("delay_apology") == []
    m.advance(ms_at(days=3, hours=2))
    assert [c.payload["order_id"] for c in m.candidates("delay_apology")] == ["b"]


def test_suggested_credit_grows_with_total_and_tier_within_bounds():
    cfg = RuleConfig()
    assert cfg.suggested_credit(10.0, "new") == cfg.credit_min
    assert cfg.suggested_credit(200.0, "new") < cfg.suggested_credit(200.0, "vip")
    assert cfg.suggested_credit(100000.0, "vip") == cfg.credit_max


# ----------------------------------------------------------------------------- escalation


def msg(ts, text, sender="customer", conv="conv1", **kw):
    return ev("chat_message", ts, text=text, sender=sender, conversation_id=conv, **kw)


def escalations(m):
    """Rule-fired escalation candidates (the model-confirmed ones carry a threshold)."""
    return [c for c in m.candidates("escalation") if c.threshold is None]


def test_human_request_escalates_with_payload():
    m = Machine()
    m.feed(msg(at(0), "where is my parcel"), msg(at(1), "ok", sender="agent"),
           msg(at(2), "Can I talk to a REAL   person please"))
    [c] = escalations(m)
    assert c.reasons == ["human_requested"] and c.event_ts == ms_at(2)
    assert c.payload["conversation_id"] == "conv1" and c.payload["customer_tier"] == "new"
    assert [x["text"] for x in c.payload["last_messages"]] == ["where is my parcel", "ok",
                                                               "Can I talk to a REAL   person please"]


def test_human_words_match_on_word_boundaries_accent_and_case_insensitive():
    w = WordMatcher(["agent", "real person", "représentant"])
    assert w("I want an AGENT!") and w("a real\nperson") and w("un REPRESENTANT svp") and w("représentant")
    assert not w("my travel agents") and not w("agentic") and not w("surreal personality")


def test_third_unanswered_message_within_ten_minutes():
    m = Machine()
    m.feed(msg(at(0), "hello?"), msg(at(4), "anyone"))
    assert escalations(m) == []
    m.feed(msg(at(9), "still waiting"))
    [c] = escalations(m)
    assert c.reasons == ["unanswered"] and c.event_ts == ms_at(9)


def test_reply_resets_the_unanswered_run_and_slow_runs_do_not_count():
    m = Machine()
    m.feed(msg(at(0), "a"), msg(at(1), "b"), msg(at(2), "ok", sender="bot"), msg(at(3), "c"),
           msg(at(20), "d"), msg(at(40), "e"))
    assert escalations(m) == []


def test_escalated_once_even_when_several_reasons_fire():
    m = Machine()
    m.feed(msg(at(0), "x"), msg(at(1), "y"), msg(at(2), "get me a supervisor"), msg(at(3), "manager now"),
           msg(at(4), "HUMAN"))
    [c] = escalations(m)
    assert c.reasons == ["human_requested", "unanswered"]
    # The fast path sent it at the supervisor message; from there on no decision carries a candidate.
    reqs = [o for o in m.out if isinstance(o, ScoreRequest) and o.model == "frustration" and o.decision]
    assert [r.candidate is None for r in reqs] == [False, False, True, True, True]
    fast = [o for o in m.out if isinstance(o, ScoreRequest) and not o.decision]
    assert len(fast) == 3 and fast[2].candidate is c  # one at each message's arrival up to the escalation
    assert [f.candidate.threshold is not None for f in fast[:2]] == [True, True]  # the model's to decide


def test_without_the_fast_path_the_exact_path_escalates_with_the_same_key():
    cfg = RuleConfig(load_settings(time={"service_fast_path": False}))
    m = Machine(cfg)
    m.feed(msg(at(0), "x"), msg(at(1), "y"), msg(at(2), "get me a supervisor"), msg(at(3), "manager now"))
    [c] = escalations(m)
    assert c.reasons == ["human_requested", "unanswered"] and c.key == "conv1"
    assert all(o.decision for o in m.out if isinstance(o, ScoreRequest))


def test_every_customer_message_is_a_frustration_decision_point_with_model_candidate():
    m = Machine()
    m.feed(msg(at(0), "hi"), msg(at(1), "answer", sender="agent"))
    [req] = [o for o in m.out if isinstance(o, ScoreRequest) and o.decision]
    assert req.model == "frustration" and req.candidate.threshold == 0.8 and req.candidate.reasons == []


def test_text_in_payload_cut_at_280_chars_without_breaking_characters():
    long = "é" * 500
    m = Machine()
    m.feed(msg(at(0), long + " human"))
    [c] = escalations(m)
    text = c.payload["last_messages"][0]["text"]
    assert len(text) == 280 and text.encode("utf-8").decode("utf-8") == text
    combining = "e\u0301" * 200  # e + combining acute: never leave a bare base at the cut
    assert cut(combining, 281) == "e\u0301" * 140


def test_message_after_close_reopens_the_conversation_as_a_new_episode():
    """Customers write again after a chat is closed: the message is evaluated like any other, in
    a new episode (its own key, so at most one escalation per episode)."""
    m = Machine()
    m.feed(msg(at(0), "human please"), ev("chat_closed", at(5), csat=4), msg(at(6), "I want a supervisor"))
    assert [c.key for c in escalations(m)] == ["conv1", f"conv1@{ms_at(6)}"]
    assert [c.payload["conversation_id"] for c in escalations(m)] == ["conv1", "conv1"]
    m.feed(msg(at(7), "human!!"))
    assert len(escalations(m)) == 2


def test_a_message_of_the_closed_episode_arriving_late_reopens_nothing():
    m = Machine(lateness_ms=None)
    m.feed(msg(at(0), "hello"), ev("chat_closed", at(5), csat=4), ev("page_view", at(30)))
    m.feed(msg(at(4), "human please"))  # before the close, and late: part of the closed episode
    m.advance(ms_at(60))
    assert escalations(m) == [] and m.state.convs == {}


# ----------------------------------------------------------------------------- proactive_outreach


def outreach(m):
    return [c for c in m.candidates("proactive_outreach") if c.threshold is None]


def test_third_help_view_within_an_hour():
    m = Machine()
    m.feed(ev("help_view", at(0)), ev("help_view", at(30)))
    assert outreach(m) == []
    m.feed(ev("help_view", at(59)))
    [c] = outreach(m)
    assert c.reasons == ["help_seeking"] and c.event_ts == ms_at(59)
    assert set(c.payload) >= {"churn_probability", "signals", "suggested_offer"}


def test_help_views_spread_over_more_than_an_hour_do_not_fire():
    m = Machine()
    m.feed(ev("help_view", at(0)), ev("help_view", at(40)), ev("help_view", at(100)))
    assert outreach(m) == []


def test_exit_intent_search():
    m = Machine()
    m.feed(ev("search", at(0), query="blue shoes"), ev("search", at(1), query="How do I CANCEL my order"),
           ev("search", at(2), query="returnable items"))
    [c] = outreach(m)
    assert c.reasons == ["exit_intent"] and c.event_ts == ms_at(1)


def test_exit_words_are_a_setting():
    cfg = RuleConfig(load_settings(proactive={"exit_words": ["kündigen"]}))
    m = Machine(cfg)
    m.feed(ev("search", at(0), query="cancel"), ev("search", at(1), query="Konto KUNDIGEN"))
    assert [c.event_ts for c in outreach(m)] == [ms_at(1)]


def test_churn_decision_points_session_end_order_and_inactivity():
    m = Machine()
    m.feed(ev("page_view", at(0)), ev("page_view", at(10)))
    m.feed(ev("order_placed", at(20)))
    m.advance(ms_at(days=15))
    reqs = [o for o in m.out if isinstance(o, ScoreRequest) and o.model == "churn"]
    kinds = [r.decision_id.rsplit("|", 1)[1] for r in reqs]
    assert kinds == ["order_placed", "session_end", "inactive", "inactive"]
    assert reqs[1].ts == ms_at(40)  # 30 min after the last clickstream event
    assert reqs[2].ts == ms_at(20, days=7)  # 7 days after the latest event
    assert all(r.candidate.threshold == 0.7 and r.candidate.reasons == ["churn_risk"] for r in reqs)
