"""Kafka edges: the input topics as ``(value bytes, "topic/partition/offset")`` items, and sinks.

Built on Bytewax's own connector (partitions assigned directly, no consumer group: offsets live
in Bytewax recovery). Consumer errors are counted and logged, never fatal. A broker outage is
ridden out: the consumer reconnects by itself, and the producers keep what they could not deliver
and wait for it at each snapshot (logging and counting retries) until ``kafka.retry_give_up``
has passed; only then does the worker stop, to be restarted from its last snapshot.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional

from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSource
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, Producer, TopicPartition

from config.jsonsafe import dumps, encode_str
from config.settings import KafkaSettings
from connectors.metrics import telemetry

log = logging.getLogger("crm.kafka")

Tap = Callable[[str, int, int, bytes], None]  # (topic, partition, timestamp ms, value): the archive


class _Partition(StatefulSourcePartition):
    def __init__(self, inner: StatefulSourcePartition, tap: Optional[Tap], topic: str, partition: int):
        self.inner = inner
        self.tap = tap
        self.topic = topic
        self.partition = partition
        self.next_offset = -1
        self.lag_at = 0.0

    def next_batch(self) -> list:
        out = self._batch()
        now = time.monotonic()
        if now - self.lag_at >= 1.0:
            self.lag_at = now
            self._report_lag()
        return out

    def _report_lag(self) -> None:
        """High watermark (cached from librdkafka's statistics, no request) minus the next offset."""
        consumer = getattr(self.inner, "_consumer", None)  # bytewax keeps its consumer private
        if consumer is None or self.next_offset < 0:
            return
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, self.partition), cached=True)
        except Exception:  # noqa: BLE001 - lag is best effort, never fatal
            return
        if high >= 0:
            telemetry().consumer_lag.labels(self.topic, str(self.partition)).set(max(0, high - self.next_offset))

    def _batch(self) -> list:
        out = []
        for msg in self.inner.next_batch():
            if hasattr(msg, "err"):  # bytewax KafkaError: count it, keep going
                telemetry().sink_errors.labels("kafka_consumer").inc()
                log.warning("kafka consumer error: %s", msg.err)
                continue
            value = msg.value if msg.value is not None else b""
            if self.tap is not None:
                self.tap(msg.topic, msg.partition, msg.timestamp[1], value)
            out.append((value, f"{msg.topic}/{msg.partition}/{msg.offset}", msg.offset))
            self.next_offset = msg.offset + 1
        return out

    def next_awake(self):
        return self.inner.next_awake()

    def snapshot(self):
        if self.tap is not None and hasattr(self.tap, "flush"):
            self.tap.flush()  # what the snapshot's offset says was consumed is on disk
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class KafkaUnavailable(RuntimeError):
    """No broker answered within ``kafka.retry_give_up``."""


def wait_for_brokers(cfg: KafkaSettings, step_s: float = 1.0) -> int:
    """Return the number of brokers once the cluster answers a metadata request.

    Bytewax lists the input partitions with no timeout: with no broker reachable, a start would
    hang there for ever, deaf to SIGTERM. This asks first, in short steps (a signal is handled
    between them), logging a warning every few seconds, for at most ``kafka.retry_give_up``."""
    from confluent_kafka.admin import AdminClient

    give_up = cfg.retry_give_up.total_seconds()
    deadline = time.monotonic() + give_up
    # librdkafka's own connection errors would repeat every 50 ms: its log stays quiet, we say it
    admin = AdminClient({"bootstrap.servers": cfg.bootstrap_servers, **cfg.extra, "log_level": "0"})
    said = 0.0
    while True:
        try:
            brokers = len(admin.list_topics(timeout=step_s).brokers)
            if brokers:
                return brokers
            problem = "no broker in the metadata"
        except KafkaException as exc:
            problem = str(exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc)
        now = time.monotonic()
        if now >= deadline:
            raise KafkaUnavailable(f"no Kafka broker at {cfg.bootstrap_servers} answered for {give_up:.0f} s "
                                   f"({problem}); giving up")
        if now - said >= 5.0:
            said = now
            log.warning("no Kafka broker at %s answers yet (%s); retrying", cfg.bootstrap_servers, problem)


class KafkaEventSource(FixedPartitionedSource):
    """Every partition of the input topics as ``(value, "topic/partition/offset", offset)`` items;
    ``tail=False`` stops at the current end (tests, replay)."""

    def __init__(self, cfg: KafkaSettings, tail: bool = True, tap: Optional[Tap] = None,
                 topics: Optional[list[str]] = None, starting_offset: Optional[int] = None):
        start = starting_offset
        if start is None:
            start = OFFSET_BEGINNING if cfg.starting_offset == "beginning" else OFFSET_END
        # A fetch that finds nothing new waits at most this long on the broker: the default 500 ms
        # would be added to the latency of every event that arrives on an idle partition.
        consumer = {"fetch.wait.max.ms": str(cfg.fetch_wait_ms), **cfg.extra}
        self.inner = KafkaSource(cfg.bootstrap_servers.split(","), topics or cfg.input_topics, tail=tail,
                                 starting_offset=start, add_config=consumer, batch_size=cfg.batch_size,
                                 raise_on_errors=False)
        self.tap = tap

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state):
        idx, topic = for_part.split("-", 1)
        return _Partition(self.inner.build_part(step_id, for_part, resume_state), self.tap, topic, int(idx))


