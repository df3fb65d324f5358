"""The Kafka source partition lets events into the flow only as far as the other partitions'
watermark allows (connectors.kafka._Partition), so nothing waits in a customer's state and the
models see events in input order: without Bytewax or a broker (a scripted inner partition)."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
from helpers import ms_at

from config.settings import load_settings
from connectors.kafka import _Partition
from connectors.watermark import IDLE, UNKNOWN, PartitionClock, Watermark, Watermarks
from flows.dataflow import live_decoder

LATENESS = 5 * 60_000


class Inner:
    """Bytewax's Kafka partition as far as ours uses it: polls of messages, a resume offset."""

    def __init__(self, topic: str, minutes: list[float], start: int = 0):
        self.msgs = [SimpleNamespace(topic=topic, partition=0, offset=i, timestamp=(1, 0),
                                     value=orjson.dumps({"event_id": f"{topic}{i}", "type": "page_view",
                                                         "customer_id": f"c{i}", "session_id": "s",
                                                         "ts": ms_at(m)}))
                     for i, m in enumerate(minutes)][start:]
        self.offset = start

    def next_batch(self):
        batch, self.msgs = self.msgs, []
        if batch:
            self.offset = batch[-1].offset + 1
        return batch

    def snapshot(self):
        return self.offset

    def next_awake(self):
        return None


def partition(topic: str, minutes: list[float], marks: Watermarks, taps: list):
    clock = PartitionClock(f"0-{topic}", 2, idle_after_s=30.0, now=0.0)
    return _Partition(Inner(topic, minutes), lambda *a: taps.append(a), topic, 0,
                      live_decoder(load_settings()), clock, marks, LATENESS)


def events(batch):
    return [x.event_id for x in batch if type(x) is not Watermark]


def deliver(marks: Watermarks, batch) -> None:
    for x in batch:
        if type(x) is Watermark:
            marks.here().observe(x)


def test_at_a_first_start_a_partition_lets_one_event_through_until_every_other_has_reported():
    marks, taps = Watermarks(), []
    clicks = partition("clicks", [0, 1, 2, 30, 31, 60], marks, taps)
    first = clicks.next_batch()
    assert events(first) == ["clicks0"]  # reports the partition; the rest would only wait downstream
    deliver(marks, first)
    assert clicks.snapshot()[0] == 1  # a restart reads the held-back messages again
    assert len(taps) == 1  # archived only once let through
    marks.here().observe(Watermark("0-orders", UNKNOWN, 2))  # an empty topic, not idle yet
    assert events(clicks.next_batch()) == []
    marks.here().observe(Watermark("0-orders", IDLE, 2))  # idle: it holds nothing back
    assert events(clicks.next_batch()) == ["clicks1", "clicks2", "clicks3", "clicks4", "clicks5"]
    assert clicks.snapshot()[0] == 6 and len(taps) == 6


def test_two_partitions_with_data_start_together():
    marks, taps = Watermarks(), []
    a = partition("a", [0, 100, 200], marks, taps)
    b = partition("b", [50, 150, 250], marks, taps)
    seen = []
    for _ in range(4):
        for p in (a, b):
            batch = p.next_batch()
            seen += events(batch)
            deliver(marks, batch)
    assert seen[:2] == ["a0", "b0"] and sorted(seen) == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_a_wait_for_the_ticks_does_not_restart_the_idle_countdown():
    """Only a partition held back ahead of the frontier is not quiet; one that paused while released
    customers waited for their tick turns idle ``idle_after`` after its last message all the same."""
    import time

    marks, taps = Watermarks(), []
    clock = PartitionClock("0-chat", 2, idle_after_s=0.3)
    chat = _Partition(Inner("chat", [0]), lambda *a: taps.append(a), "chat", 0, live_decoder(load_settings()),
                      clock, marks, LATENESS)
    read = time.monotonic()
    deliver(marks, chat.next_batch())
    marks.here().observe(Watermark("0-clicks", ms_at(10), 2))
    marks.here().wait("c1", ms_at(0))  # a customer the frontier has released, not yet ticked
    time.sleep(0.2)
    assert chat.next_batch() == [] and chat.paused  # the ticks go first
    assert marks.here().ready() == ["c1"]  # ticked
    time.sleep(max(0.0, read + 0.35 - time.monotonic()))
    assert [x.ts for x in chat.next_batch() if type(x) is Watermark] == [IDLE]


