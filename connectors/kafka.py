"""Kafka edges: the input topics as ``(value bytes, "topic/partition/offset")`` items, and sinks.

Built on Bytewax's own connector (partitions assigned directly, no consumer group: offsets live
in Bytewax recovery). Consumer errors are counted and logged, never fatal.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import orjson
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from config.settings import KafkaSettings
from connectors.metrics import telemetry

log = logging.getLogger("crm.kafka")

Tap = Callable[[str, int, int, bytes], None]  # (topic, partition, timestamp ms, value): the archive


class _Partition(StatefulSourcePartition):
    def __init__(self, inner: StatefulSourcePartition, tap: Optional[Tap]):
        self.inner = inner
        self.tap = tap

    def next_batch(self) -> list:
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
        return out

    def next_awake(self):
        return self.inner.next_awake()

    def snapshot(self):
        if self.tap is not None and hasattr(self.tap, "flush"):
            self.tap.flush()  # what the snapshot's offset says was consumed is on disk
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class KafkaEventSource(FixedPartitionedSource):
    """Every partition of the input topics as ``(value, "topic/partition/offset", offset)`` items;
    ``tail=False`` stops at the current end (tests, replay)."""

    def __init__(self, cfg: KafkaSettings, tail: bool = True, tap: Optional[Tap] = None,
                 topics: Optional[list[str]] = None, starting_offset: Optional[int] = None):
        start = starting_offset
        if start is None:
            start = OFFSET_BEGINNING if cfg.starting_offset == "beginning" else OFFSET_END
        self.inner = KafkaSource(cfg.bootstrap_servers.split(","), topics or cfg.input_topics, tail=tail,
                                 starting_offset=start, add_config=dict(cfg.extra), batch_size=cfg.batch_size,
                                 raise_on_errors=False)
        self.tap = tap

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state):
        return _Partition(self.inner.build_part(step_id, for_part, resume_state), self.tap)


def kafka_sink(cfg: KafkaSettings, topic: str) -> KafkaSink:
    extra = {"linger.ms": "5", "enable.idempotence": "false", **cfg.extra}
    return KafkaSink(cfg.bootstrap_servers.split(","), topic, add_config=extra)


def encode_keyed(item: tuple[str, dict]) -> KafkaSinkMessage:
    """``(customer_id, record)`` -> a message keyed by the customer."""
    key, record = item
    return KafkaSinkMessage(key.encode(), orjson.dumps(record))


def encode_unkeyed(item: tuple[str, dict]) -> KafkaSinkMessage:
    return KafkaSinkMessage(None, orjson.dumps(item[1]))
