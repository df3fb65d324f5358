"""Erasure in `crm-stream run` against a real redis-server and Kafka-protocol broker, with a SIGKILL
between the erasure request and its completion."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from test_recovery import Engine, wait_for

from connectors.redis_sink import read_profile

pytestmark = pytest.mark.integration

GONE, KEPT = "cust-erase-7f3a", "cust-keep-91b2"


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def click(eid: str, customer: str, ts: datetime, type: str = "page_view", **f) -> bytes:
    e = {"event_id": eid, "type": type, "customer_id": customer, "ts": iso(ts), "session_id": "s1", **f}
    return orjson.dumps(e)


def test_sigkill_between_erasure_request_and_completion(tmp_path, kafka_broker, kafka_topics, redis_client,
                                                        redis_url):
    topics = {"clickstream_topic": kafka_topics("click"), "orders_topic": kafka_topics("orders"),
              "chat_topic": kafka_topics("chat"), "profile_topic": kafka_topics("profile"),
              "triggers_topic": kafka_topics("triggers"), "deadletter_topic": kafka_topics("dlq"),
              "audit_topic": kafka_topics("audit")}
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)
    kafka_broker.produce(topics["clickstream_topic"], [
        click("g1", GONE, t0, "add_to_cart", product_id="p1", price=9.5),
        click("k1", KEPT, t0, "add_to_cart", product_id="p2", price=3.0),
        click("g2", GONE, t0 + timedelta(minutes=45)),
        click("k2", KEPT, t0 + timedelta(minutes=45)),
    ], partition=0)
    engine = Engine(tmp_path, kafka_broker, redis_url, topics)

    def stream_customers() -> list[bytes]:
        return [f[b"customer_id"] for _, f in redis_client.xrange("crm:triggers")]

    try:
        engine.start()
        wait_for(lambda: sorted(stream_customers()) == sorted([GONE.encode(), KEPT.encode()])
                 and read_profile(redis_client, GONE) is not None, 120, engine, "both reminders and profiles")
        assert redis_client.keys("crm:trigger:*") and len(redis_client.keys("crm:trigger:*")) == 2
        # writes to Redis block from now on: the erasure is read and cannot complete
        redis_client.execute_command("CLIENT", "PAUSE", "120000", "WRITE")
        erased_at = t0 + timedelta(minutes=50)
        kafka_broker.produce(topics["profile_topic"], [orjson.dumps(
            {"event_id": "x1", "type": "erasure_requested", "customer_id": GONE, "ts": iso(erased_at)})], partition=0)
        wait_for(lambda: "redis write failed" in engine.tail(), 60, engine, "the erasure's Redis write to block")
        engine.kill()
        redis_client.execute_command("CLIENT", "UNPAUSE")
        assert read_profile(redis_client, GONE) is not None and redis_client.xlen("crm:audit") == 0  # not completed

        engine.start()
        wait_for(lambda: redis_client.xlen("crm:audit") >= 1, 120, engine, "the erasure after the restart")
        assert read_profile(redis_client, GONE) is None
        assert not redis_client.exists(f"crm:customer:{GONE}:triggers")  # the API's index of the customer
        assert redis_client.exists(f"crm:customer:{KEPT}:triggers")
        assert stream_customers() == [KEPT.encode()] and len(redis_client.keys("crm:trigger:*")) == 1
        assert read_profile(redis_client, KEPT) is not None
        [(_, fields)] = redis_client.xrange("crm:audit")[:1]
        record = orjson.loads(fields[b"record"])
        assert record["customer_id"] == GONE and record["removed"]["redis_trigger_entries"] == 1
        tombs = redis_client.hgetall("crm:tombstones")
        assert list(tombs.values()) == [str(int(erased_at.timestamp() * 1000)).encode()]
        assert GONE.encode() not in b"".join(tombs)
        audit = kafka_broker.consume_all(topics["audit_topic"], timeout=30, min_count=1)
        assert {orjson.loads(m.value())["customer_id"] for m in audit} == {GONE}

        # a late event from before the erasure does not bring the customer back; a return after it starts fresh
        back = t0 + timedelta(minutes=90)
        kafka_broker.produce(topics["clickstream_topic"], [
            click("g3", GONE, t0 + timedelta(minutes=20)),
            click("g4", GONE, back, "add_to_cart", product_id="p7", price=1.0)], partition=0)
        wait_for(lambda: read_profile(redis_client, GONE) is not None, 60, engine, "the returning customer")
        time.sleep(2)
        # g4 waits in the reorder buffer (lateness); g3, had it been applied, would have been released
        # by g4's clock at once and made first_seen 00:20
        assert (read_profile(redis_client, GONE).get("first_seen") or iso(back)).startswith(iso(back)[:16])
        assert read_profile(redis_client, GONE)["order_count"] == 0
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
        engine.stop()
    log = engine.log.read_text(errors="replace")
    assert GONE not in log and KEPT not in log  # the engine logs at INFO: no customer id in it
