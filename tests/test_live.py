"""`crm-stream run` against a real Kafka-protocol broker and a real redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from helpers import with_closing_events

from config.settings import load_settings
from connectors.redis_sink import read_profile
from flows.live import run_live
from flows.replay import ReplayOutputs, replay

pytestmark = pytest.mark.integration


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# the tests' events are months old: live would drop their marketing triggers as stale
HISTORY_AGE = str(100 * 365 * 86400)


def live_settings(kafka_broker, redis_url, topics: dict, **extra):
    """Recovery off (each run starts over, as these tests mean it to) and no `stale` drop."""
    return load_settings(
        kafka={"bootstrap_servers": kafka_broker.bootstrap, **topics},
        redis={"url": redis_url},
        metrics_port=0,
        recovery=False,
        policy={"max_trigger_age": HISTORY_AGE},
        **extra,
    )


def make_topics(kafka_topics) -> dict:
    return {
        "clickstream_topic": kafka_topics("click", partitions=2),
        "orders_topic": kafka_topics("orders", partitions=1),
        "chat_topic": kafka_topics("chat", partitions=1),
        "triggers_topic": kafka_topics("triggers", partitions=1),
        "deadletter_topic": kafka_topics("dlq", partitions=1),
    }


def customer_key(value: bytes):
    try:
        return orjson.loads(value)["customer_id"].encode()
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


def produce(broker, topic: str, events: list) -> None:
    values = [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]
    broker.produce(topic, values, key_fn=customer_key)


def test_triggers_reach_kafka_and_redis_exactly_once(kafka_broker, kafka_topics, redis_client, redis_url):
    topics = make_topics(kafka_topics)
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    clicks = [
        {"event_id": "a1", "type": "add_to_cart", "customer_id": "c1", "ts": iso(t0), "session_id": "s",
         "product_id": "p1", "price": 12.5},
        {"event_id": "a2", "type": "page_view", "customer_id": "c1", "ts": iso(t0 + timedelta(minutes=45)),
         "session_id": "s"},
        {"event_id": "b1", "type": "add_to_cart", "customer_id": "c2", "ts": iso(t0), "session_id": "s",
         "product_id": "p2", "price": 4.0},
        b"{broken json",
        {"event_id": "x1", "type": "search", "customer_id": "c3", "ts": iso(t0), "session_id": "s",
         "query": "how to close my account"},
    ]
    chats = [
        {"event_id": "m1", "type": "chat_message", "customer_id": "c4", "ts": iso(t0), "conversation_id": "cv1",
         "sender": "customer", "text": "my parcel never came"},
        {"event_id": "m2", "type": "chat_message", "customer_id": "c4", "ts": iso(t0 + timedelta(minutes=1)),
         "conversation_id": "cv1", "sender": "customer", "text": "I want to speak to a supervisor"},
    ]
    orders = [
        {"event_id": "o1", "type": "order_placed", "customer_id": "c2", "ts": iso(t0 + timedelta(minutes=5)),
         "order_id": "ord1", "total": 4.0, "promised_delivery_ts": iso(t0 + timedelta(days=2))},
        {"event_id": "o2", "type": "order_delayed", "customer_id": "c2", "ts": iso(t0 + timedelta(days=1)),
         "order_id": "ord1"},
    ]
    produce(kafka_broker, topics["clickstream_topic"], clicks)
    produce(kafka_broker, topics["orders_topic"], orders)
    produce(kafka_broker, topics["chat_topic"], chats)
    settings = live_settings(kafka_broker, redis_url, topics)

    run_live(settings, tail=False)
    run_live(settings, tail=False)  # the same input again, as after a restart without recovery

    entries = redis_client.xrange("crm:triggers")
    ids = [e[1][b"trigger_id"].decode() for e in entries]
    assert len(ids) == len(set(ids)) == 4
    by_type = {e[1][b"type"].decode(): orjson.loads(e[1][b"trigger"]) for e in entries}
    assert by_type["abandoned_cart"]["customer_id"] == "c1"
    assert by_type["delay_apology"]["payload"]["order_id"] == "ord1"
    assert by_type["proactive_outreach"]["reasons"] == ["exit_intent"]
    assert by_type["escalation"]["reasons"] == ["human_requested"]
    assert by_type["escalation"]["payload"]["conversation_id"] == "cv1"
    for trig in by_type.values():
        assert redis_client.exists(f"crm:trigger:{trig['trigger_id']}")

    kafka_msgs = kafka_broker.consume_all(topics["triggers_topic"], min_count=8)
    kafka_ids = {orjson.loads(m.value())["trigger_id"] for m in kafka_msgs}
    assert kafka_ids == set(ids)  # at-least-once on Kafka: consumers dedupe on trigger_id
    assert {m.key() for m in kafka_msgs} == {b"c1", b"c2", b"c3", b"c4"}

    dead = kafka_broker.consume_all(topics["deadletter_topic"], min_count=1)
    assert orjson.loads(dead[0].value())["raw"] == "{broken json"

    profile = read_profile(redis_client, "c2")
    assert profile["order_count"] == 1 and profile["tier"] == "regular"
    assert profile["open_orders"][0]["status"] == "delayed"
    assert profile["last_trigger.delay_apology"]["trigger_id"] == by_type["delay_apology"]["trigger_id"]
    fields = {"tier", "lifetime_spend", "order_count", "first_seen", "last_seen", "open_orders", "cart",
              "cart_value", "open_conversations", "updated_at"}
    assert fields <= set(profile)
    assert profile["churn_probability"] is None and profile["frustration_probability"] is None
    assert read_profile(redis_client, "c1")["cart"][0]["product_id"] == "p1"
    assert read_profile(redis_client, "c4")["open_conversations"] == ["cv1"]


def test_live_timer_fires_on_wall_clock(kafka_broker, kafka_topics, redis_client, redis_url, tmp_path):
    """Live, an idle cart triggers when wall-clock time passes the due time plus the lateness bound
    (the reorder buffer's wait): no later event needed."""
    topics = make_topics(kafka_topics)
    env = {**os.environ, "CRM_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "CRM_REDIS__URL": redis_url,
           "CRM_METRICS_PORT": "0", "CRM_ABANDONED_CART__IDLE": "2", "CRM_TIME__LATENESS": "2",
           "CRM_KAFKA__IDLE_AFTER": "1",  # three of the four input partitions stay empty: idle after 1 s
           **{f"CRM_KAFKA__{k.upper()}": v for k, v in topics.items()}}
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        now = datetime.now(timezone.utc)
        produce(kafka_broker, topics["clickstream_topic"], [
            {"event_id": "w1", "type": "add_to_cart", "customer_id": "cw", "ts": iso(now), "session_id": "s",
             "product_id": "p1", "price": 1.0}])
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not redis_client.xlen("crm:triggers"):
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            time.sleep(0.2)
        [(_, fields)] = redis_client.xrange("crm:triggers")
        trig = orjson.loads(fields[b"trigger"])
        assert trig["type"] == "abandoned_cart" and trig["event_ts"] == iso(now + timedelta(seconds=2))
    finally:
        proc.kill()
        proc.wait()


def test_replay_a_time_range_straight_from_kafka(kafka_broker, kafka_topics, tmp_path):
    """`crm-stream replay --kafka --from --to`: offsets by timestamp, into files, never the live topic."""
    topics = make_topics(kafka_topics)
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    ms = lambda dt: int(dt.timestamp() * 1000)  # noqa: E731

    def cart(i, minutes):
        return orjson.dumps({"event_id": f"r{i}", "type": "add_to_cart", "customer_id": f"k{i}",
                             "ts": iso(t0 + timedelta(minutes=minutes)), "session_id": "s",
                             "product_id": "p", "price": 2.0})

    def view(i, minutes):
        return orjson.dumps({"event_id": f"v{i}", "type": "page_view", "customer_id": f"k{i}",
                             "ts": iso(t0 + timedelta(minutes=minutes)), "session_id": "s"})

    # Kafka timestamps: two customers before the range, two inside, one after.
    values = [cart(0, 0), view(0, 40), cart(1, 60), view(1, 100), cart(2, 120), view(2, 160),
              cart(3, 180), view(3, 220), cart(4, 300), view(4, 340)]
    stamps = [ms(t0 + timedelta(minutes=m)) for m in (0, 40, 60, 100, 120, 160, 180, 220, 300, 340)]
    kafka_broker.produce(topics["clickstream_topic"], values, timestamps=stamps)
    env = {**os.environ, "CRM_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "CRM_METRICS_PORT": "0",
           **{f"CRM_KAFKA__{k.upper()}": v for k, v in topics.items()}}
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "flows.cli", "replay", "--kafka", "--from", iso(t0 + timedelta(minutes=120)),
                    "--to", iso(t0 + timedelta(minutes=300)), "--triggers-out", str(out / "t.jsonl"),
                    "--dlq-out", str(out / "d.jsonl"), "--summary", str(out / "s.json")],
                   env=env, check=True, capture_output=True, cwd=tmp_path)
    summary = orjson.loads((out / "s.json").read_bytes())
    assert summary["events_read"] == 4
    triggers = [orjson.loads(x) for x in (out / "t.jsonl").read_bytes().splitlines()]
    assert sorted(t["customer_id"] for t in triggers) == ["k2", "k3"]
    assert kafka_broker.consume_all(topics["triggers_topic"]) == []


