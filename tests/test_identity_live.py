"""Identity live: `crm-stream run` over a real Kafka-protocol broker and redis-server (issue 15)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from test_live import iso, live_settings, make_topics, produce

from connectors.redis_sink import read_profile
from flows.live import run_live

pytestmark = pytest.mark.integration


def test_live_guest_cart_bought_after_login_on_another_device_gets_no_reminder(
        kafka_broker, kafka_topics, redis_client, redis_url):
    """The issue's case across topics: the guest's cart at 10:00 (clickstream), the login at 10:10
    (an identify on the clickstream topic), the purchase at 10:10 (orders); the guest's device goes
    on at 11:00. A second guest who never logs in gets the reminder."""
    topics = make_topics(kafka_topics)
    t0 = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)

    def at(minutes: int) -> str:
        return iso(t0 + timedelta(minutes=minutes))

    def click(eid, cust, minutes, type, **kw):
        return {"event_id": eid, "type": type, "customer_id": cust, "ts": at(minutes), "session_id": f"s-{cust}", **kw}

    produce(kafka_broker, topics["clickstream_topic"], [
        click("g1", "anon-7", 0, "add_to_cart", product_id="p1", price=30.0),
        click("h1", "anon-8", 0, "add_to_cart", product_id="p2", price=9.0),
        {"event_id": "id1", "type": "identify", "customer_id": "cust-42", "anonymous_id": "anon-7", "ts": at(10)},
        click("g2", "anon-7", 60, "page_view"),
        click("h2", "anon-8", 60, "page_view"),
    ])
    produce(kafka_broker, topics["orders_topic"], [
        {"event_id": "o1", "type": "order_placed", "customer_id": "cust-42", "ts": at(10), "order_id": "o-1",
         "total": 30.0, "items": [{"product_id": "p1", "quantity": 1, "price": 30.0}]},
        {"event_id": "o2", "type": "order_shipped", "customer_id": "cust-42", "ts": at(61), "order_id": "o-1"},
    ])
    run_live(live_settings(kafka_broker, redis_url, topics), tail=False)

    carts = [orjson.loads(f[b"trigger"]) for _, f in redis_client.xrange("crm:triggers")
             if f[b"type"] == b"abandoned_cart"]
    assert [(c["customer_id"], c["event_ts"]) for c in carts] == [("anon-8", at(30))]
    cust = read_profile(redis_client, "cust-42")
    assert cust["order_count"] == 1 and cust["cart"] == [] and cust["open_orders"][0]["order_id"] == "o-1"
    assert cust["last_seen"] == at(61)
    guest = read_profile(redis_client, "anon-7")
    assert guest["merged_into"] == "cust-42" and guest["cart"] == []
