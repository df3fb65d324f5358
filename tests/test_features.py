"""Every feature function of the online models (operators/features.py), one behaviour a test."""

import math
import pickle

import pytest
from helpers import Machine, at, ev, ms_at

from operators import features as F
from operators.features import DAY, History


def observe(h: History, *events) -> History:
    for e in events:
        h.observe(e)
    return h


# ------------------------------------------------------------------ History


def test_history_counts_orders_returns_refunds_help_views():
    h = observe(History(),
                ev("order_placed", at(0), order_id="o1", total=20.0),
                ev("order_placed", at(days=2), order_id="o2", total=30.0),
                ev("return_requested", at(days=3), order_id="o1"),
                ev("refund_issued", at(days=4), order_id="o1"),
                ev("help_view", at(days=5)))
    assert (h.events, h.orders, h.returns, h.refunds, h.help_views) == (5, 2, 1, 1, 1)
    assert h.last_order_ts == ms_at(days=2)
    assert [t for _, t in h.order_log] == [20.0, 30.0]


def test_history_order_log_is_capped():
    h = History()
    for i in range(F.ORDER_LOG + 5):
        h.observe(ev("order_placed", at(days=i), order_id=f"o{i}", total=float(i)))
    assert len(h.order_log) == F.ORDER_LOG
    assert h.order_log[-1][1] == float(F.ORDER_LOG + 4)  # the newest are kept
    assert h.orders == F.ORDER_LOG + 5


def test_history_splits_visits_on_a_30_minute_gap_and_sums_their_length():
    h = observe(History(),
                ev("page_view", at(0)), ev("product_view", at(10)), ev("add_to_cart", at(20)),
                ev("page_view", at(51)),  # 31 min later: a new visit
                ev("search", at(55), query="mug"))
    assert h.visits == 2
    assert h.visit_ms == (20 + 4) * 60_000
    assert h.clicks == 5
    assert h.cart_adds == 1


def test_history_active_days_count_distinct_days():
    h = observe(History(), ev("page_view", at(0)), ev("page_view", at(5)), ev("page_view", at(days=1)),
                ev("page_view", at(days=3)))
    assert h.active_days == 3


def test_history_decayed_counts_fade_with_their_horizon():
    h = observe(History(), ev("page_view", at(0)))
    visits, events, bad = h.decayed(ms_at(days=7))
    assert visits[0] == pytest.approx(math.exp(-1))  # 7-day constant
    assert visits[1] == pytest.approx(math.exp(-7 / 30))
    assert events[2] == pytest.approx(math.exp(-7 / 90))
    assert bad == 0.0
    assert h.decayed(ms_at(0))[0][0] == pytest.approx(1.0)  # reading does not change the state