def test_replay_from_kafka_merges_the_topics_by_event_time(kafka_broker, kafka_topics, tmp_path):
    """Add to cart, the order 2 min later on crm.orders, a page view 2 h later on the clickstream,
    the clickstream produced first: `replay --kafka` sends what the file replay sends, nothing (it
    once sorted by Kafka timestamp, i.e. production time, and reminded of the item just bought)."""
    topics = make_topics(kafka_topics)
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    clicks = [{"event_id": "k1", "type": "add_to_cart", "customer_id": "b1", "ts": iso(t0), "session_id": "s",
               "product_id": "p1", "price": 5.0},
              {"event_id": "k2", "type": "page_view", "customer_id": "b1", "ts": iso(t0 + timedelta(hours=2)),
               "session_id": "s2"}]
    orders = [{"event_id": "k3", "type": "order_placed", "customer_id": "b1", "ts": iso(t0 + timedelta(minutes=2)),
               "order_id": "ob1", "total": 5.0, "promised_delivery_ts": iso(t0 + timedelta(days=9))}]
    since = iso(datetime.now(timezone.utc) - timedelta(minutes=1))
    produce(kafka_broker, topics["clickstream_topic"], clicks)
    produce(kafka_broker, topics["orders_topic"], orders)
    env = {**os.environ, "CRM_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "CRM_METRICS_PORT": "0",
           **{f"CRM_KAFKA__{k.upper()}": v for k, v in topics.items()}}
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "flows.cli", "replay", "--kafka", "--from", since,
                    "--triggers-out", str(out / "t.jsonl"), "--dlq-out", str(out / "d.jsonl"),
                    "--summary", str(out / "s.json"), "--profiles-out", str(out / "p.jsonl")],
                   env=env, check=True, capture_output=True, cwd=tmp_path)
    assert orjson.loads((out / "s.json").read_bytes())["events_read"] == 3
    assert (out / "t.jsonl").read_bytes() == b""
    [profile] = [orjson.loads(x) for x in (out / "p.jsonl").read_bytes().splitlines()]
    assert profile["order_count"] == 1 and profile["cart"] == []

    log = tmp_path / "same.jsonl"  # the file replay of the same events agrees
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sorted(clicks + orders, key=lambda e: e["ts"])))
    file_out = ReplayOutputs(tmp_path / "ft.jsonl", tmp_path / "fd.jsonl", tmp_path / "fs.json")
    replay(load_settings(), [log], file_out)
    assert file_out.triggers.read_bytes() == b""