class _ProducerPartition(StatefulSinkPartition):
    FLUSH_STEP_S = 5.0  # how often a wait for an unreachable broker says so

    def __init__(self, config: dict, topic: str, name: str, give_up_s: float):
        self.producer = Producer(config)
        self.topic = topic
        self.name = name
        self.give_up_s = give_up_s
        self.failed = 0

    def _delivered(self, err, _msg) -> None:
        if err is not None:
            self.failed += 1
            telemetry().sink_errors.labels(self.name).inc()

    def write_batch(self, items: list) -> None:
        for msg in items:
            while True:
                try:
                    self.producer.produce(self.topic, msg.value, msg.key, on_delivery=self._delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    telemetry().sink_retries.labels(self.name).inc()
                    self.producer.poll(0.1)
        self.producer.poll(0)
        telemetry().sink_writes.labels(self.name).inc(len(items))

    def snapshot(self) -> None:
        # Before Bytewax commits a snapshot everything written so far must be acknowledged:
        # this is what keeps the sink at-least-once across a crash. While the broker is away the
        # flow waits here (nothing is lost: the messages stay in the producer's queue).
        deadline = time.monotonic() + self.give_up_s
        remaining = self.producer.flush(min(self.FLUSH_STEP_S, self.give_up_s))
        while remaining and not self.failed and time.monotonic() < deadline:
            telemetry().sink_retries.labels(self.name).inc()
            log.warning("kafka sink %s: %d messages not yet acknowledged (broker unreachable?); retrying",
                        self.topic, remaining)
            remaining = self.producer.flush(max(0.0, min(self.FLUSH_STEP_S, deadline - time.monotonic())))
        if remaining or self.failed:
            failed, self.failed = self.failed, 0
            raise RuntimeError(f"kafka sink {self.topic}: {remaining} undelivered after "
                               f"{self.give_up_s:.0f} s, {failed} failed; giving up (restart resumes "
                               f"from the last snapshot)")
        return None

    def close(self) -> None:
        self.producer.flush(30)


class KafkaProducerSink(FixedPartitionedSink):
    """Produces ``KafkaSinkMessage`` items to one topic without waiting for acks per batch (that wait
    sat on the latency of every later event); acks are awaited when Bytewax takes a snapshot."""

    def __init__(self, cfg: KafkaSettings, topic: str, name: str):
        give_up_ms = int(cfg.retry_give_up.total_seconds() * 1000)
        # librdkafka must not expire a queued message before we give up on the broker ourselves
        self.config = {"bootstrap.servers": cfg.bootstrap_servers, "linger.ms": "5",
                       "message.timeout.ms": str(give_up_ms), **cfg.extra}
        self.give_up_s = int(self.config["message.timeout.ms"]) / 1000
        self.topic = topic
        self.name = name

    def list_parts(self) -> list[str]:
        return ["producer"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ProducerPartition:
        return _ProducerPartition(dict(self.config), self.topic, self.name, self.give_up_s)


def kafka_sink(cfg: KafkaSettings, topic: str, name: str = "kafka") -> KafkaProducerSink:
    return KafkaProducerSink(cfg, topic, name)


def encode_keyed(item: tuple[str, dict]) -> tuple[str, KafkaSinkMessage]:
    """``(customer_id, record)`` -> a message keyed by the customer."""
    key, record = item
    return key, KafkaSinkMessage(encode_str(key), dumps(record))


def encode_unkeyed(item: tuple[str, dict]) -> tuple[str, KafkaSinkMessage]:
    return item[0], KafkaSinkMessage(None, dumps(item[1]))


def export_range(cfg: KafkaSettings, from_ms: int, to_ms: int, out: Path, topics: Optional[list[str]] = None,
                 idle_timeout: float = 10.0) -> int:
    """Write the input messages whose Kafka timestamp lies in [from_ms, to_ms) to ``out`` (JSONL,
    values byte for byte), sorted by timestamp; return how many. Each partition starts at the
    offset ``offsets_for_times`` gives for ``from_ms`` and is read to its end; the timestamps are
    checked again on the client, since some Kafka-protocol brokers answer that lookup loosely."""
    consumer = Consumer({"bootstrap.servers": cfg.bootstrap_servers, "group.id": "crm-stream-replay",
                         "enable.auto.commit": "false", "enable.partition.eof": "true", **cfg.extra})
    rows: list[tuple[int, str, int, int, bytes]] = []
    try:
        parts = []
        for topic in topics or cfg.input_topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise KafkaException(meta.error)
            parts += [TopicPartition(topic, p, from_ms) for p in sorted(meta.partitions)]
        starts = consumer.offsets_for_times(parts, timeout=10) if parts else []
        assign = [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                  for tp in starts]
        if any(tp.offset < 0 and tp.offset != OFFSET_BEGINNING for tp in starts):
            assign = [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in starts]
        consumer.assign(assign)
        open_parts = {(tp.topic, tp.partition) for tp in assign}
        deadline = time.monotonic() + idle_timeout
        while open_parts and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == -191:  # _PARTITION_EOF
                        open_parts.discard((msg.topic(), msg.partition()))
                    continue
                deadline = time.monotonic() + idle_timeout
                ts = msg.timestamp()[1]
                if from_ms <= ts < to_ms:
                    rows.append((ts, msg.topic(), msg.partition(), msg.offset(), msg.value() or b""))
    finally:
        consumer.close()
    rows.sort()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        for *_, value in rows:
            f.write(value.replace(b"\n", b" ") + b"\n")
    return len(rows)
