"""Where the spec was silent and real shops are not (CONTRACT.md, "Decisions"): purchase quiet
period, carts in several currencies, split shipments, orders without a promise, writing again
after a chat was closed. Each case runs through the core (customer step + policy)."""

from __future__ import annotations

from helpers import at, ev, ms_at
from test_arrival_order import Core


def sent(core, type):
    return [s for s in core.sent if s[0] == type]


def test_a_cart_opened_right_after_a_purchase_gets_no_reminder():
    core = Core().feed([
        ev("add_to_cart", at(0), product_id="p1"),
        ev("order_placed", at(5), order_id="o1", items=[{"product_id": "p1", "quantity": 1, "price": 10.0}]),
        ev("add_to_cart", at(7), product_id="p2", price=3.0),  # a small extra, 2 min after the order
        ev("page_view", at(200)),
    ])
    assert sent(core, "abandoned_cart") == []
    assert [(s[0], s[4]) for s in core.suppressed] == [("abandoned_cart", "purchase_quiet")]


def test_a_cart_long_after_the_purchase_is_reminded():
    core = Core().feed([
        ev("order_placed", at(0), order_id="o1"),
        ev("add_to_cart", at(180), product_id="p2", price=3.0),
        ev("page_view", at(400)),
    ])
    assert [s[2] for s in sent(core, "abandoned_cart")] == [ms_at(210)]


def test_cart_in_two_currencies_is_not_summed_under_one_code():
    from operators.customer import CustomerState
    from test_arrival_order import configs

    cfg, _ = configs()
    cfg.lateness = 0
    state = CustomerState("c1")
    state.process(ev("add_to_cart", at(0), product_id="p1", price=500.0, currency="CZK"), cfg)
    state.process(ev("add_to_cart", at(1), product_id="p2", price=20.0, currency="EUR"), cfg)
    out = state.flush(ms_at(60), cfg)
    [cand] = [o for o in out if getattr(o, "type", None) == "abandoned_cart"]
    assert cand.payload["cart_value"] is None and "currency" not in cand.payload
    assert cand.payload["cart_values"] == {"CZK": 500.0, "EUR": 20.0}
    assert {i["product_id"]: i["currency"] for i in cand.payload["items"]} == {"p1": "CZK", "p2": "EUR"}
    assert state.profile(cfg).fields["cart_value"] is None
    from test_schemas import VALIDATORS

    VALIDATORS["trigger"].validate(cand.to_trigger("2026-01-05T11:00:00.000Z"))


def test_one_currency_keeps_the_single_total():
    core = Core().feed([ev("add_to_cart", at(0), product_id="p1", price=5.0, currency="EUR"),
                        ev("add_to_cart", at(1), product_id="p2", price=2.5, currency="EUR"),
                        ev("page_view", at(100))])
    [cart] = sent(core, "abandoned_cart")
    assert core.profiles()["c1"]["cart_value"] == 7.5


def test_second_parcel_late_gets_the_apology_the_first_delivery_did_not_close_the_order():
    items = [{"product_id": "p1", "quantity": 1, "price": 10.0}, {"product_id": "p2", "quantity": 1, "price": 5.0}]
    core = Core().feed([
        ev("order_placed", at(0), order_id="o1", total=15.0, items=items, promised_delivery_ts=at(days=2)),
        ev("order_shipped", at(60), order_id="o1", shipment_id="s1", items=items[:1]),
        ev("order_shipped", at(90), order_id="o1", shipment_id="s2", items=items[1:]),
        ev("order_delivered", at(days=1), order_id="o1", shipment_id="s1", items=items[:1]),
        ev("page_view", at(days=3)),  # the second parcel is still out past the promise
    ])
    [apology] = sent(core, "delay_apology")
    assert apology[2] == ms_at(days=2, hours=2) and apology[3] == "o1"
    assert core.profiles()["c1"]["open_orders"][0]["status"] == "partly_delivered"


def test_every_parcel_delivered_closes_the_order():
    items = [{"product_id": "p1", "quantity": 2, "price": 10.0}]
    core = Core().feed([
        ev("order_placed", at(0), order_id="o1", total=20.0, items=items, promised_delivery_ts=at(days=2)),
        ev("order_delivered", at(days=1), order_id="o1", shipment_id="a", items=[{"product_id": "p1", "quantity": 1}]),
        ev("order_delivered", at(days=1, hours=1), order_id="o1", shipment_id="b",
           items=[{"product_id": "p1", "quantity": 1}]),
        ev("page_view", at(days=3)),
    ])
    assert sent(core, "delay_apology") == [] and core.profiles()["c1"]["open_orders"] == []


def test_an_order_without_a_promise_is_a_purchase_and_empties_the_cart():
    from operators.events import decode

    import orjson

    placed = decode(orjson.dumps({"event_id": "d1", "type": "order_placed", "customer_id": "c1", "ts": at(5),
                                  "order_id": "dg1", "total": 9.99}))
    assert placed.type == "order_placed"  # not a dead letter
    core = Core().feed([ev("add_to_cart", at(0), product_id="ebook"), placed, ev("page_view", at(300))])
    assert sent(core, "abandoned_cart") == [] and sent(core, "delay_apology") == []
    p = core.profiles()["c1"]
    assert p["order_count"] == 1 and p["cart"] == []
    assert p["open_orders"][0]["promised_delivery_ts"] is None


def test_asking_for_a_supervisor_after_the_chat_was_closed_escalates():
    core = Core().feed([
        ev("chat_message", at(0), text="my order is late"),
        ev("chat_message", at(1), sender="agent", text="sorry, it ships tomorrow"),
        ev("chat_closed", at(2), csat=3),
        ev("chat_message", at(30), text="this is the third time, get me a supervisor"),
        ev("page_view", at(60)),
    ])
    [esc] = sent(core, "escalation")
    assert esc[2] == ms_at(30) and esc[3] == f"conv1@{ms_at(30)}"
    assert core.profiles()["c1"]["open_conversations"] == ["conv1"]
