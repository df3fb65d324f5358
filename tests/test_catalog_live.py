"""price_drop / back_in_stock live: `crm-stream run` reads `crm.catalog` (kafka.topics.catalog)
beside the clickstream and orders from a real Kafka-protocol broker, and sends to Redis and Kafka
what a replay of the same events sends."""

from __future__ import annotations

import orjson
import pytest
from test_live import live_settings, make_topics, produce

from config.settings import CONTRACT_RULES, load_settings
from flows.live import run_live
from flows.replay import ReplayOutputs, replay

pytestmark = pytest.mark.integration

RULES = {"enabled": [*CONTRACT_RULES, "price_drop", "back_in_stock"]}


def test_live_catalogue_triggers_match_the_replay(kafka_broker, kafka_topics, redis_client, redis_url, tmp_path):
    n = iter(range(1000))

    def e(type, ts, customer=None, **f):
        base = {"event_id": f"e{next(n)}", "type": type, "ts": ts, **f}
        if customer is not None:
            base["customer_id"] = customer
        if type in ("product_view", "add_to_cart"):
            base["session_id"] = "s"
        return base

    clicks = [e("product_view", "2026-03-02T12:00:10Z", "ann", product_id="p1"),
              e("add_to_cart", "2026-03-02T12:00:00Z", "ben", product_id="p2", price=5.0),
              e("product_view", "2026-03-02T11:00:00Z", "cat", product_id="p1")]
    orders = [e("order_placed", "2026-03-02T11:30:00Z", "cat", order_id="o1", total=9.0,
                items=[{"product_id": "p1"}])]
    catalog = [e("price_changed", "2026-03-02T12:00:11Z", product_id="p1", price=7.0, old_price=10.0, currency="EUR"),
               e("stock_changed", "2026-03-02T12:00:05Z", product_id="p2", in_stock=False),
               e("stock_changed", "2026-03-02T13:00:00Z", product_id="p2", in_stock=True)]
    topics = make_topics(kafka_topics)
    topics["topics"] = {"catalog": kafka_topics("catalog", partitions=1)}
    produce(kafka_broker, topics["topics"]["catalog"], catalog)  # the drop is read before the view it follows
    produce(kafka_broker, topics["clickstream_topic"], clicks)
    produce(kafka_broker, topics["orders_topic"], orders)

    settings = live_settings(kafka_broker, redis_url, topics, rules=RULES)
    assert topics["topics"]["catalog"] in settings.read_topics()
    run_live(settings, tail=False)
    live = sorted((orjson.loads(x[1][b"trigger"]) for x in redis_client.xrange("crm:triggers")),
                  key=lambda t: t["trigger_id"])
    assert sorted((t["type"], t["customer_id"]) for t in live) == [("back_in_stock", "ben"), ("price_drop", "ann")]
    kafka = [orjson.loads(m.value()) for m in kafka_broker.consume_all(topics["triggers_topic"], min_count=2)]
    assert {t["trigger_id"] for t in kafka} == {t["trigger_id"] for t in live}

    log = tmp_path / "events.jsonl"
    log.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in sorted(clicks + orders + catalog, key=lambda x: x["ts"])))
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json")
    replay(load_settings(rules=RULES), [log], out)
    replayed = sorted((orjson.loads(x) for x in out.triggers.read_bytes().splitlines()), key=lambda t: t["trigger_id"])
    # (live has no end-of-input flush for customers: ben's cart reminder is due only in a replay)
    strip = lambda ts: [{k: v for k, v in t.items() if k != "emitted_at"} for t in ts  # noqa: E731
                        if t["type"] in ("price_drop", "back_in_stock")]
    assert strip(live) == strip(replayed) and len(strip(live)) == 2
