"""Rescaling: a live engine restarted from recovery with another worker count (2 -> 4 -> 1)
resumes without losing or duplicating a trigger (Bytewax routes resumed state by key over the
fixed recovery partitions; CONTRACT.md / README, Operations)."""

from __future__ import annotations

import time

import pytest
import orjson
from test_recovery import Engine, redis_trigger_ids, topics_for, wait_for, wait_for_kafka_ids, world

from config.settings import load_settings
from flows.replay import ReplayOutputs, replay

# With several input partitions the models learn in an order that depends on how the partitions
# interleave (offsets of different partitions do not compare): rule-driven triggers only.
MODELS_OFF = 1_000_000_000


def replay_ids(tmp_path, lines) -> set:
    log = tmp_path / "input.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json")
    replay(load_settings(models={"warmup": MODELS_OFF}), [log], out)
    return {orjson.loads(x)["trigger_id"] for x in out.triggers.read_bytes().splitlines()}

pytestmark = pytest.mark.integration


def test_restarts_with_2_then_4_then_1_workers_lose_and_duplicate_nothing(tmp_path, kafka_broker, kafka_topics,
                                                                           redis_client, redis_url):
    lines = world(tmp_path, customers=120, days=8)
    expected = replay_ids(tmp_path, lines)
    assert len(expected) > 80
    topics = {**topics_for(kafka_topics), "clickstream_topic": kafka_topics("in", partitions=4)}
    for i in range(4):  # four clickstream partitions, keyed by customer as producers do
        kafka_broker.produce(topics["clickstream_topic"], [x for j, x in enumerate(lines) if j % 4 == i], partition=i)
    engine = Engine(tmp_path, kafka_broker, redis_url, topics, CRM_MODELS__WARMUP=str(MODELS_OFF))
    try:
        for workers, share in (("2", 0.3), ("4", 0.6)):
            engine.start("-w", workers)
            wait_for(lambda: redis_client.xlen("crm:triggers") >= share * len(expected), 120, engine,
                     f"{share:.0%} of the triggers with {workers} workers")
            engine.kill()
        engine.start("-w", "1")
        wait_for(lambda: redis_client.xlen("crm:triggers") >= len(expected), 120, engine, "all triggers")
        wait_for_kafka_ids(kafka_broker, topics["triggers_topic"], expected, engine)
        time.sleep(1.0)
    finally:
        engine.stop()
    ids = redis_trigger_ids(redis_client)
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
