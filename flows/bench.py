"""``crm-stream bench``: the engine against its own ceiling, side by side in one run.

Only ratios measured in the same run mean anything on a shared, noisy machine. Rows:

1. ``reference``: the same bytes through a minimal Bytewax flow (orjson decode -> key_on ->
   stateful_map counting per customer -> null sink);
2. ``decode``: a plain Python loop decoding the same bytes with orjson;
3. ``full_1w``: the whole crm-stream dataflow (decode, profile, models, policy) into null sinks;
4. ``full_2p``: the same with 2 worker processes (a Bytewax cluster on this machine);
5. ``live``: the engine consuming from a Kafka-protocol broker at a fixed offered load and
   writing to a real redis-server: producer send -> Redis stream entry, p50/p99/max;
6. ``memory``: resident state bytes per customer (snapshot size, and RSS growth).
"""

from __future__ import annotations

import gc
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from config.settings import Settings, load_settings
from connectors.files import LogSource
from connectors.metrics import reset_telemetry
from flows.dataflow import Edges, build_flow, replay_decoder


class _Lines(StatefulSourcePartition):
    def __init__(self, path: Path, batch: int):
        self.f = open(path, "rb")
        self.batch = batch

    def next_batch(self) -> list:
        out = [line for _, line in zip(range(self.batch), self.f)]
        if not out:
            raise StopIteration()
        return out

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.f.close()


class LinesSource(FixedPartitionedSource):
    """The raw lines of one file, in batches (the reference flow's input)."""

    def __init__(self, path: Path, batch: int = 2000):
        self.path = path
        self.batch = batch

    def list_parts(self) -> list[str]:
        return ["lines"]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Lines:
        return _Lines(self.path, self.batch)


class _Null(StatelessSinkPartition):
    def write_batch(self, items: list) -> None:
        pass


class NullSink(DynamicSink):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Null:
        return _Null()


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def _customer(obj: Any) -> str:
    return obj.get("customer_id") if isinstance(obj, dict) and isinstance(obj.get("customer_id"), str) else ""


def _count(n: Optional[int], _item: Any) -> tuple[int, int]:
    n = (n or 0) + 1
    return n, n


def reference_flow(path: Path) -> Dataflow:
    flow = Dataflow("reference")
    lines = op.input("in", flow, LinesSource(path))
    objs = op.map("decode", lines, _loads)
    keyed = op.key_on("key", objs, _customer)
    counts = op.stateful_map("count", keyed, _count)
    op.output("out", counts, NullSink())
    return flow


def full_flow(settings: Settings, path: Path, partitions: int = 1) -> Dataflow:
    source = LogSource([path], replay_decoder(settings), lambda c, end, pos: None, partitions=partitions)
    edges = Edges(source=source, triggers=[(NullSink(), None)], deadletters=[(NullSink(), None)],
                  profiles=[(NullSink(), None)], suppressed=[(NullSink(), None)])
    return build_flow(settings, edges, t=reset_telemetry())


def timed(fn) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def decode_loop(path: Path) -> None:
    with open(path, "rb") as f:
        for line in f:
            _loads(line)


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)
