"""Crash safety: `crm-stream run` killed with SIGKILL and restarted from Bytewax recovery loses and
duplicates nothing downstream; the archive replays to the same triggers; Redis outages are ridden out.

The input goes to one single-partition topic so that the live run sees exactly the order a replay
of the same bytes sees: these tests are about restart semantics, not about how three topics
interleave (in production a customer's topics are not totally ordered; the 5-minute lateness
window absorbs that skew).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from helpers import with_closing_events

from config.settings import load_settings
from flows.replay import ReplayOutputs, replay
from flows.generator import generate

pytestmark = pytest.mark.integration


def world(tmp_path: Path, customers: int = 150, days: int = 10, history: bool = True) -> list[bytes]:
    """Simulated events plus one closing page view per customer far after the end, so that every
    timer of the simulated period is passed by an event both live and in replay."""
    generate(customers, days, 5, tmp_path, history=history)
    return with_closing_events(tmp_path.joinpath("events.jsonl").read_bytes().splitlines())


def replay_triggers(tmp_path: Path, lines: list[bytes]) -> dict[str, dict]:
    log = tmp_path / "input.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    out = ReplayOutputs(tmp_path / "replay-triggers.jsonl", tmp_path / "replay-dlq.jsonl", tmp_path / "replay.json")
    replay(load_settings(), [log], out)
    return {t["trigger_id"]: t for t in map(orjson.loads, out.triggers.read_bytes().splitlines())}


def replay_ids(tmp_path: Path, lines: list[bytes]) -> set[str]:
    return set(replay_triggers(tmp_path, lines))


class Engine:
    """`crm-stream run` as a separate process, the way operators run it."""

    def __init__(self, tmp_path: Path, kafka_broker, redis_url: str, topics: dict, **env):
        self.env = {**os.environ, "CRM_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "CRM_REDIS__URL": redis_url,
                    "CRM_METRICS_PORT": "0", "CRM_RECOVERY_DIR": str(tmp_path / "recovery"),
                    "CRM_SNAPSHOT_INTERVAL": "0.5", "CRM_KAFKA__BATCH_SIZE": "200",
                    "CRM_KAFKA__IDLE_AFTER": "1",  # the empty input topics stop holding timers after 1 s
                    "CRM_POLICY__MAX_TRIGGER_AGE": str(100 * 365 * 86400),  # simulated months ago: not stale
                    **{f"CRM_KAFKA__{k.upper()}": v for k, v in topics.items()}, **env}
        self.cwd = tmp_path
        self.proc = None
        self.log = tmp_path / "engine.log"

    def start(self, *args: str) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", *args], env=self.env,
                                         cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def wait_for(predicate, timeout: float, engine: Engine, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert engine.alive(), f"engine died while waiting for {what}:\n{engine.tail()}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n{engine.tail()}")


# the topics of a broker a test starts for itself (nothing else uses it)
OWN_TOPICS = {"clickstream_topic": "in", "orders_topic": "orders", "chat_topic": "chat",
              "triggers_topic": "triggers", "deadletter_topic": "dlq"}


def wait_for_kafka_ids(broker, topic: str, expected: set, engine: "Engine", timeout: float = 120) -> set:
    """The trigger ids on ``topic`` once they include every one of ``expected``."""
    ids: set = set()

    def has_all() -> bool:
        ids.update(orjson.loads(m.value())["trigger_id"] for m in broker.consume_all(topic, timeout=30))
        return ids >= expected

    wait_for(has_all, timeout, engine, "all triggers on Kafka")
    return ids


def redis_trigger_ids(client) -> list[str]:
    return [e[1][b"trigger_id"].decode() for e in client.xrange("crm:triggers")]


def topics_for(kafka_topics) -> dict:
    return {"clickstream_topic": kafka_topics("in", partitions=1), "orders_topic": kafka_topics("orders"),
            "chat_topic": kafka_topics("chat"), "triggers_topic": kafka_topics("triggers"),
            "deadletter_topic": kafka_topics("dlq")}


def test_sigkill_and_restart_loses_and_duplicates_nothing(tmp_path, kafka_broker, kafka_topics, redis_client,
                                                          redis_url):
    lines = world(tmp_path)
    clean = replay_triggers(tmp_path, lines)
    expected = set(clean)
    assert len(expected) > 100
    assert sum(1 for t in clean.values() if "churn_risk" in t["reasons"]) > 10  # model-driven ones too
    topics = topics_for(kafka_topics)
    kafka_broker.produce(topics["clickstream_topic"], lines, partition=0)

    engine = Engine(tmp_path, kafka_broker, redis_url, topics)
    try:
        for share in (0.1, 0.4, 0.7):  # kill at several points of the consumption
            engine.start()
            wait_for(lambda: redis_client.xlen("crm:triggers") >= share * len(expected), 120, engine,
                     f"{share:.0%} of the triggers")
            engine.kill()
        engine.start()
        wait_for(lambda: redis_client.xlen("crm:triggers") >= len(expected), 120, engine, "all triggers")
        wait_for_kafka_ids(kafka_broker, topics["triggers_topic"], expected, engine)
        time.sleep(1.0)  # anything extra would show up now
    finally:
        engine.stop()

    entries = redis_client.xrange("crm:triggers")
    stream_ids = [e[1][b"trigger_id"].decode() for e in entries]
    assert len(stream_ids) == len(set(stream_ids)), "duplicate entries in the Redis stream"
    assert set(stream_ids) == expected
    # The models (Bytewax state) came back from every snapshot: each score equals the clean replay's.
    scores = {e[1][b"trigger_id"].decode(): orjson.loads(e[1][b"trigger"])["score"] for e in entries}
    assert scores == {i: t["score"] for i, t in clean.items()}
    kafka_ids = {orjson.loads(m.value())["trigger_id"] for m in kafka_broker.consume_all(topics["triggers_topic"])}
    assert kafka_ids == expected  # at-least-once on Kafka: the same set, deduplicated by id


def test_archive_replays_to_the_live_triggers(tmp_path, kafka_broker, kafka_topics, redis_client, redis_url):
    lines = world(tmp_path, customers=60, days=7)
    topics = topics_for(kafka_topics)
    kafka_broker.produce(topics["clickstream_topic"], lines, partition=0)
    expected = replay_ids(tmp_path, lines)
    engine = Engine(tmp_path, kafka_broker, redis_url, topics)
    archive = tmp_path / "archive"
    try:
        engine.start("--archive", str(archive))
        wait_for(lambda: redis_client.xlen("crm:triggers") >= len(expected), 120, engine, "all triggers")
    finally:
        engine.stop()
    live = set(redis_trigger_ids(redis_client))
    assert live == expected
    files = sorted(archive.rglob("*.jsonl.gz"))
    assert files and all(f.parent.name == topics["clickstream_topic"] for f in files)
    out = ReplayOutputs(tmp_path / "a-t.jsonl", tmp_path / "a-d.jsonl", tmp_path / "a-s.json")
    summary = replay(load_settings(), files, out)
    assert summary["events_read"] >= len(lines)
    assert {orjson.loads(x)["trigger_id"] for x in out.triggers.read_bytes().splitlines()} == live


def test_redis_down_for_a_while_then_everything_is_delivered(tmp_path, kafka_broker, kafka_topics, redis_server,
                                                             redis_client, redis_url):
    lines = world(tmp_path, customers=60, days=7)
    expected = replay_ids(tmp_path, lines)
    topics = topics_for(kafka_topics)
    engine = Engine(tmp_path, kafka_broker, redis_url, topics, CRM_REDIS__RETRY_GIVE_UP="120")
    try:
        engine.start()
        time.sleep(2)
        redis_server.stop()
        kafka_broker.produce(topics["clickstream_topic"], lines, partition=0)
        time.sleep(float(os.environ.get("CRM_TEST_REDIS_OUTAGE_S", "30")))  # the 30 s outage
        assert engine.alive(), engine.tail()
        redis_server.start()
        client = redis_server.client()
        wait_for(lambda: client.xlen("crm:triggers") >= len(expected), 120, engine, "delivery after the outage")
    finally:
        engine.stop()
    ids = redis_trigger_ids(client)
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert "retrying" in engine.log.read_text(errors="replace")  # the outage was seen and ridden out


def test_broker_frozen_for_a_while_then_everything_is_delivered(tmp_path, redis_client, redis_url):
    """The broker stops answering mid-stream (SIGSTOP: connections stay open, nothing is acked, as
    in a network partition or a long GC pause) and comes back: the engine waits at its snapshot
    for the trigger acks instead of dying, then delivers every trigger, once to Redis and at
    least once to Kafka. A broker of this test's own (Tansu, a separate process) is frozen, so the
    shared one stays untouched."""
    import infra

    # KNOWN BUG (CHANGELOG; tests/test_model_order.py pins it without a broker): with the backfilled
    # history, ~25 of 2,558 churn outreach triggers differ from the replay. During the freeze the
    # wall clock moves every customer's frontier 12 s on, releasing held events a replay releases
    # only at that customer's next event (one customer's return, 2.4 s short: its five churn
    # labels reach the model shard ~90 customers earlier); the shard learns in arrival order, so
    # later scores differ. This test is about delivery, so its world has no backfilled history
    lines = world(tmp_path, customers=250, days=7, history=False)
    expected = replay_ids(tmp_path, lines)
    broker = infra.KafkaBroker("tansu").start()
    try:
        topics = OWN_TOPICS
        broker.create_topics(list(topics.values()), partitions=1)
        broker.produce(topics["clickstream_topic"], lines, partition=0)
        # small polls: the engine is still working through the prefetched input when the broker freezes
        engine = Engine(tmp_path, broker, redis_url, topics, CRM_KAFKA__BATCH_SIZE="20")
        try:
            engine.start()
            wait_for(lambda: redis_client.xlen("crm:triggers") >= 0.05 * len(expected), 120, engine,
                     "the first triggers")
            os.kill(broker.proc.pid, signal.SIGSTOP)
            try:
                time.sleep(float(os.environ.get("CRM_TEST_BROKER_OUTAGE_S", "12")))
                assert engine.alive(), engine.tail()
                during = redis_client.xlen("crm:triggers")
            finally:
                os.kill(broker.proc.pid, signal.SIGCONT)
            assert during < len(expected)  # the outage held delivery up: the engine waited for acks
            wait_for(lambda: redis_client.xlen("crm:triggers") >= len(expected), 120, engine, "all triggers")
            kafka_ids = wait_for_kafka_ids(broker, topics["triggers_topic"], expected, engine, timeout=60)
            engine.stop(signal.SIGTERM)  # as Kubernetes or systemd stop it: a clean exit
            assert engine.proc.returncode == 0, engine.tail()
        finally:
            engine.stop()
        ids = redis_trigger_ids(redis_client)
        assert len(ids) == len(set(ids)) and set(ids) == expected
        assert kafka_ids == expected
        # the outage was seen: a snapshot waited for unacknowledged triggers and said so
        assert "not yet acknowledged (broker unreachable?); retrying" in engine.log.read_text(errors="replace")
    finally:
        broker.stop()


def test_broker_away_past_the_give_up_stops_the_worker_and_a_restart_delivers_all(tmp_path, redis_client,
                                                                                 redis_url):
    """Past ``kafka.retry_give_up`` the worker stops with a clear message instead of hanging; the
    restart resumes from the last snapshot, whose triggers had all been acknowledged: nothing is
    lost, Redis still holds each trigger once."""
    import infra

    # about delivery: without backfilled orders, as the frozen-broker world (the churn model's
    # arrival-order dependence is the known bug pinned by tests/test_model_order.py)
    lines = world(tmp_path, customers=250, days=7, history=False)
    expected = replay_ids(tmp_path, lines)
    broker = infra.KafkaBroker("tansu").start()
    try:
        topics = OWN_TOPICS
        broker.create_topics(list(topics.values()), partitions=1)
        broker.produce(topics["clickstream_topic"], lines, partition=0)
        engine = Engine(tmp_path, broker, redis_url, topics, CRM_KAFKA__BATCH_SIZE="20",
                        CRM_KAFKA__RETRY_GIVE_UP="3")
        try:
            engine.start()
            wait_for(lambda: redis_client.xlen("crm:triggers") >= 0.05 * len(expected), 120, engine,
                     "the first triggers")
            os.kill(broker.proc.pid, signal.SIGSTOP)
            try:
                engine.proc.wait(60)
            finally:
                os.kill(broker.proc.pid, signal.SIGCONT)
            assert engine.proc.returncode != 0
            log = engine.log.read_text(errors="replace")
            assert "undelivered after 3 s" in log and "giving up" in log, log[-3000:]
            engine.start()
            wait_for(lambda: redis_client.xlen("crm:triggers") >= len(expected), 120, engine, "all triggers")
            kafka_ids = wait_for_kafka_ids(broker, topics["triggers_topic"], expected, engine, timeout=120)
        finally:
            engine.stop()
        ids = redis_trigger_ids(redis_client)
        assert len(ids) == len(set(ids)) and set(ids) == expected
        assert kafka_ids == expected
    finally:
        broker.stop()


def test_no_broker_at_start_gives_up_with_a_message_and_hears_sigterm(tmp_path, redis_url):
    """Bytewax lists the input partitions with no timeout: without the check before it, a start
    with no broker reachable hung for ever, deaf to SIGTERM, with only librdkafka's log lines."""
    from types import SimpleNamespace

    import infra

    nobody = SimpleNamespace(bootstrap=f"127.0.0.1:{infra.free_port()}")  # nothing listens there
    topics = OWN_TOPICS
    engine = Engine(tmp_path, nobody, redis_url, topics, CRM_KAFKA__RETRY_GIVE_UP="3")
    engine.start()
    assert engine.proc.wait(60) == 1
    log = engine.log.read_text(errors="replace")
    assert "answers yet" in log and f"no Kafka broker at {nobody.bootstrap} answered for 3 s" in log, log[-2000:]

    (tmp_path / "second").mkdir()
    waiting = Engine(tmp_path / "second", nobody, redis_url, topics)  # the default give-up: 10 min
    waiting.start()
    try:
        wait_for(lambda: "answers yet" in waiting.log.read_text(errors="replace"), 30, waiting, "the retry warning")
        t0 = time.monotonic()
        waiting.proc.send_signal(signal.SIGTERM)
        assert waiting.proc.wait(15) == 0, waiting.tail()
        assert time.monotonic() - t0 < 5
    finally:
        waiting.stop()
