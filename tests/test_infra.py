"""Smoke tests for the integration-test infrastructure (real Redis + Kafka protocol)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import redis

import infra

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- Redis


def test_redis_ping_and_streams(redis_client, redis_server):
    assert redis_server.port != 6379
    assert redis_client.ping() is True
    ids = [redis_client.xadd("events", {"n": str(i), "kind": "order"}) for i in range(5)]
    rows = redis_client.xrange("events")
    assert [r[0] for r in rows] == ids
    assert [r[1][b"n"] for r in rows] == [str(i).encode() for i in range(5)]
    assert redis_client.xlen("events") == 5


def test_redis_client_is_flushed_between_tests(redis_client):
    assert redis_client.dbsize() == 0  # the previous test's stream is gone


def test_redis_stop_start_same_port(redis_server, redis_client):
    port, old_pid = redis_server.port, redis_server.pid
    redis_client.set("k", "v")
    redis_server.stop()
    assert not redis_server.is_running()
    assert not redis_server.ping()
    with pytest.raises(redis.exceptions.ConnectionError):
        redis_client.ping()
    redis_server.start()
    assert redis_server.port == port and redis_server.pid != old_pid
    # the same client object reconnects by itself; data is gone (no persistence)
    assert redis_client.ping() is True
    assert redis_client.get("k") is None


# ---------------------------------------------------------------- Kafka


def test_kafka_three_partitions_keys_preserved(kafka_broker, kafka_topics):
    topic = kafka_topics("orders", partitions=3)
    nparts = kafka_broker.partitions(topic)
    if kafka_broker.supports_create_topics:
        assert nparts == 3
    else:  # mock cluster: auto-created, partition count not selectable
        assert nparts == infra.AUTO_CREATE_PARTITIONS

    values = [f"order-{i}".encode() for i in range(60)]
    base_ts = 1_700_000_000_000
    n = kafka_broker.produce(topic, values, key_fn=lambda v: b"cust-" + v[-1:],
                             timestamps=[base_ts + i for i in range(60)])
    assert n == 60

    msgs = kafka_broker.consume_all(topic, timeout=20)
    assert sorted(m.value() for m in msgs) == sorted(values)
    for m in msgs:
        assert m.key() == b"cust-" + m.value()[-1:]
        ts_type, ts = m.timestamp()
        assert ts == base_ts + int(m.value().split(b"-")[1])  # CreateTime preserved
    # keyed messages spread over several partitions, and one key -> one partition
    assert len({m.partition() for m in msgs}) > 1
    part_of_key: dict = {}
    for m in msgs:
        assert part_of_key.setdefault(m.key(), m.partition()) == m.partition()
    # offsets are dense from 0 in every partition
    for p in {m.partition() for m in msgs}:
        offs = [m.offset() for m in msgs if m.partition() == p]
        assert offs == list(range(len(offs)))


def test_kafka_explicit_partition_and_empty_topic(kafka_broker, kafka_topics):
    topic = kafka_topics("explicit", partitions=3)
    assert kafka_broker.consume_all(topic, timeout=10) == []
    kafka_broker.produce(topic, [b"a", b"b", b"c"], partition=1)
    msgs = kafka_broker.consume_all(topic, timeout=10)
    assert [(m.partition(), m.value()) for m in msgs] == [(1, b"a"), (1, b"b"), (1, b"c")]


def test_bytewax_kafka_source_and_sink(kafka_broker, kafka_topics):
    """Bytewax 0.21.1 KafkaSource (tail=False -> stops at EOF) -> map -> KafkaSink."""
    from bytewax import operators as op
    from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.testing import run_main
    from confluent_kafka import OFFSET_BEGINNING

    in_topic = kafka_topics("in", partitions=3)
    out_topic = kafka_topics("out", partitions=3)
    values = [f"msg-{i:03d}".encode() for i in range(50)]
    base_ts = 1_700_000_000_000
    kafka_broker.produce(in_topic, values, key_fn=lambda v: v[-1:],
                         timestamps=[base_ts + 1000 * i for i in range(50)])

    seen = []
    flow = Dataflow("infra_kafka_roundtrip")
    src = op.input("in", flow, KafkaSource(
        kafka_broker.brokers, [in_topic],
        tail=False,                       # enable.partition.eof=True: finish at end of each partition
        starting_offset=OFFSET_BEGINNING,
        add_config={"log_level": "3"},    # nothing else needed for Tansu / mock
        batch_size=16,
        raise_on_errors=True,
    ))
    op.inspect("seen", src, lambda _step, m: seen.append(m))
    out = op.map("upper", src, lambda m: KafkaSinkMessage(
        key=m.key, value=m.value.upper(),
        headers=[("src-partition", str(m.partition).encode())],
        timestamp=m.timestamp[1],         # keep event time; default 0 = "now"
    ))
    op.output("out", out, KafkaSink(kafka_broker.brokers, out_topic, add_config={"log_level": "3"}))

    t0 = time.monotonic()
    run_main(flow)
    assert time.monotonic() - t0 < 30

    assert len(seen) == 50
    assert {m.topic for m in seen} == {in_topic}
    assert all(m.timestamp[1] >= base_ts for m in seen)

    msgs = kafka_broker.consume_all(out_topic, min_count=50, timeout=20)
    assert Counter((m.key(), m.value()) for m in msgs) == Counter((v[-1:], v.upper()) for v in values)
    for m in msgs:
        i = int(m.value().split(b"-")[1])
        assert m.timestamp()[1] == base_ts + 1000 * i
        assert dict(m.headers())["src-partition"] in {b"0", b"1", b"2", b"3"}


def test_bytewax_source_stops_with_empty_partitions(kafka_broker, kafka_topics):
    """tail=False must also finish when some (or all) partitions are empty."""
    from bytewax import operators as op
    from bytewax.connectors.kafka import KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, run_main

    topic = kafka_topics("sparse", partitions=3)
    empty = kafka_topics("empty", partitions=2)
    kafka_broker.produce(topic, [b"x1", b"x2"], partition=0)

    got: list = []
    flow = Dataflow("infra_sparse")
    src = op.input("in", flow, KafkaSource(kafka_broker.brokers, [topic, empty], tail=False))
    op.output("out", op.map("v", src, lambda m: (m.topic, m.partition, m.value)), TestingSink(got))
    t0 = time.monotonic()
    run_main(flow)
    assert time.monotonic() - t0 < 20
    assert sorted(got) == [(topic, 0, b"x1"), (topic, 0, b"x2")]


def test_ensure_redis_server_binary_error_is_clear(monkeypatch):
    """No redis-server and no way to install it -> RuntimeError that says what to do."""
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    monkeypatch.setattr(infra.shutil, "which", lambda name: None)
    monkeypatch.setattr(infra.os, "access", lambda path, mode: False)
    monkeypatch.setattr(infra.os, "geteuid", lambda: 1000)
    with pytest.raises(RuntimeError, match="redis-server is not on PATH.*apt-get install -y redis-server"):
        infra.ensure_redis_server_binary()