def test_recommendations_reach_redis_and_abandoned_cart_payloads(kafka_broker, kafka_topics, redis_client,
                                                                  redis_url, tmp_path):
    from flows.generator import generate

    generate(200, 14, 4, tmp_path)
    lines = tmp_path.joinpath("events.jsonl").read_bytes().splitlines()
    topics = make_topics(kafka_topics)
    kafka_broker.produce(topics["clickstream_topic"], lines, partition=0)
    run_live(live_settings(kafka_broker, redis_url, topics), tail=False)

    keys = sorted(redis_client.scan_iter("crm:recs:*"))
    assert len(keys) > 50
    top = redis_client.zrevrange(keys[0], 0, -1, withscores=True)
    assert 0 < len(top) <= 20 and all(score > 0 for _, score in top)
    triggers = [orjson.loads(m.value()) for m in kafka_broker.consume_all(topics["triggers_topic"])]
    carts = [t for t in triggers if t["type"] == "abandoned_cart"]
    assert carts and all(isinstance(t["payload"]["recommendations"], list) for t in carts)
    warm = [t for t in carts if t["payload"]["recommendations"]]
    assert len(warm) > len(carts) / 2  # once the model is warm, reminders carry suggestions
    for t in warm:
        cart = {i["product_id"] for i in t["payload"]["items"]}
        assert not cart & set(t["payload"]["recommendations"]) and len(t["payload"]["recommendations"]) <= 5


