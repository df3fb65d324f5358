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