def test_history_bad_experiences_and_chat_outcomes():
    h = observe(History(),
                ev("order_delayed", at(0), order_id="o1"),
                ev("order_cancelled", at(1), order_id="o2"),
                ev("chat_message", at(2), conversation_id="v1"),
                ev("chat_message", at(3), conversation_id="v1", sender="agent", text="hi"),
                ev("chat_closed", at(4), conversation_id="v1", csat=2),
                ev("chat_message", at(days=1), conversation_id="v2"),
                ev("chat_closed", at(days=1, minutes=5), conversation_id="v2", csat=5, escalated=True))
    assert (h.delays, h.cancels) == (1, 1)
    assert h.contacts == (ms_at(2) // 60_000, ms_at(days=1) // 60_000)
    assert h.messages == 2  # customer messages only
    assert (h.csat_sum, h.csat_n, h.escalations, h.bad_chats) == (7, 2, 1, 2)
    assert h.decayed(ms_at(days=1, minutes=5))[2] > 2.0


def test_history_contacts_within_a_window():
    h = observe(History(), ev("chat_message", at(days=0), conversation_id="v1"),
                ev("chat_message", at(days=5), conversation_id="v2"),
                ev("chat_message", at(days=9), conversation_id="v3"))
    assert h.contacts_within(ms_at(days=9), 7 * DAY) == 2
    assert h.contacts_within(ms_at(days=20), 7 * DAY) == 0


def test_history_pickles_small():
    m = Machine()
    for d in range(40):
        m.feed(ev("page_view", at(days=d)), ev("order_placed", at(days=d, minutes=1), order_id=f"o{d}"),
               ev("chat_message", at(days=d, minutes=2), conversation_id=f"v{d}"))
    h = m.state.history
    data = pickle.dumps(h, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(data) < 1200
    back = pickle.loads(data)
    assert back.__getstate__() == h.__getstate__()


# ------------------------------------------------------------------ churn


def test_order_features_windows_and_intervals():
    now = ms_at(days=100)
    log = [(ms_at(days=d) // 60_000, 10.0) for d in (0, 20, 40, 71, 95)]
    f = F.order_features(log, now)
    assert (f["orders_7d"], f["orders_30d"], f["orders_90d"]) == (1.0, 2.0, 4.0)
    assert f["log_spend_90d"] == pytest.approx(math.log1p(40.0))
    gaps = [20, 20, 31, 24]
    assert f["ipi_mean_log"] == pytest.approx(math.log1p(sum(gaps) / 4))
    assert f["ipi_last_log"] == pytest.approx(math.log1p(24))
    assert f["ipi_trend"] == pytest.approx(math.log1p(24) - math.log1p(23.75))
    assert f["ipi_overdue"] == pytest.approx(5 / 23.75)
    assert f["has_ipi"] == 1.0


def test_order_features_without_intervals():
    f = F.order_features([(0, 5.0)], ms_at(0))
    assert f["has_ipi"] == 0.0 and f["ipi_mean_log"] == 0.0
    assert F.order_features([], ms_at(0))["orders_90d"] == 0.0


def test_visit_rate_features_risk_rises_with_silence_and_falls_with_frequency():
    frequent = F.visit_rate_features(visits=30, tenure_days=30, recency_days=1)
    rare = F.visit_rate_features(visits=2, tenure_days=30, recency_days=1)
    assert frequent["visit_rate_log"] > rare["visit_rate_log"]
    assert frequent["visit_quiet30_p"] < rare["visit_quiet30_p"]
    away = F.visit_rate_features(visits=30, tenure_days=30, recency_days=14)
    assert away["visit_missed_log"] > frequent["visit_missed_log"]
    new = F.visit_rate_features(visits=1, tenure_days=0, recency_days=0)
    assert new["visit_quiet30_p"] == pytest.approx(F.PRIOR_A / (F.PRIOR_A + 30))  # the prior alone
    assert "order_rate_log" in F.visit_rate_features(2, 10, 1, "order")


def test_churn_features_from_a_customer_state():
    m = Machine()
    m.feed(ev("page_view", at(0)), ev("add_to_cart", at(5)),
           ev("order_placed", at(10), order_id="o1", total=40.0),
           ev("order_delayed", at(days=2), order_id="o1"),
           ev("help_view", at(days=3)))
    f = F.churn_features(m.state, ms_at(days=10))
    assert all(isinstance(v, float) and math.isfinite(v) for v in f.values())
    assert f["recency_log"] == pytest.approx(math.log1p(7))
    assert f["tenure_log"] == pytest.approx(math.log1p(10))
    assert f["orders_log"] == pytest.approx(math.log1p(1))
    assert f["spend_log"] == pytest.approx(math.log1p(40.0))
    assert f["delays_log"] == pytest.approx(math.log1p(1))
    assert f["help_views_log"] == pytest.approx(math.log1p(1))
    assert f["never_ordered"] == 0.0 and f["new_customer"] == 1.0
    later = F.churn_features(m.state, ms_at(days=20))
    assert later["visit_missed_log"] > f["visit_missed_log"]  # risk rises while they stay away
    assert later["recency_log"] > f["recency_log"]


def test_churn_features_same_keys_for_every_customer():
    a, b = Machine(customer="a"), Machine(customer="b")
    a.feed(ev("page_view", at(0), customer="a"))
    b.feed(*[ev("order_placed", at(days=d), customer="b", order_id=f"o{d}") for d in range(5)])
    assert set(F.churn_features(a.state, ms_at(days=1))) == set(F.churn_features(b.state, ms_at(days=6)))


# ------------------------------------------------------------------ frustration


def test_vader_analyzer_is_built_once():
    assert F.vader() is F.vader()


def test_sentiment_separates_angry_from_calm():
    angry = F.sentiment("This is the worst service ever, absolutely useless and pathetic!!!")
    calm = F.sentiment("Thanks a lot, that was great help.")
    assert angry["vader_compound"] < -0.5 < 0.5 < calm["vader_compound"]
    assert angry["vader_neg"] > calm["vader_neg"]


def test_longest_run():
    assert F.longest_run(F._EXCLAIM_RUN, "a! b!!! c!!") == 3
    assert F.longest_run(F._QUESTION_RUN, "no questions") == 0


def test_shape_features():
    f = F.shape_features("WHERE is my ORDER?!?!")
    assert f["caps_share"] == pytest.approx(10 / 14)
    assert f["caps_words"] == 2.0
    assert f["exclaim_density"] == pytest.approx(2 / 21)
    assert f["question_density"] == pytest.approx(2 / 21)
    assert f["exclaim_run"] == 1.0 and f["question_run"] == 1.0
    assert f["punct_runs"] == 1.0
    assert f["length_log"] == pytest.approx(math.log1p(21))
    empty = F.shape_features("")
    assert empty["caps_share"] == 0.0 and empty["exclaim_density"] == 0.0


def test_word_features_count_negative_and_profane_words():
    f = F.word_features("Damn, this crap is USELESS and I want a refund")
    assert f["profane_words"] == 2.0
    assert f["negative_words"] == 2.0  # useless, refund
    assert f["asks_human"] == 0.0
    assert F.word_features("hello there") == {"negative_words": 0.0, "profane_words": 0.0, "asks_human": 0.0}
    assert F.word_features("Can I talk to a real person?")["asks_human"] == 1.0
    assert F.word_features("get me a SUPERVISOR")["asks_human"] == 1.0
    assert F.word_features("humanity and management")["asks_human"] == 0.0


def test_context_features():
    f = F.context_features({"since_reply_s": 600.0, "in_a_row": 3.0, "conversation_age_s": 1200.0,
                            "late_order_now": 1.0, "contacts_7d": 2.0})
    assert f["since_reply_log"] == pytest.approx(math.log1p(10))
    assert f["no_reply_yet"] == 0.0 and f["in_a_row"] == 3.0 and f["late_order_now"] == 1.0
    assert f["conversation_age_log"] == pytest.approx(math.log1p(20))
    assert f["contacts_7d"] == 2.0
    first = F.context_features({"since_reply_s": -1.0})
    assert first["no_reply_yet"] == 1.0 and first["since_reply_log"] == 0.0 and first["contacts_7d"] == 0.0


def test_support_context_reads_history():
    h = observe(History(), ev("chat_message", at(days=0), conversation_id="v1"),
                ev("chat_closed", at(days=0, minutes=5), conversation_id="v1", escalated=True),
                ev("chat_message", at(days=2), conversation_id="v2"))
    assert F.support_context(h, ms_at(days=2)) == {"contacts_7d": 2.0, "prior_bad_chats": 1.0}


def test_message_features_combine_all_parts():
    f = F.message_features("hello???", {"since_reply_s": 30.0, "in_a_row": 2.0, "conversation_age_s": 60.0,
                                        "late_order_now": 0.0})
    for key in ("vader_compound", "caps_share", "question_run", "negative_words", "since_reply_log", "in_a_row"):
        assert key in f
    assert f.pop(F.TEXT_KEY) == "hello???"  # the text itself, for the model's hashed n-grams
    assert all(isinstance(v, float) for v in f.values())


def test_message_text_carries_the_customers_earlier_lines():
    f = F.message_features("still nothing", {"earlier_lines": ["where is my order?", "hello??"]})
    assert f[F.TEXT_KEY] == "where is my order? hello?? still nothing"


def test_state_machine_message_features_carry_the_context():
    m = Machine()
    m.feed(ev("chat_message", at(0), text="where is my order"),
           ev("chat_message", at(1), sender="agent", text="checking"),
           ev("chat_message", at(3), text="WHERE IS IT!!!"))
    # decision points only (the service fast path also scores each message at arrival, decision-free)
    reqs = [x for x in m.out if type(x).__name__ == "ScoreRequest" and x.model == "frustration" and x.decision]
    assert len(reqs) == 2
    assert reqs[1].features["since_reply_log"] == pytest.approx(math.log1p(2.0))
    assert reqs[1].features["caps_share"] == 1.0
