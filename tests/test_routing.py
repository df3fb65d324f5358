"""connectors.routing predicts where Bytewax puts a state key: checked against real multi-worker runs."""

from __future__ import annotations

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from connectors.routing import SPREAD, balanced_key, siphash13, worker_of


def observed_workers(keys: list[str], workers: int) -> dict[str, int]:
    """Run keys through a stateful step on ``workers`` workers; the worker each one ran on."""
    seen: dict[str, int] = {}

    class _Part(StatelessSinkPartition):
        def __init__(self, worker: int):
            self.worker = worker

        def write_batch(self, items: list) -> None:
            for key, _ in items:
                seen[key] = self.worker

    class _Sink(DynamicSink):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> _Part:
            return _Part(worker_index)

    flow = Dataflow("routing_probe")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(keys)), lambda k: k)
    op.output("out", op.stateful_map("state", keyed, lambda s, v: (s, v)), _Sink())
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return seen


def test_siphash13_reference_vector():
    # SipHash-1-3, zero key, empty input: the value Rust's DefaultHasher::new().finish() gives
    assert siphash13(b"") == 0xD1FBA762150C532C


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_worker_of_matches_bytewax(workers):
    keys = [f"models/{i}" for i in range(12)] + [f"c{i:06d}" for i in range(12)]
    seen = observed_workers(keys, workers)
    assert seen == {k: worker_of(k, workers) for k in keys}


def test_balanced_keys_spread_one_per_worker():
    keys = [balanced_key("models/", j) for j in range(4)]
    assert len(set(keys)) == 4
    for workers in (1, 2, 3, 4):
        assert observed_workers(keys, workers) == {k: j % workers for j, k in enumerate(keys)}
    for j in range(20):  # and for every worker count up to 8, without running them all
        assert all(worker_of(balanced_key("models/", j), w) == j % w for w in range(1, 9))
    assert balanced_key("models/", 3) == balanced_key("models/", 3)  # stable: recovery keys keep
    assert SPREAD % 8 == 0 and SPREAD % 7 == 0


def test_log_partition_i_runs_on_worker_i():
    """LogSource names its partitions so that Bytewax (which deals them out in sorted name order)
    puts partition i on worker i: the worker whose customers that partition reads."""
    from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

    from connectors.files import LogSource

    names = LogSource([], None, partitions=12).list_parts()
    seen: dict[str, int] = {}

    class _Once(StatefulSourcePartition):
        def __init__(self, name: str):
            self.name, self.done = name, False

        def next_batch(self) -> list:
            if self.done:
                raise StopIteration()
            self.done = True
            return [(self.name, None)]

        def snapshot(self) -> None:
            return None

    class _Named(FixedPartitionedSource):
        def list_parts(self) -> list[str]:
            return list(reversed(names))  # the order given does not matter, only the names

        def build_part(self, step_id: str, for_part: str, resume_state) -> _Once:
            return _Once(for_part)

    class _Part(StatelessSinkPartition):
        def __init__(self, worker: int):
            self.worker = worker

        def write_batch(self, items: list) -> None:
            for name, _ in items:
                seen[name] = self.worker

    class _Sink(DynamicSink):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> _Part:
            return _Part(worker_index)

    flow = Dataflow("partition_probe")
    op.output("out", op.input("in", flow, _Named()), _Sink())
    cluster_main(flow, [], 0, worker_count_per_proc=12)
    assert seen == {name: i for i, name in enumerate(names)}
