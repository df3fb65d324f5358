"""Kafka edges: the input topics as ``(value bytes, "topic/partition/offset")`` items, and sinks.

Built on Bytewax's own connector (partitions assigned directly, no consumer group: offsets live
in Bytewax recovery). Consumer errors are counted, logged and passed on as data
(:class:`ConsumerError`: the flow turns each into a ``consumer_error`` dead letter), never fatal. A broker outage is
ridden out: the consumer reconnects by itself, and the producers keep what they could not deliver
and wait for it at each snapshot (logging and counting retries) until ``kafka.retry_give_up``
has passed; only then does the worker stop, to be restarted from its last snapshot.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from collections import deque
from typing import Any, Callable, NamedTuple, Optional

from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSource
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, Producer, TopicPartition

from config.jsonsafe import dumps, encode_str
from config.settings import KafkaSettings
from connectors.metrics import telemetry
from connectors.watermark import IDLE, UNKNOWN, PartitionClock, Watermarks

log = logging.getLogger("crm.kafka")

Tap = Callable[[str, int, int, bytes], None]  # (topic, partition, timestamp ms, value): the archive
Decoder = Callable[[bytes, str], Any]  # (value, "topic/partition/offset") -> event or dead letter


class ConsumerError(NamedTuple):
    """A consumer error as an item of the input stream (there are no bytes to keep)."""

    source: str  # "topic/partition"
    detail: str  # librdkafka's error text; "(N since the last)" when a run of the same error was folded


class _ErrorFold:
    """One item per run of the same consumer error and at most one a minute while it repeats: a
    broker away must not flood the dead letters (each error is still counted)."""

    EVERY_S = 60.0

    def __init__(self) -> None:
        self.last: Optional[str] = None
        self.at = 0.0
        self.folded = 0

    def item(self, source: str, detail: str, now: float) -> Optional[ConsumerError]:
        if detail == self.last and now - self.at < self.EVERY_S:
            self.folded += 1
            return None
        text = f"{detail} ({self.folded} since the last)" if detail == self.last and self.folded else detail
        self.last, self.at, self.folded = detail, now, 0
        return ConsumerError(source, text)


class _NoWait:
    """A consumer whose ``consume`` never waits. Bytewax's partition polls with a 1 ms timeout, so
    every empty partition cost its worker 1 ms a round (16 input partitions at 2,000 events/s: most
    rounds about 12 ms, which each message waited half of); ``_Partition.next_awake`` paces instead."""

    def __init__(self, consumer: Consumer):
        self._consumer = consumer

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list:
        return self._consumer.consume(num_messages, 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


class _Partition(StatefulSourcePartition):
    PAUSE = timedelta(milliseconds=5)  # how often a paused partition looks again
    POLL_EVERY = timedelta(milliseconds=5)  # how soon one whose last poll did not fill a batch polls again

    def __init__(self, inner: StatefulSourcePartition, tap: Optional[Tap], topic: str, partition: int,
                 decode: Optional[Decoder] = None, clock: Optional[PartitionClock] = None,
                 watermarks: Optional[Watermarks] = None, ahead_ms: int = 0, batch_size: int = 0):
        self.inner = inner
        self.batch_size = batch_size
        self.more = True  # the last poll filled a batch (or there was none yet): poll again at once
        self.tap = tap
        self.topic = topic
        self.partition = partition
        self.next_offset = -1
        self.lag_at = 0.0
        self.decode = decode
        self.clock = clock
        self.finished = False
        self.event_lag = telemetry().event_lag.observe
        self.watermarks = watermarks if clock is not None else None
        if clock is not None:  # without watermarks no partition is ever idle: no series
            self.idle_gauge = telemetry().partition_idle.labels(topic, str(partition))
            self.idle_gauge.set(1 if clock.idle else 0)
        self.ahead_ms = ahead_ms
        self.paused = False
        self.buffer: deque = deque()  # (offset, kafka timestamp, value, decoded item) read, not yet let through
        self.exhausted = False  # a bounded read reached the end of the partition
        self.errors: list = []  # ConsumerError items not yet passed on
        self.fold = _ErrorFold()

    def _wait(self) -> bool:
        """Whether to skip this call: ahead of the frontier, or customers the frontier can wake go
        first (so what they held reaches the models before what this partition reads next)."""
        frontier = self.watermarks.here()  # this worker's (the source runs on its thread)
        clock = self.clock  # never before its first report: the frontier would wait for it for ever
        ahead = clock.sent is not None and clock.max_ts is not None and clock.max_ts > frontier.value + self.ahead_ms
        self.paused = ahead or frontier.has_ready()
        if ahead:  # held back with (as a rule) unread messages: not a quiet partition. A wait for the
            # ticks (one tick interval) is not held back: the next poll sees what came meanwhile
            clock.quiet_since = time.monotonic()
        return self.paused

    def next_batch(self) -> list:
        if self.watermarks is None:
            return self._plain()
        if self.finished:
            raise StopIteration()
        if self._wait():
            return []
        if not self.buffer and not self.exhausted:
            try:
                self._poll()
            except StopIteration:
                self.exhausted = True
        out = self._take_errors() + self._release()
        now = time.monotonic()
        if self.exhausted and not self.buffer:
            self.finished = True  # the end of a bounded read: say so before stopping
            out.append(self.clock.finish())
            return out
        wm = self.clock.polled(len(out) + len(self.buffer), now)  # a partition with a buffer is not quiet
        if wm is not None:
            out.append(wm)  # after the events it covers, on the same path to every worker
            self.idle_gauge.set(1 if wm.ts == IDLE else 0)
        self.paused = bool(self.buffer) and not out
        self._maybe_report_lag(now)
        return out

    def _plain(self) -> list:
        """Without watermarks: each poll as it comes."""
        out = self._batch()
        out = self._take_errors() + out
        self._maybe_report_lag(time.monotonic())
        return out

    def _messages(self, batch: list):
        """(message, value bytes) of one poll of the inner partition; a consumer error (bytewax
        passes a KafkaError in the batch) is counted and kept for :meth:`_take_errors`. The caller
        polls, so the inner partition's StopIteration at its end reaches Bytewax, not this generator."""
        for msg in batch:
            if hasattr(msg, "err"):
                telemetry().sink_errors.labels("kafka_consumer").inc()
                log.warning("kafka consumer error: %s", msg.err)
                item = self.fold.item(f"{self.topic}/{self.partition}", str(msg.err), time.monotonic())
                if item is not None:
                    self.errors.append(item)
                continue
            yield msg, (msg.value if msg.value is not None else b"")

    def _take_errors(self) -> list:
        out, self.errors = self.errors, []
        return out

    def _inner_batch(self) -> list:
        """One poll of the inner partition; notes whether it filled a batch (see :meth:`next_awake`)."""
        batch = self.inner.next_batch()
        self.more = len(batch) >= self.batch_size
        return batch

    def _poll(self) -> None:
        """Read one poll into the buffer (decoded where the partition is read)."""
        for msg, value in self._messages(self._inner_batch()):
            item = self.decode(value, f"{msg.topic}/{msg.partition}/{msg.offset}")
            if getattr(item, "ts", None) is not None:
                item.pos = msg.offset
            self.buffer.append((msg.offset, msg.timestamp[1], value, item))

    def _release(self) -> list:
        """The buffered items the frontier lets through, in offset order: all of them once every
        other partition has reported; before that (a first start) only the first, which reports
        this partition. Otherwise a whole poll would wait in its customers' state for the frontier
        and leave it in customer order, not input order, and the models would learn in another
        order than a replay of the same partition."""
        buf, clock = self.buffer, self.clock
        frontier = self.watermarks.here()
        others = frontier.others(clock.part)
        known = others > UNKNOWN  # every other partition has reported
        mine = frontier.parts.get(clock.part)
        # the frontier waits for this partition (never reported, or it has our latest and it is the
        # least): one event through, so partitions that know nothing of each other cannot all wait
        lowest = clock.sent is None or (mine == clock.sent and mine <= others)
        out: list = []
        while buf:
            offset, kafka_ts, value, item = buf[0]
            ts = getattr(item, "ts", None)
            if ts is not None and not known and not (lowest and not out):
                break
            buf.popleft()
            if self.tap is not None:  # archived when it enters the flow: a restart re-reads the rest
                self.tap(self.topic, self.partition, kafka_ts, value)
            if ts is not None:
                clock.observe(ts)
                self.event_lag(max(0.0, time.time() - ts / 1000.0))
            self.next_offset = offset + 1
            out.append(item)
        return out

    def _maybe_report_lag(self, now: float) -> None:
        if now - self.lag_at >= 1.0:
            self.lag_at = now
            self._report_lag()

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
        """One poll as ``(value, "topic/partition/offset", offset)`` items (the flow decodes them)."""
        out = []
        for msg, value in self._messages(self._inner_batch()):
            if self.tap is not None:
                self.tap(msg.topic, msg.partition, msg.timestamp[1], value)
            out.append((value, f"{msg.topic}/{msg.partition}/{msg.offset}", msg.offset))
            self.next_offset = msg.offset + 1
        return out

    def next_awake(self):
        if self.paused:
            return datetime.now(timezone.utc) + self.PAUSE
        if not self.more:  # read to the end of what had come: let more come (a full poll asks again at once)
            return datetime.now(timezone.utc) + self.POLL_EVERY
        return self.inner.next_awake()

    def snapshot(self):
        if self.tap is not None and hasattr(self.tap, "flush"):
            self.tap.flush()  # what the snapshot's offset says was consumed is on disk
        if self.clock is None:
            return self.inner.snapshot()
        offset = self.buffer[0][0] if self.buffer else self.inner.snapshot()  # the buffer is read again
        # a restart knows at once how far the partition got, and whether it was idle
        return (offset, self.clock.max_ts, self.clock.idle)

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
    admin = AdminClient({**cfg.client_config(), "log_level": "0"})
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
    ``tail=False`` stops at the current end (tests, replay).

    With ``decode`` (bytes, source -> item) and ``watermarks`` (always together: ValueError
    otherwise), items come decoded (an event's ``pos`` is its offset) and each partition adds a
    :class:`~connectors.watermark.Watermark` after a poll that moved its event time, when it turns
    idle after ``kafka.idle_after`` without messages, and at its end; a partition more than
    ``ahead_ms`` ahead of its worker's frontier pauses until the others catch up (Flink's watermark
    alignment), and no partition reads while customers the frontier has released still wait for
    their tick (they go first, in input order).

    A poll never waits in the consumer; a partition whose poll did not fill ``kafka.batch_size``
    polls again ``_Partition.POLL_EVERY`` (5 ms) later, one that did at once."""

    def __init__(self, cfg: KafkaSettings, tail: bool = True, tap: Optional[Tap] = None,
                 topics: Optional[list[str]] = None, starting_offset: Optional[int] = None,
                 decode: Optional[Decoder] = None, watermarks: Optional[Watermarks] = None, ahead_ms: int = 0):
        if (decode is None) != (watermarks is None):  # decoding at the source is for the watermark gate
            raise ValueError("KafkaEventSource: decode and watermarks go together")
        start = starting_offset
        if start is None:
            start = OFFSET_BEGINNING if cfg.starting_offset == "beginning" else OFFSET_END
        # A fetch that finds nothing new waits at most this long on the broker: the default 500 ms
        # would be added to the latency of every event that arrives on an idle partition.
        consumer = {"fetch.wait.max.ms": str(cfg.fetch_wait_ms), **cfg.client_config()}  # security included
        self.inner = KafkaSource(cfg.bootstrap_servers.split(","), topics or cfg.input_topics, tail=tail,
                                 starting_offset=start, add_config=consumer, batch_size=cfg.batch_size,
                                 raise_on_errors=False)
        self.tap = tap
        self.decode = decode
        self.watermarks = watermarks
        self.ahead_ms = ahead_ms
        self.batch_size = cfg.batch_size
        self.idle_after_s = cfg.idle_after.total_seconds()
        self.parts: Optional[list[str]] = None

    def list_parts(self) -> list[str]:
        self.parts = self.inner.list_parts()  # every worker lists them before any partition is built
        return self.parts

    def build_part(self, step_id: str, for_part: str, resume_state):
        idx, topic = for_part.split("-", 1)
        max_ts, idle = None, False
        if isinstance(resume_state, tuple):  # (offset, event time reached, idle); a bare offset: older
            resume_state, max_ts, idle = (*resume_state, False)[:3]
        inner = self.inner.build_part(step_id, for_part, resume_state)
        if hasattr(inner, "_consumer"):  # bytewax keeps its consumer private
            inner._consumer = _NoWait(inner._consumer)
        clock = None
        if self.watermarks is not None:
            parts = len(self.parts if self.parts is not None else self.list_parts())
            clock = PartitionClock(for_part, parts, self.idle_after_s, max_ts)
            # idle before the restart and still nothing to read: its idle_after has run out already
            clock.idle = idle and _nothing_to_read(inner, topic, int(idx))
        return _Partition(inner, self.tap, topic, int(idx), self.decode, clock, self.watermarks, self.ahead_ms,
                          self.batch_size)


def _nothing_to_read(inner: StatefulSourcePartition, topic: str, idx: int) -> bool:
    """Whether the partition's resume offset is its end (asked once at the start; False if unsure)."""
    consumer, start = getattr(inner, "_consumer", None), getattr(inner, "_offset", None)  # bytewax's own
    if consumer is None or start is None or start < 0:
        return False
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, idx), timeout=5)
    except Exception:  # noqa: BLE001 - then it waits idle_after again, as at a first start
        return False
    return start >= high


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
        self.config = {"linger.ms": "5", "message.timeout.ms": str(give_up_ms), **cfg.client_config()}
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
                 idle_timeout: float = 10.0) -> list[Path]:
    """Write the input messages whose Kafka timestamp lies in [from_ms, to_ms) into directory
    ``out``, one JSONL file per partition (values byte for byte, in offset order); return the
    files. Each partition starts at the offset ``offsets_for_times`` gives for ``from_ms`` and is
    read to its end; the timestamps are checked again on the client, since some Kafka-protocol
    brokers answer that lookup loosely.

    A replay merges these files by event time, as it merges any logs (the live watermark's order
    once every partition is read: CONTRACT.md, time across topics). One file sorted by Kafka
    timestamp would not do: that is when a message was produced, and a topic produced late (or
    ties within a millisecond, clickstream first) put a page view 2 h later before the order 2 min
    after the cart, and the replay reminded the customer of the item just bought."""
    consumer = Consumer({"group.id": "crm-stream-replay", "enable.auto.commit": "false",
                         "enable.partition.eof": "true", **cfg.client_config()})
    rows: dict[tuple[str, int], list[bytes]] = {}
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
                if from_ms <= msg.timestamp()[1] < to_ms:
                    rows.setdefault((msg.topic(), msg.partition()), []).append(msg.value() or b"")
    finally:
        consumer.close()
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.jsonl"):  # an earlier export's partitions must not join this replay
        stale.unlink()
    files = []
    for (topic, partition), values in sorted(rows.items()):
        path = out / f"{topic}-{partition}.jsonl"
        path.write_bytes(b"".join(v.replace(b"\n", b" ") + b"\n" for v in values))
        files.append(path)
    return files