def test_a_partition_polls_again_at_once_after_a_full_batch_and_5_ms_after_a_short_one():
    from datetime import datetime, timezone

    from connectors.kafka import _NoWait

    marks, taps = Watermarks(), []
    clock = PartitionClock("0-clicks", 1, idle_after_s=30.0, now=0.0)
    clicks = _Partition(Inner("clicks", [0, 1, 2]), None, "clicks", 0, live_decoder(load_settings()), clock,
                        marks, LATENESS, batch_size=3)
    first = clicks.next_batch()  # the poll read all three (a full batch); a first start lets one through
    deliver(marks, first)
    assert events(first) == ["clicks0"] and clicks.next_awake() is None
    assert events(clicks.next_batch()) == ["clicks1", "clicks2"]
    assert events(clicks.next_batch()) == []  # a poll that found nothing
    wait = (clicks.next_awake() - datetime.now(timezone.utc)).total_seconds()
    assert 0 < wait <= 0.005
    asked: list = []  # Bytewax's partition asks its consumer to wait 1 ms: it does not
    consumer = _NoWait(SimpleNamespace(consume=lambda n, timeout: asked.append((n, timeout)) or [], name="c"))
    assert consumer.consume(500, 0.001) == [] and asked == [(500, 0)] and consumer.name == "c"


class Failing(Inner):
    """A partition whose polls carry consumer errors (bytewax passes a KafkaError in the batch)."""

    def __init__(self, topic: str, minutes: list[float], errors: list[str]):
        super().__init__(topic, minutes)
        self.msgs = [SimpleNamespace(err=e) for e in errors] + self.msgs


def test_consumer_errors_surface_as_dead_letters_and_a_repeating_one_is_folded():
    from connectors.kafka import ConsumerError
    from connectors.metrics import telemetry
    from flows.dataflow import make_decoder
    from operators.events import DeadLetter

    errors = ["Broker: Leader not available"] * 3 + ["Local: Timed out"]
    part = _Partition(Failing("clicks", [0, 1], errors), None, "clicks", 0)  # plain: without watermarks
    batch = part.next_batch()
    failures = [x for x in batch if type(x) is ConsumerError]
    assert [f.detail for f in failures] == ["Broker: Leader not available", "Local: Timed out"]
    assert len(batch) == 4  # the two errors and both messages: an error does not hide the rest
    letter = make_decoder(load_settings(), telemetry())(failures[0])
    assert type(letter) is DeadLetter and letter.reason == "consumer_error"
    assert letter.source == "clicks/0" and letter.raw == b""
    assert letter.to_json()["reason"] == "consumer_error"


def test_the_watermarked_source_passes_consumer_errors_on_too():
    from connectors.kafka import ConsumerError

    marks, taps = Watermarks(), []
    clock = PartitionClock("0-clicks", 1, idle_after_s=30.0, now=0.0)
    part = _Partition(Failing("clicks", [0, 1], ["Local: Timed out"]), lambda *a: taps.append(a), "clicks", 0,
                      live_decoder(load_settings()), clock, marks, LATENESS)
    batch = part.next_batch()
    assert [type(x) for x in batch if type(x) is ConsumerError] == [ConsumerError]
    assert events([x for x in batch if type(x) is not ConsumerError]) == ["clicks0"]


def test_the_fold_lets_a_repeat_through_once_a_minute_and_says_how_many_it_held():
    from connectors.kafka import _ErrorFold

    fold = _ErrorFold()
    assert fold.item("t/0", "down", 0.0).detail == "down"
    assert fold.item("t/0", "down", 10.0) is None and fold.item("t/0", "down", 20.0) is None
    assert fold.item("t/0", "down", 61.0).detail == "down (2 since the last)"
    assert fold.item("t/0", "other", 62.0).detail == "other"