def test_two_workers_give_the_same_triggers_exactly_once(kafka_broker, kafka_topics, redis_client, redis_url,
                                                         tmp_path):
    """`crm-stream run -w 2`: input partitions and customer state spread over two Bytewax workers."""
    from flows.generator import generate

    generate(120, 7, 9, tmp_path)
    lines = with_closing_events(tmp_path.joinpath("events.jsonl").read_bytes().splitlines())
    tmp_path.joinpath("events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    topics = make_topics(kafka_topics)
    kafka_broker.produce(topics["clickstream_topic"], lines, partition=0)
    # no model ever warm (scores differ with the shard layout, and a churn_risk outreach starts the
    # cooldown an exit_intent then meets): the runs compare the rules, which must agree exactly
    cold = {"warmup": 10**9}
    run_live(live_settings(kafka_broker, redis_url, topics, models=cold), workers=2, tail=False)
    entries = redis_client.xrange("crm:triggers")
    live = [orjson.loads(f[b"trigger"]) for _, f in entries]
    assert len({t["trigger_id"] for t in live}) == len(live) > 20

    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json")
    replay(load_settings(models=cold), [tmp_path / "events.jsonl"], out)
    replayed = [orjson.loads(x) for x in out.triggers.read_bytes().splitlines()]
    assert {t["trigger_id"] for t in live} == {t["trigger_id"] for t in replayed}


def test_live_an_event_a_day_ahead_of_the_wall_clock_is_a_dead_letter(kafka_broker, kafka_topics, redis_client,
                                                                      redis_url):
    """A phone a day fast: its event is `future_ts`, and the customer's real events after it are not late."""
    topics = make_topics(kafka_topics)
    now = datetime.now(timezone.utc)
    produce(kafka_broker, topics["clickstream_topic"], [
        {"event_id": "f1", "type": "page_view", "customer_id": "cf", "ts": iso(now + timedelta(days=1)),
         "session_id": "s"}])
    produce(kafka_broker, topics["chat_topic"], [
        {"event_id": "f2", "type": "chat_message", "customer_id": "cf", "ts": iso(now), "conversation_id": "cv",
         "sender": "customer", "text": "please let me talk to a human"}])
    run_live(live_settings(kafka_broker, redis_url, topics), tail=False)
    [dead] = kafka_broker.consume_all(topics["deadletter_topic"], min_count=1)
    assert orjson.loads(dead.value())["reason"] == "future_ts"
    [(_, fields)] = redis_client.xrange("crm:triggers")
    assert orjson.loads(fields[b"trigger"])["type"] == "escalation"
