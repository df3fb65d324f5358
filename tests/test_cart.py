"""The abandoned-cart rule and the customer state machine, in event time, without Bytewax."""

from helpers import Machine, at, ev, ms_at

from operators.customer import CustomerState
from operators.rules import RuleConfig


def test_idle_cart_triggers_at_last_activity_plus_idle():
    m = Machine()
    m.feed(ev("add_to_cart", at(0)), ev("add_to_cart", at(10), product_id="p2", price=5.0, quantity=2))
    m.feed(ev("page_view", at(41)))
    [c] = m.candidates("abandoned_cart")
    assert c.event_ts == ms_at(40)
    assert c.payload["cart_value"] == 20.0
    assert {i["product_id"]: i["quantity"] for i in c.payload["items"]} == {"p1": 1, "p2": 2}
    assert c.payload["recommendations"] == []


def test_cart_activity_exactly_at_idle_counts_as_within():
    m = Machine()
    m.feed(ev("add_to_cart", at(0)), ev("checkout_started", at(30)), ev("page_view", at(59)))
    assert m.candidates("abandoned_cart") == []
    m.feed(ev("page_view", at(61)))
    assert [c.event_ts for c in m.candidates("abandoned_cart")] == [ms_at(60)]


def test_non_cart_event_at_due_time_fires():
    m = Machine()
    m.feed(ev("add_to_cart", at(0)), ev("page_view", at(30)))
    assert m.candidates("abandoned_cart") == []  # a cart activity at 30 may still come: not yet
    m.feed(ev("page_view", at(31)))
    assert [c.event_ts for c in m.candidates("abandoned_cart")] == [ms_at(30)]


def test_order_placed_empties_cart_and_cancels_timer():
    m = Machine()
    m.feed(ev("add_to_cart", at(0)), ev("order_placed", at(20)), ev("page_view", at(120)))
    assert m.candidates("abandoned_cart") == []
    assert m.state.cart == {}


def test_removing_last_item_cancels_timer():
    m = Machine()
    m.feed(ev("add_to_cart", at(0), quantity=2), ev("remove_from_cart", at(5)))
    m.feed(ev("remove_from_cart", at(6)), ev("page_view", at(200)))
    assert m.candidates("abandoned_cart") == []


def test_partial_remove_keeps_episode_and_moves_due():
    m = Machine()
    m.feed(ev("add_to_cart", at(0), quantity=2), ev("remove_from_cart", at(20)), ev("page_view", at(100)))
    [c] = m.candidates("abandoned_cart")
    assert c.event_ts == ms_at(50)
    assert c.payload["items"][0]["quantity"] == 1


def test_one_trigger_per_episode_and_readding_opens_a_new_one():
    m = Machine()
    m.feed(ev("add_to_cart", at(0)), ev("page_view", at(40)), ev("page_view", at(100)))
    assert len(m.candidates("abandoned_cart")) == 1
    m.feed(ev("add_to_cart", at(200), product_id="p2"), ev("page_view", at(300)))
    cands = m.candidates("abandoned_cart")
    assert [c.event_ts for c in cands] == [ms_at(30), ms_at(230)]
    assert len(cands[1].payload["items"]) == 2  # the old item is still in the cart
    assert cands[0].trigger_id != cands[1].trigger_id


def test_emptied_then_refilled_cart_is_a_new_episode():
    m = Machine()
    m.feed(ev("add_to_cart", at(0)), ev("remove_from_cart", at(1)), ev("add_to_cart", at(2), product_id="p9"))
    m.advance(ms_at(60))
    [c] = m.candidates("abandoned_cart")
    assert c.event_ts == ms_at(32) and c.payload["items"][0]["product_id"] == "p9"


def test_timers_fire_on_advance_only_up_to_now():
    m = Machine()
    m.feed(ev("add_to_cart", at(0)))
    m.advance(ms_at(29))
    assert m.candidates("abandoned_cart") == []
    assert m.state.next_deadline(m.cfg) == ms_at(30) + 1  # the frontier must pass the due time
    m.advance(ms_at(30))
    assert len(m.candidates("abandoned_cart")) == 1


def test_duplicates_within_seven_days_are_ignored():
    m = Machine()
    e = ev("add_to_cart", at(0))
    assert m.feed(e, e) == ["ok", "duplicate"]
    assert m.state.cart["p1"][0] == 1


def test_duplicate_id_after_seven_days_is_a_new_event():
    m = Machine()
    e = ev("page_view", at(0))
    later = ev("page_view", at(days=8), event_id=e.event_id)
    assert m.feed(e, later) == ["ok", "ok"]


def test_late_event_is_applied_counted_and_never_reopens_a_trigger():
    m = Machine()
    m.feed(ev("add_to_cart", at(0)), ev("page_view", at(40)))
    assert len(m.candidates("abandoned_cart")) == 1
    # 10 minutes older than the clock: late. It adds to the cart but opens no new episode.
    assert m.feed(ev("add_to_cart", at(30), product_id="p2")) == ["late"]
    assert "p2" in m.state.cart
    m.feed(ev("page_view", at(300)))
    assert len(m.candidates("abandoned_cart")) == 1


def test_out_of_order_within_lateness_is_not_late():
    m = Machine(lateness_ms=None)
    m.feed(ev("page_view", at(10)))
    assert m.feed(ev("add_to_cart", at(7))) == ["ok"]
    m.feed(ev("page_view", at(100)))
    assert [c.event_ts for c in m.candidates("abandoned_cart")] == [ms_at(37)]


def test_idle_is_a_setting():
    from config.settings import load_settings

    cfg = RuleConfig(load_settings(abandoned_cart={"idle": 600}))
    m = Machine(cfg)
    m.feed(ev("add_to_cart", at(0)), ev("page_view", at(11)))
    assert [c.event_ts for c in m.candidates("abandoned_cart")] == [ms_at(10)]


def test_state_pickles_and_resumes_identically():
    import pickle

    m = Machine()
    m.feed(ev("add_to_cart", at(0)), ev("chat_message", at(1)), ev("order_placed", at(2), order_id="o7"))
    clone = pickle.loads(pickle.dumps(m.state))
    assert isinstance(clone, CustomerState)
    assert clone.next_deadline(m.cfg) == m.state.next_deadline(m.cfg)
    assert pickle.dumps(clone) == pickle.dumps(m.state)


def test_trigger_id_is_deterministic():
    a, b = Machine(), Machine()
    for m in (a, b):
        m.feed(ev("add_to_cart", at(0), event_id="x1"), ev("page_view", at(50), event_id="x2"))
    assert a.candidates()[0].trigger_id == b.candidates()[0].trigger_id
