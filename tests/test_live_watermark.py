"""Live across topics (issue 13, section 2): a topic held back, an engine SIGKILLed and restarted
mid-stream, and still no timer fires early.

The orders topic is produced two hours of event time behind the clickstream and chat, and for a
while not at all (its partitions paused); the engine is killed with SIGKILL while it catches up
and restarted while the producer goes on. Its triggers are then compared with a replay of the
same events: none that the replay does not send, and at least 95 % of those the replay sends
before each customer's last event. Without the input watermark (CONTRACT.md, time across topics)
the clickstream's clock passes the due time of carts whose order has not been read yet.

The models are off (never warm): model-driven triggers depend on the order in which customers
reach the models, which live arrival changes, and through the policy's cooldowns they would blur
what is compared here, the timers and the rules.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from test_recovery import Engine, wait_for

from config.settings import load_settings
from flows.replay import ReplayOutputs, replay
from flows.generator import generate
from operators.events import CHAT_TYPES, CLICKSTREAM_TYPES, parse_ts

pytestmark = pytest.mark.integration

HOLD_BACK = 2 * 3600_000  # orders are produced this much event time behind the other topics (ms)
CHUNK = 20 * 60_000  # event time produced per step (ms)
MODELS_OFF = "1000000000"


def by_topic(lines: list[bytes]) -> list[tuple[str, int, bytes, bytes]]:
    """(topic kind, ts, key, line) per line, in log order; a line without a usable ts or customer
    keeps the previous ts and goes to the clickstream unkeyed (a dead letter either way)."""
    out, ts = [], 0
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        obj = obj if isinstance(obj, dict) else {}
        try:
            ts = parse_ts(obj["ts"])
        except Exception:  # noqa: BLE001 - bad lines stay where they were written
            pass
        kind = obj.get("type")
        topic = "click" if kind in CLICKSTREAM_TYPES or kind is None else "chat" if kind in CHAT_TYPES else "orders"
        key = obj["customer_id"].encode() if isinstance(obj.get("customer_id"), str) else b""
        out.append((topic, ts, key, line))
    return out


def replay_of(tmp_path: Path, lines: list[bytes]) -> dict[str, dict]:
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    out = ReplayOutputs(tmp_path / "replay-triggers.jsonl", tmp_path / "replay-dlq.jsonl", tmp_path / "replay.json")
    replay(load_settings(models={"warmup": int(MODELS_OFF)}), [log], out)
    return {t["trigger_id"]: t for t in map(orjson.loads, out.triggers.read_bytes().splitlines())}


def last_event_ts(rows) -> dict[str, int]:
    last: dict[str, int] = {}
    for _, ts, key, _ in rows:
        if key:
            last[key.decode()] = max(ts, last.get(key.decode(), ts))
    return last


def test_held_back_topic_and_sigkill_fire_no_timer_early(tmp_path, kafka_broker, kafka_topics, redis_client,
                                                         redis_url):
    generate(500, 4, 11, tmp_path, history=False)  # backfilled orders would stretch the steps over 45 days
    lines = tmp_path.joinpath("events.jsonl").read_bytes().splitlines()
    rows = by_topic(lines)
    clean = replay_of(tmp_path, lines)
    last = last_event_ts(rows)
    before_last = {i for i, t in clean.items() if parse_ts(t["event_ts"]) <= last[t["customer_id"]]}
    assert len(before_last) > 70 and sum(t["type"] == "abandoned_cart" for t in clean.values()) > 50

    # co-partitioned input: every topic keyed by customer_id, the same partition count
    names = {k: kafka_topics(k, partitions=2) for k in ("click", "orders", "chat")}
    topics = {"clickstream_topic": names["click"], "orders_topic": names["orders"], "chat_topic": names["chat"],
              "triggers_topic": kafka_topics("triggers"), "deadletter_topic": kafka_topics("dlq")}
    engine = Engine(tmp_path, kafka_broker, redis_url, topics, CRM_MODELS__WARMUP=MODELS_OFF,
                    CRM_KAFKA__IDLE_AFTER="5")  # longer than any pause of a topic below
    producer = kafka_broker.producer(**{"linger.ms": "5"})
    start = rows[0][1] - rows[0][1] % CHUNK
    steps = (rows[-1][1] - start) // CHUNK + 2 + HOLD_BACK // CHUNK
    paused = range(steps // 3, steps // 3 + 40)  # the orders partitions get nothing for 40 steps
    kill_at, restart_at = steps // 2, steps // 2 + 25
    pending = list(rows)  # produced in log order within each topic
    engine.start()
    try:
        for step in range(steps):
            end = start + (step + 1) * CHUNK
            keep = []
            for row in pending:
                topic, ts, key, line = row
                due = end - HOLD_BACK if topic == "orders" else end
                if ts < due and not (topic == "orders" and step in paused and step != steps - 1):
                    producer.produce(names[topic], line, key=key or None)
                else:
                    keep.append(row)
            pending = keep
            producer.flush(10)
            if step == kill_at:
                engine.kill()  # mid-stream, while it catches up; the producer goes on
            elif step == restart_at:
                engine.start()
            time.sleep(0.02)
        assert not pending

        def settled(state={"n": -1, "at": time.monotonic()}) -> bool:
            n = redis_client.xlen("crm:triggers")
            if n != state["n"]:
                state["n"], state["at"] = n, time.monotonic()
            # past idle_after: nothing more is coming (once something came: a restarted engine on a
            # loaded machine can take longer than that to send its first trigger)
            return n > 0 and time.monotonic() - state["at"] > 6.0
        wait_for(settled, 120, engine, "the triggers to settle")
    finally:
        engine.stop()

    live = {t["trigger_id"]: t for t in (orjson.loads(f[b"trigger"]) for _, f in redis_client.xrange("crm:triggers"))}
    extra = [(t["type"], t["customer_id"], t["event_ts"]) for i, t in live.items() if i not in clean]
    assert not extra, f"{len(extra)} live triggers the replay does not send: {extra[:10]}"
    found = len(live.keys() & before_last) / len(before_last)
    assert found >= 0.95, f"{found:.1%} of {len(before_last)} replay triggers came live"
    print(f"live-watermark: {len(before_last)} rule-driven replay triggers before the customers' last events, {found:.1%} came live, {len(extra)} extra")
