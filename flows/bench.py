"""``crm-stream bench``: the engine against its own ceiling, side by side in one run.

Only ratios measured in the same run mean anything on a shared, noisy machine. Rows:

1. ``reference``: the same bytes through a minimal Bytewax flow (orjson decode -> key_on ->
   stateful_map counting per customer -> null sink);
2. ``decode``: a plain Python loop decoding the same bytes with orjson;
3. ``full_1w``: the whole crm-stream dataflow (decode, profile, models, policy) into null sinks,
   and ``core_1w``: the same step classes in a plain loop without Bytewax (the logic's own floor),
   with ``river``: the seconds the core row spent inside River's ``predict_proba_one`` and
   ``learn_one`` (the contract's decision points and labels: the models' own floor);
4. ``full_2p``: the same with 2 worker processes (a Bytewax cluster on this machine), and
   ``reference_2p``: the reference flow likewise, each process reading the lines its worker owns
   (what Bytewax's own scaling is on this machine: the yardstick for ``two_workers_vs_one``);
5. ``live``: the engine consuming from a Kafka-protocol broker at a fixed offered load and
   writing to a real redis-server: each trigger's Redis stream entry against the moment the
   engine's time semantics allowed it (:func:`attribute`), p50/p99/max;
6. ``memory``: resident state bytes per customer (snapshot size, and RSS growth);
7. ``api``: p50/p99 of ``GET /v1/customers/{id}`` at 500 requests/s against ``crm-stream serve``,
   with the engine consuming beside it into the same Redis.

Ratios: ``full_vs_core`` (full_1w over core_1w events/s: what Bytewax costs the logic),
``two_workers_vs_one`` (best rounds) and ``two_workers_vs_one_median`` (the median of the rounds'
own ratios), among others; ``scale`` (``run_bench(scale=[...])``): one object per customer count
(:mod:`flows.scale`).
"""

from __future__ import annotations

import bisect
import gc
import heapq
import itertools
import math
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, NamedTuple, Optional

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from config.settings import Settings, load_settings, ms, parse_duration
from connectors.files import LogSource, Owners
from connectors.metrics import reset_telemetry
from connectors.watermark import IDLE, UNKNOWN
from flows.runtime import engine_gc
from flows.dataflow import Edges, build_flow, future_guard, replay_decoder
from operators.customer import FAST_REASONS


class _Lines(StatefulSourcePartition):
    def __init__(self, path: Path, batch: int, index: int = 0, partitions: int = 1):
        self.f = open(path, "rb")
        self.batch = batch
        self.index = index
        self.owners = Owners(partitions) if partitions > 1 else None

    def next_batch(self) -> list:
        if self.owners is None:
            out = [line for _, line in zip(range(self.batch), self.f)]
        else:  # the lines of the customers whose state is on this worker, as in the full flow
            out, owners, index = [], self.owners, self.index
            for line in self.f:
                if owners(line) == index:
                    out.append(line)
                    if len(out) >= self.batch:
                        break
        if not out:
            raise StopIteration()
        return out

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.f.close()


class LinesSource(FixedPartitionedSource):
    """The raw lines of one file, in batches (the reference flow's input); with several
    partitions each keeps the lines its worker owns (:class:`connectors.files.Owners`)."""

    def __init__(self, path: Path, batch: int = 2000, partitions: int = 1):
        self.path = path
        self.batch = batch
        self.partitions = partitions

    def list_parts(self) -> list[str]:
        return [f"lines-{i:03d}" for i in range(self.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Lines:
        return _Lines(self.path, self.batch, int(for_part.rsplit("-", 1)[1]), self.partitions)


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


def reference_flow(path: Path, partitions: int = 1, source: Optional[FixedPartitionedSource] = None) -> Dataflow:
    flow = Dataflow("reference")
    lines = op.input("in", flow, source or LinesSource(path, partitions=partitions))
    objs = op.map("decode", lines, _loads)
    keyed = op.key_on("key", objs, _customer)
    counts = op.stateful_map("count", keyed, _count)
    op.output("out", counts, NullSink())
    return flow


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


class _ClockedPart(StatefulSourcePartition):
    def __init__(self, inner: StatefulSourcePartition, clock: dict):
        self.inner = inner
        self.clock = clock

    def next_batch(self) -> list:
        if "start" not in self.clock:
            self.clock["start"] = time.perf_counter()
            self.clock["cpu_start"] = time.process_time()
        return self.inner.next_batch()

    def next_awake(self):
        return self.inner.next_awake()

    def snapshot(self) -> Any:
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()


class Clocked(FixedPartitionedSource):
    """A source that notes when the dataflow first asks it for data: the clock of a row starts
    there, not when the process calls Bytewax. A cluster's processes connect first (timely retries
    a refused connection after a second), which is start-up, not throughput; for one worker the
    difference is the few milliseconds of building the dataflow. The same for every row."""

    def __init__(self, inner: FixedPartitionedSource):
        self.inner = inner
        self.clock: dict = {}

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _ClockedPart:
        return _ClockedPart(self.inner.build_part(step_id, for_part, resume_state), self.clock)


def _timed_run(flow: Dataflow, process_id: Optional[int], addresses: Optional[list[str]],
               source: Clocked, cpu: Optional[dict] = None) -> float:
    """Seconds for ``flow`` in this process, or as process ``process_id`` of a cluster, from the
    first batch its ``source`` gives (see :class:`Clocked`); under the garbage-collector settings
    the engine runs with, for the reference as for the full flow. ``cpu["seconds"]`` receives the
    process's CPU seconds over the same span (all its threads): on a shared machine the wall clock
    also counts the time other jobs had the cores."""
    from bytewax.run import cli_main

    with engine_gc():
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        if addresses is None:
            run_main(flow)
        else:
            cli_main(flow, process_id=process_id, addresses=addresses)
        wall = time.perf_counter() - source.clock.get("start", t0)
        if cpu is not None:
            cpu["seconds"] = time.process_time() - source.clock.get("cpu_start", c0)
        return wall


def full_run(settings: Settings, path: Path, partitions: int = 1, process_id: Optional[int] = None,
             addresses: Optional[list[str]] = None, end_dir: Optional[Path] = None,
             cpu: Optional[dict] = None) -> float:
    """Seconds for the full dataflow over ``path`` into null sinks (in this process); ``cpu``: see
    :func:`_timed_run`."""
    from connectors.files import ReplayEnd

    end = ReplayEnd(end_dir or Path(tempfile.mkdtemp(prefix="crm-bench-end-")), partitions=partitions)
    source = Clocked(LogSource([path], replay_decoder(settings), end, partitions=partitions,
                               guard=future_guard(settings)))
    edges = Edges(source=source, end=end, recovery=False, triggers=[(NullSink(), None)], deadletters=[(NullSink(), None)],
                  profiles=[(NullSink(), None)])
    flow = build_flow(settings, edges, shards=partitions, t=reset_telemetry())
    try:
        return _timed_run(flow, process_id, addresses, source, cpu)
    finally:
        if end_dir is None:
            shutil.rmtree(end.directory, ignore_errors=True)


def core_run(settings: Settings, path: Path, batch: int = 2000, counts: Optional[dict] = None) -> float:
    """Seconds for the full dataflow's own logic without the engine: the same step classes
    (profile per customer, product shards, model shard, policy per customer) fed by a plain loop,
    batch by batch from the full row's own source partition (the replay's reader and its
    future-timestamp guard), with the replay's end of input. What is left when Bytewax costs
    nothing: the floor under ``full_1w``, doing the same work (the profile view for the full row's
    null profile sink: scores, predicted CLV and recommendations at session ends, each customer's
    profile at the end of input). ``counts`` receives the number of
    triggers (a test checks it equals a replay's), the number of River calls (the churn and
    frustration pipelines' ``predict_proba_one`` and ``learn_one``), the seconds spent in them and
    the process's CPU seconds (``cpu``)."""
    from flows.dataflow import (PRODUCT_SHARDS, ModelLogic, PolicyLogic, ProductsLogic, ProfileLogic,
                                RecsTop, _key_event, bundle_pairs, profile_rules)
    from operators.events import DeadLetter
    from operators.policy import PolicyConfig
    from operators.messages import PairMsg, RecsUpdate
    from operators.messages import Candidate, ProfileUpdate

    class End:  # the replay's end of input: timers due by the latest event time fire
        drain = False
        latest = -(1 << 62)

        def read(self) -> int:
            return self.latest

    t = reset_telemetry()
    policy_cfg = PolicyConfig(settings)
    rules = profile_rules(settings, policy_cfg, live=False)  # as the replay's profile step has them
    keys = [f"products/{j}" for j in range(PRODUCT_SHARDS)]
    bundle = bundle_pairs(keys)
    end = End()
    profiles: dict[str, ProfileLogic] = {}
    products = {k: ProductsLogic(rules, None, recovery=False) for k in keys}
    model = ModelLogic(settings, rules, t, None, profiles=True, recovery=False, write_recs=False)
    river = _CallClock()
    for m in model.shard.models.values():  # the River pipelines' own time, for the ``river`` row
        m.pipeline.predict_proba_one = river.wrap(m.pipeline.predict_proba_one)
        m.pipeline.learn_one = river.wrap(m.pipeline.learn_one)
    policies: dict[str, PolicyLogic] = {}
    triggers = 0

    def downstream(outputs: list) -> None:
        """What the profile step emitted for one batch: products, then models, then policy."""
        nonlocal triggers
        pairs, to_model = [], []
        for o in outputs:
            k = type(o)
            if k is PairMsg:
                pairs.append(o)
            elif k is not ProfileUpdate and k is not DeadLetter:
                to_model.append(o)
        for key, value in bundle(pairs):
            for updates, upos in products[key].on_batch([value])[0]:
                to_model.append(RecsUpdate(updates, "models/0", True, upos))
        for o in model.on_batch(to_model)[0]:
            if type(o) is ProfileUpdate or type(o) is RecsTop:
                continue
            p = policies.get(o.customer_id)
            if p is None:
                p = policies[o.customer_id] = PolicyLogic(policy_cfg, t, None, recovery=False)
            triggers += sum(type(r) is Candidate for r in p.on_batch([o])[0])

    def run() -> None:
        # the full row's reader: the same lines, decoded and judged by the same guard, in the same batches
        part = LogSource([path], replay_decoder(settings), batch_size=batch,
                         guard=future_guard(settings)).build_part("bench", "replay-000", None)
        while True:
            try:
                items = part.next_batch()
            except StopIteration:
                break
            outputs: list = []
            for ev in items:
                if type(ev) is DeadLetter:
                    continue
                if ev.ts > end.latest:
                    end.latest = ev.ts
                for key, item in _key_event(ev):  # as the flow keys them: a catalogue event to no customer
                    logic = profiles.get(key)
                    if logic is None:
                        logic = profiles[key] = ProfileLogic(rules, False, t, None, end, "end", False)
                    outputs += logic.on_batch([item])[0]
            downstream(outputs)
        # in key order, as Bytewax's stateful step ends its keys: the end-of-input outputs share one
        # position, so the models step scores and learns from them in this order
        downstream([o for _k, logic in sorted(profiles.items()) for o in logic.on_eof()[0]])

    with engine_gc():
        c0 = time.process_time()
        seconds = timed(run)
        cpu = time.process_time() - c0
    if counts is not None:
        counts["cpu"] = cpu
        counts["triggers"] = triggers
        counts["river_calls"] = river.calls
        counts["river_seconds"] = river.seconds
    return seconds


class _CallClock:
    """Seconds spent inside wrapped calls (two clock reads a call, ~0.1 us)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn):
        clock = time.perf_counter

        def call(*args):
            t0 = clock()
            try:
                return fn(*args)
            finally:
                self.seconds += clock() - t0
                self.calls += 1

        return call


def reference_run(path: Path, partitions: int = 1, process_id: Optional[int] = None,
                  addresses: Optional[list[str]] = None, cpu: Optional[dict] = None) -> float:
    source = Clocked(LinesSource(path, partitions=partitions))
    return _timed_run(reference_flow(path, partitions, source), process_id, addresses, source, cpu)


def cluster_run(path: Path, processes: int, kind: str = "full", cpu: Optional[dict] = None) -> float:
    """The full (or ``kind="reference"``) dataflow as a Bytewax cluster of ``processes`` processes;
    the slowest one's seconds; ``cpu["seconds"]``: the most CPU seconds one process took (with a
    core each, the cluster's time)."""
    addresses = [f"127.0.0.1:{free_tcp_port()}" for _ in range(processes)]
    end_dir = Path(tempfile.mkdtemp(prefix="crm-bench-end-"))
    procs = [subprocess.Popen([sys.executable, "-m", "flows.bench", str(path), str(i), ";".join(addresses),
                               str(end_dir), kind], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(processes)]
    times, cpus = [], []
    try:
        for p in procs:
            out, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"bench worker failed: {err.decode()[-2000:]}")
            wall, used = out.decode().strip().splitlines()[-1].split()  # see the __main__ block
            times.append(float(wall))
            cpus.append(float(used))
    finally:
        shutil.rmtree(end_dir, ignore_errors=True)
    if cpu is not None:
        cpu["seconds"] = max(cpus)
    return max(times)


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss() -> int:
    """Resident set size of this process, bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_per_customer(settings: Settings, path: Path) -> dict[str, float]:
    """State bytes per customer after replaying ``path`` through the customer state machine: the
    pickled snapshot, and the process's RSS growth (what the allocator really took). Run it in a
    fresh process (:func:`memory_subprocess`): memory freed by earlier rows would hide RSS growth."""
    from operators.customer import CustomerState
    from operators.policy import PolicyState
    from operators.rules import RuleConfig

    cfg = RuleConfig(settings)
    decode = replay_decoder(settings)
    gc.collect()
    rss0 = _rss()
    states: dict[str, CustomerState] = {}
    marks: dict[int, int] = {}
    with open(path, "rb") as f:
        for line in f:
            ev = decode(line.rstrip(b"\n"), "")
            if hasattr(ev, "customer_id"):
                st = states.get(ev.customer_id)
                if st is None:
                    st = states[ev.customer_id] = CustomerState(ev.customer_id, cfg.recs)
                    if len(states) % 10_000 == 0:
                        marks[len(states)] = _rss()
                st.process(ev, cfg)
    ev = None
    gc.collect()
    rss = _rss() - rss0  # the decoded events are gone: what is left is the customers' state
    n = max(len(states), 1)
    snap = sum(len(pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)) for s in states.values())
    snap += n * len(pickle.dumps(PolicyState(), protocol=pickle.HIGHEST_PROTOCOL))
    return {"customers": len(states), "snapshot_bytes_per_customer": round(snap / n, 1),
            "rss_bytes_per_customer": round(rss / n, 1), "rss_mb_per_10k_customers": round(rss / n * 1e4 / 1e6, 2),
            # RSS when the 10,000th, 20,000th ... customer first appeared (growing with them)
            "rss_mb_at": {str(k): round((v - rss0) / 1e6, 1) for k, v in marks.items()}}


def memory_subprocess(path: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "flows.bench", "memory", str(path)], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    return orjson.loads(out.splitlines()[-1])


if __name__ == "__main__" and sys.argv[1] == "memory":  # the memory row: memory EVENTS
    print(orjson.dumps(memory_per_customer(load_settings(), Path(sys.argv[2]))).decode())
elif __name__ == "__main__":  # one process of a cluster row: EVENTS PROCESS_ID ADDRESSES END_DIR [full|reference]
    _path, _pid, _addrs, _end = sys.argv[1:5]
    _cpu: dict = {}
    if (sys.argv[5] if len(sys.argv) > 5 else "full") == "reference":
        _wall = reference_run(Path(_path), len(_addrs.split(";")), int(_pid), _addrs.split(";"), cpu=_cpu)
    else:
        _wall = full_run(load_settings(), Path(_path), partitions=len(_addrs.split(";")), process_id=int(_pid),
                         addresses=_addrs.split(";"), end_dir=Path(_end), cpu=_cpu)
    print(_wall, _cpu["seconds"])  # wall and CPU seconds, read by cluster_run


def run_bench(events: Path, rows: set[str], console: Any = None, broker: str = "mock",
              live_rate: int = 2000, live_seconds: float = 20.0, repeat: int = 1,
              api_rate: int = 500, api_seconds: float = 20.0, scale: Optional[list[int]] = None) -> dict[str, Any]:
    """Every row on the same bytes, side by side; returns the JSON report.

    ``repeat``: rounds of the throughput rows, one after the other (A B C, A B C: a slow spell of
    the shared machine hits every row alike); each row reports its best round, as ``timeit``
    does, and lists every round in ``runs`` so the spread shows. ``scale``: customer counts for
    the ``scale`` entry (:func:`flows.scale.scale_row` per size)."""
    settings = load_settings()
    n = count_lines(events)
    report: dict[str, Any] = {"events": n, "file": str(events), "rounds": repeat, "rows": {}}

    def row(name: str, seconds: float, cpu: Optional[dict] = None) -> None:
        entry = report["rows"].setdefault(name, {"runs": []})
        entry["runs"].append(round(seconds, 3))
        entry["seconds"] = best = min(entry["runs"])
        entry["events_per_s"] = round(n / best, 1)
        if cpu is not None:  # process CPU seconds, round by round (``cpu_seconds``: the least)
            entry.setdefault("cpu_runs", []).append(round(cpu["seconds"], 3))
            entry["cpu_seconds"] = min(entry["cpu_runs"])
        if console is not None:
            used = f", {cpu['seconds']:.1f} s CPU" if cpu is not None else ""
            console.print(f"  {name:<12} {n / seconds:>12,.0f} events/s  ({seconds:.1f} s{used})")

    timed(lambda: decode_loop(events))  # warm the page cache for everyone
    for round_no in range(repeat):
        if console is not None and repeat > 1:
            console.print(f"round {round_no + 1} of {repeat}")
        if "decode" in rows:
            row("decode", timed(lambda: decode_loop(events)))
        if "reference" in rows:
            row("reference", reference_run(events))
        if "full" in rows:
            cpu: dict = {}
            row("full_1w", full_run(settings, events, cpu=cpu), cpu)
        if "core" in rows:
            core: dict = {}
            row("core_1w", core_run(settings, events, counts=core), {"seconds": core["cpu"]})
            # The flow with nothing but its River calls (predict at each decision point, learn at
            # each label, as the contract asks), timed inside the core row: the models' own floor.
            row("river", core["river_seconds"])
            report["rows"]["river"]["calls"] = core["river_calls"]
        if "cluster" in rows:
            cpu = {}
            row("full_2p", cluster_run(events, 2, cpu=cpu), cpu)
            if "reference" in rows:  # Bytewax's own scaling on this machine, for comparison
                row("reference_2p", cluster_run(events, 2, "reference"))
    r = {k: v["events_per_s"] for k, v in report["rows"].items()}
    ratios = {}
    if "full_1w" in r and "reference" in r:
        ratios["full_vs_reference"] = round(r["full_1w"] / r["reference"], 3)
    if "core_1w" in r and "reference" in r:  # what full_vs_reference could be if the engine cost nothing
        ratios["core_vs_reference"] = round(r["core_1w"] / r["reference"], 3)
    if "river" in r and "reference" in r:  # the River calls alone, against the reference's whole flow
        ratios["river_vs_reference"] = round(r["river"] / r["reference"], 3)
    if "full_2p" in r and "full_1w" in r:
        ratios["two_workers_vs_one"] = round(r["full_2p"] / r["full_1w"], 3)
        # round by round (each round's two rows ran side by side): the typical ratio beside the best
        pairs = zip(report["rows"]["full_1w"]["runs"], report["rows"]["full_2p"]["runs"])
        ratios["two_workers_vs_one_median"] = round(statistics.median(one / two for one, two in pairs), 3)
    if "full_1w" in r and "core_1w" in r:  # what Bytewax costs the logic (1.0: nothing)
        ratios["full_vs_core"] = round(r["full_1w"] / r["core_1w"], 3)
    ratios.update(_cpu_ratios(report["rows"]))
    if "reference_2p" in r and "reference" in r:
        ratios["reference_two_workers_vs_one"] = round(r["reference_2p"] / r["reference"], 3)
    if "reference" in r and "decode" in r:
        ratios["reference_vs_decode"] = round(r["reference"] / r["decode"], 3)
    report.update(ratios)
    if "live" in rows:
        report["latency_ms"] = live_latency(events, live_rate, live_seconds, broker=broker)
        if console is not None:
            lat = report["latency_ms"]
            old, wait = lat["customer_event"], lat["frontier_wait_ms"]
            console.print(f"  live         p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms "
                          f"({lat['triggers']} triggers at {lat['offered_events_per_s']:,.0f} events/s offered, "
                          f"{lat['broker']} broker, watermarks {'on' if lat['watermarks'] else 'off'}); from the "
                          f"customer's event alone p50 {old['p50']}, p99 {old['p99']}, max {old['max']} ms; "
                          f"waits for the watermark p99 {wait['p99']} ms")
    if "api" in rows:
        report["api_ms"] = api = api_latency(events, api_rate, api_seconds, broker=broker)
        if console is not None:
            console.print(f"  api          p50 {api['p50']} ms, p99 {api['p99']} ms, max {api['max']} ms "
                          f"({api['requests']} GET /v1/customers/{{id}} at {api['offered_requests_per_s']}/s, "
                          f"engine at {api['engine_events_per_s']} events/s; statuses {api['statuses']})")
    if scale:  # the scale mode's sizes (flows.scale): one object per size
        from flows.scale import scale_row

        work = Path(tempfile.mkdtemp(prefix="crm-scale-"))
        try:
            report["scale"] = [scale_row(size, work) for size in scale]
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if "memory" in rows:
        report["memory"] = mem = memory_subprocess(events)
        # the stricter of the two readings
        report["bytes_per_customer"] = max(mem["snapshot_bytes_per_customer"], mem["rss_bytes_per_customer"])
    return report


def _cpu_ratios(rows: dict[str, Any]) -> dict[str, float]:
    """The throughput ratios again from process CPU seconds (``*_cpu``): on a machine shared with
    other jobs the wall clock also counts their turns on the cores, the CPU clock much less so.
    ``two_workers_vs_one_cpu``: one worker's CPU over the busiest process's of the cluster (what
    two workers would give with a core each), best rounds and the median of the rounds."""
    cpu = {k: v["cpu_seconds"] for k, v in rows.items() if "cpu_seconds" in v}
    out = {}
    if "full_1w" in cpu and "core_1w" in cpu:
        out["full_vs_core_cpu"] = round(cpu["core_1w"] / cpu["full_1w"], 3)
    if "full_1w" in cpu and "full_2p" in cpu:
        out["two_workers_vs_one_cpu"] = round(cpu["full_1w"] / cpu["full_2p"], 3)
        pairs = zip(rows["full_1w"]["cpu_runs"], rows["full_2p"]["cpu_runs"])
        out["two_workers_vs_one_cpu_median"] = round(statistics.median(one / two for one, two in pairs), 3)
    return out


def _infra():
    """The test suite's helpers that start a redis-server and a Kafka-protocol broker on free ports."""
    root = Path(__file__).resolve().parents[1] / "tests"
    if not (root / "infra.py").exists():
        raise RuntimeError("the live row needs tests/infra.py (a source checkout) or --skip-live")
    sys.path.insert(0, str(root))
    import infra  # noqa: E402

    return infra


class Sent(NamedTuple):
    """One message of the live row: ``wall`` (``time.time()`` once produced), its input partition
    (``"topic/partition"``), and the event time (ms) and customer of a valid event (``None`` for a
    line the engine dead-letters: it moves no clock and no watermark)."""

    wall: float
    part: str
    ts: Optional[int]
    customer: Optional[str]


class Trigger(NamedTuple):
    """A trigger as the live row reads it back: its customer, ``event_ts`` (ms: the due time of a
    timer, the event's time otherwise), whether the service fast path may have sent it (its reasons),
    and ``written`` (s, the Redis stream entry's time)."""

    customer: str
    due: int
    fast: bool
    written: float


class Attributed(NamedTuple):
    """When a trigger became possible (s, ``None``: never, by the sends), which path (fast or
    exact), when the customer's clock alone allowed it on that path (``at`` minus this: the wait for
    the watermark), and the older yardstick: the send of the customer's causal event alone."""

    at: Optional[float]
    fast: bool
    clock_at: Optional[float]
    customer_event: Optional[float]


def kafka_partition(key: Optional[bytes], value: bytes, partitions: int) -> int:
    """The partition librdkafka's default partitioner (``consistent_random``) gives a keyed message:
    CRC-32 of the key modulo the partition count. It would place a keyless message (a bad line) at
    random; the row takes the value's CRC-32 instead, so the client knows every message's partition."""
    return zlib.crc32(key if key is not None else value) % partitions


def frontier_timeline(sends: list[Sent], idle_after_s: float) -> tuple[list[float], list[int]]:
    """The engine's input watermark over wall time as the sends imply it: ``values[k]`` from
    ``walls[k]`` until ``walls[k + 1]`` (the last one on); :data:`~connectors.watermark.IDLE` before.

    The rule of :mod:`connectors.watermark` (``PartitionClock``, ``Frontier.value``) applied to what
    was sent, as if the engine read each message the moment it was sent: a partition's watermark is
    the greatest event time sent to it (``UNKNOWN`` while it got only lines without one), ``IDLE``
    from ``idle_after_s`` after its latest message until its next; the frontier is their minimum.
    A partition never sent to is idle throughout (the row sends once the engine's partitions have
    had ``idle_after`` to turn idle). The engine reads later, and counts a partition's quiet time
    from the poll that returned its message, so this frontier passes a time no later than the
    engine's can."""
    walls: list[float] = []
    values: list[int] = []
    best: dict[str, int] = {}
    last: dict[str, float] = {}
    idle: set[str] = set()
    quiet: list[tuple[float, str]] = []  # (when a partition turns idle unless more comes, partition)

    def note(at: float) -> None:
        value = min((IDLE if p in idle else v for p, v in best.items()), default=IDLE)
        if walls and walls[-1] == at:
            walls.pop()
            values.pop()
        if not values or values[-1] != value:
            walls.append(at)
            values.append(value)

    def turn_idle(until: float) -> None:
        while quiet and quiet[0][0] <= until:
            at, part = heapq.heappop(quiet)
            if last[part] + idle_after_s == at and part not in idle:
                idle.add(part)
                note(at)

    for s in sends:
        turn_idle(s.wall)
        idle.discard(s.part)
        last[s.part] = s.wall
        known = best.get(s.part, UNKNOWN)
        best[s.part] = s.ts if s.ts is not None and s.ts > known else known
        heapq.heappush(quiet, (s.wall + idle_after_s, s.part))
        note(s.wall)
    turn_idle(math.inf)
    return walls, values


def _reached(timeline: tuple[list[float], list[int]], need: int, start: float, end: float) -> Optional[float]:
    """The earliest wall time in ``[start, end)`` at which the timeline is at least ``need``."""
    walls, values = timeline
    k = bisect.bisect_right(walls, start) - 1
    if k < 0:
        return start  # before the first message nothing holds the frontier back
    while k < len(walls):
        at = walls[k] if walls[k] > start else start
        if at >= end:
            return None
        if values[k] >= need:
            return at
        k += 1
    return None


def _clock_spans(stamps: list[tuple[float, int]], need: int):
    """Wall-time spans ``(start, end)`` in which the customer's clock has reached ``need`` (ms): its
    latest event time so far (``stamps``: ``(wall, ts)`` in send order), advanced by the wall time
    since its latest event, as ``ProfileLogic.on_notify`` advances it (a later event restarts that)."""
    clock = UNKNOWN
    for i, (wall, ts) in enumerate(stamps):
        clock = ts if ts > clock else clock
        end = stamps[i + 1][0] if i + 1 < len(stamps) else math.inf
        start = wall + max(0, need - clock) / 1000.0
        if start < end:
            yield start, end


def _ready_at(stamps: list[tuple[float, int]], need: int, timeline: Optional[tuple]) -> Optional[float]:
    """The earliest wall time at which both the customer's clock and (with a ``timeline``) the
    input watermark have reached ``need``."""
    for start, end in _clock_spans(stamps, need):
        at = start if timeline is None else _reached(timeline, need, start, end)
        if at is not None:
            return at
    return None


def attribute(sends: list[Sent], triggers: list[Trigger], lateness_ms: int, idle_after_s: float,
              watermarks: bool) -> list[Attributed]:
    """When each trigger became possible under the engine's own time semantics (CONTRACT.md, Time
    and time across topics), from what the client sent alone.

    A trigger due at ``d`` (a timer's due time, or the time of the event whose rule fired) goes out
    once the customer's ``now`` is ``lateness`` past ``d`` (``CustomerState.advance``; the engine
    needs ``d + lateness + 1`` for a timer, ``d + lateness`` for an event: the earlier is taken, so
    no trigger is credited with a wait it did not have); ``now`` is the customer's clock (see
    :func:`_clock_spans`) and, with ``watermarks``, at most the input watermark
    (:func:`frontier_timeline`). A fast-path service trigger (``FAST_REASONS``) goes out when its
    own event (the customer's first sent with ``ts >= d``) is let into the customer's step: at once
    without watermarks, with them once the watermark is within ``lateness`` of ``d``
    (``ProfileLogic._admit``; a customer with an earlier timer or held event not yet due by the
    watermark waits longer, and that wait counts as latency). A fast-reason trigger written after
    its exact-path moment is taken to be the exact path's (an order the fast path did not know).

    ``clock_at``: the same path's moment by the customer's clock alone (``at - clock_at``: the wait
    for the watermark). ``customer_event``: the older yardstick, the send of the customer's first
    event at or past ``d + lateness`` (fast path: ``d``), blind to the watermark and to the
    wall-clock advance."""
    timeline = frontier_timeline(sends, idle_after_s) if watermarks else None
    by_customer: dict[str, list[tuple[float, int]]] = {}
    for s in sends:
        if s.customer is not None and s.ts is not None:
            by_customer.setdefault(s.customer, []).append((s.wall, s.ts))
    out = []
    for trig in triggers:
        stamps = by_customer.get(trig.customer, [])
        exact = _ready_at(stamps, trig.due + lateness_ms, timeline)
        own = next((w for w, ts in stamps if ts >= trig.due), None) if trig.fast else None
        fast_at = own if own is None or timeline is None else _reached(timeline, trig.due - lateness_ms, own, math.inf)
        fast = fast_at is not None and (exact is None or trig.written < exact)
        clock_at = own if fast else _ready_at(stamps, trig.due + lateness_ms, None)
        out.append(Attributed(fast_at if fast else exact, fast, clock_at, _customer_event(stamps, trig, lateness_ms)))
    return out


def _customer_event(stamps: list[tuple[float, int]], trig: Trigger, lateness_ms: int) -> Optional[float]:
    """The row's first yardstick: the send of the customer's first event (in send order: logs hold
    late lines) at or past ``due + lateness``; a fast-path service trigger at its own event, unless
    the exact path sent it (written after that first event)."""
    j = next((i for i, (_, ts) in enumerate(stamps) if ts >= trig.due + lateness_ms), None)
    if trig.fast and (j is None or trig.written < stamps[j][0]):
        j = next((i for i, (_, ts) in enumerate(stamps) if ts >= trig.due), None)
    return None if j is None else stamps[j][0]


def _spread(values: list[float]) -> dict[str, Any]:
    """``triggers`` (how many), ``p50``, ``p99`` and ``max`` of ``values`` (ms), rounded to 0.1."""
    values = sorted(values)

    def pct(q: float) -> Optional[float]:
        return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None

    return {"triggers": len(values), "p50": pct(0.5), "p99": pct(0.99),
            "max": round(values[-1], 1) if values else None}


def live_latency(events: Path, rate: int = 2000, seconds: float = 20.0, broker: str = "mock",
                 trace: Optional[list] = None, start: Optional[int] = None) -> dict[str, Any]:
    """Offered load ``rate`` events/s into the broker; per trigger, the engine's reaction time (ms):
    Redis stream entry minus the moment the trigger became possible (:func:`attribute`).

    That moment is the later of the customer's own causal event (its clock ``lateness`` past the
    due time) and, with the input watermarks on (``kafka.watermarks``), the moment every input
    partition had passed that time or turned idle (``kafka.idle_after``), computed from what was
    sent where: the row produces to explicit partitions (:func:`kafka_partition`). The log is
    replayed ~2,400x faster than its event time, so a sparse partition is minutes of event time
    behind: that wait is the contract's (CONTRACT.md, time across topics), not the engine's
    reaction, and ``frontier_wait_ms`` reports it apart. ``customer_event``: the same figures
    against the customer's causal event alone (the row's first yardstick).

    ``broker``: ``mock`` (librdkafka's mock cluster, default), ``tansu``, or the one in
    ``KAFKA_BOOTSTRAP_SERVERS`` when that is set. Tansu keeps topics in memory and, on this 2-core
    machine, itself takes more than a core at 2,000 messages/s, rising as the topic grows: its
    latency, not the engine's, is then what the row measures (see README, Performance).
    ``trace`` (a list) receives ``(seconds after the first send, latency ms, trigger type)`` per trigger.
    The offered window starts in the middle of the log (``start``: that line, 0-based): a generated
    log opens with backfilled orders and every customer's consent, which make no trigger at all.
    ``early`` counts triggers written before the moment they became possible: the client's model
    of the engine is wrong unless it is 0. ``engine_cpu_s``: the engine's CPU seconds while the load
    was offered (Linux; ``None`` elsewhere)."""
    infra = _infra()
    settings = load_settings()
    idle_after = parse_duration(os.environ.get("BENCH_IDLE_AFTER", "2")).total_seconds()
    redis_server, broker, names, env = _engine_env(infra, broker, click_partitions=2, prefix="crm-bench-recovery-")
    kind = broker.kind
    metrics = free_tcp_port()
    env.update({"CRM_KAFKA__BATCH_SIZE": os.environ.get("BENCH_BATCH", "500"),
                # with watermarks on, a first start holds everything until each of the input partitions
                # has delivered an event or been quiet this long; the row measures the running engine
                "CRM_KAFKA__IDLE_AFTER": str(idle_after), "CRM_METRICS_PORT": str(metrics),
                # the simulated events are in the past
                "CRM_POLICY__MAX_TRIGGER_AGE": str(100 * 365 * 86400)})
    engine = subprocess.Popen([sys.executable, "-m", "flows.cli", "run"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        parts = {t: broker.partitions(t) for t in (names["click"], names["orders"], names["chat"], names["profile"])}
        plan = _live_plan(events, int(rate * seconds), names, parts, start)
        _engine_idle(engine, metrics, sum(parts.values()), settings.kafka.watermarks)
        cpu0 = _cpu_seconds(engine.pid)
        sends, offered = _live_send(broker.bootstrap, plan, rate)
        cpu = _cpu_seconds(engine.pid) - cpu0 if cpu0 is not None else None
        if settings.kafka.watermarks:  # the last triggers wait for every partition to turn idle
            _engine_idle(engine, metrics, sum(parts.values()), True)
        triggers = _live_triggers(redis_server.client())
    finally:
        engine.kill()
        engine.wait()
        broker.stop()
        redis_server.close()
        shutil.rmtree(env["CRM_RECOVERY_DIR"], ignore_errors=True)
    found = attribute(sends, [t for t, _ in triggers], ms(settings.time.lateness), idle_after,
                      settings.kafka.watermarks)
    return {"broker": kind, "watermarks": settings.kafka.watermarks, "idle_after_s": idle_after,
            "offered_events_per_s": round(offered, 1), "engine_cpu_s": None if cpu is None else round(cpu, 2),
            **_live_report(sends[0].wall if sends else 0.0, triggers, found, trace)}


def _live_report(wall0: float, triggers: list, found: list[Attributed], trace: Optional[list]) -> dict[str, Any]:
    """The live row's figures from the triggers (with their records) and their attributions."""
    latencies, old, waits, service, worst = [], [], [], [], []
    early = 0
    for (trig, record), a in zip(triggers, found):
        if a.customer_event is not None:
            old.append((trig.written - a.customer_event) * 1000.0)
        if a.at is None:
            continue
        lat = (trig.written - a.at) * 1000.0
        early += lat < -1.0  # a stream id counts whole milliseconds
        latencies.append(lat)
        if a.fast:
            service.append(lat)
        waits.append((a.at - a.clock_at) * 1000.0)
        worst.append((lat, record["type"], record["reasons"], record["event_ts"]))
        if trace is not None:
            trace.append((round(a.at - wall0, 3), round(lat, 1), record["type"]))
    worst.sort(reverse=True)
    fast = _spread(service)
    return {**_spread(latencies), "unattributed": len(triggers) - len(latencies), "early": early,
            "customer_event": _spread(old), "frontier_wait_ms": _spread(waits),
            "service_fast_path": {"triggers": fast["triggers"], "p99": fast["p99"]},
            "worst": [(round(w[0]), *w[1:]) for w in worst[:5]]}


def _cpu_seconds(pid: int) -> Optional[float]:
    """CPU seconds (user + system) process ``pid`` has used so far (Linux ``/proc``; else None)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _engine_idle(engine: subprocess.Popen, port: int, partitions: int, watermarks: bool,
                 timeout: float = 120.0) -> None:
    """Return once every input partition of the engine is idle: with watermarks, once its metrics
    show at least ``partitions`` of them, every one idle (``crm_kafka_partition_idle``). Before the
    window a first start holds everything until then (start-up, not reaction); after it, the
    watermark has then passed all that was sent. Without watermarks, 3 s after its metrics answer
    (its consumers connect and are assigned). RuntimeError if it does not get there in time."""
    import re
    import urllib.request

    deadline = time.monotonic() + timeout
    series = re.compile(rb"^crm_kafka_partition_idle\{[^}]*\} (\S+)$", re.M)
    while time.monotonic() < deadline and engine.poll() is None:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
        except OSError:
            time.sleep(0.2)
            continue
        if not watermarks:
            time.sleep(3.0)
            return
        idle = [float(v) for v in series.findall(text)]
        if len(idle) >= partitions and all(v == 1.0 for v in idle):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the engine's input partitions were not all idle within {timeout:.0f} s "
                       f"(exit code {engine.poll()})")


def _live_plan(events: Path, total: int, names: dict[str, str], partitions: dict[str, int],
               start: Optional[int]) -> list[tuple]:
    """``(topic, partition, key, line, ts, customer)`` for ``total`` lines from ``start`` (default:
    the middle of the log), decided before the clock starts, so the load generator stays light."""
    from operators.events import Event, decode

    plan = []
    skip = count_lines(events) // 2 if start is None else start
    with open(events, "rb") as f:
        for line in itertools.islice(f, skip, skip + total):
            line = line.rstrip(b"\n")
            ev = decode(line)
            obj = _loads(line)
            topic = _topic_of(obj.get("type") if isinstance(obj, dict) else None, names)
            key = obj["customer_id"].encode() if isinstance(obj, dict) and \
                isinstance(obj.get("customer_id"), str) else None
            valid = isinstance(ev, Event)  # bad lines are part of the load but cause nothing
            plan.append((topic, kafka_partition(key, line, partitions[topic]), key, line,
                         ev.ts if valid else None, ev.customer_id if valid else None))
    return plan


def _live_send(bootstrap: str, plan: list[tuple], rate: int) -> tuple[list[Sent], float]:
    """Produce the plan at ``rate`` messages/s, each to its partition; the sends and the rate offered."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": "2"})
    sends = []
    t0 = time.perf_counter()
    for i, (topic, part, key, line, ts, customer) in enumerate(plan):
        wait = t0 + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        producer.produce(topic, line, key=key, partition=part)
        producer.poll(0)
        sends.append(Sent(time.time(), f"{topic}/{part}", ts, customer))
    producer.flush()
    return sends, len(plan) / (time.perf_counter() - t0)


def _live_triggers(client: Any) -> list[tuple[Trigger, dict]]:
    """Every trigger of ``crm:triggers`` once the stream has stopped growing for 3 s, with its record
    (with watermarks, the caller first waits for every input partition to turn idle: a 3 s lull
    alone ended a short row before its triggers, all due after its last events, came)."""
    from operators.events import parse_ts

    last, still = -1, time.monotonic()
    while time.monotonic() - still < 3.0:
        n = client.xlen("crm:triggers")
        if n != last:
            last, still = n, time.monotonic()
        time.sleep(0.2)
    out = []
    for entry_id, fields in client.xrange("crm:triggers"):
        record = orjson.loads(fields[b"trigger"])
        written = int(entry_id.split(b"-")[0]) / 1000.0
        out.append((Trigger(record["customer_id"], parse_ts(record["event_ts"]),
                            bool(FAST_REASONS.intersection(record["reasons"])), written), record))
    return out


def api_latency(events: Path, rate: int = 500, seconds: float = 20.0, broker: str = "mock",
                engine_rate: int = 1000) -> dict[str, Any]:
    """p50/p99/max of ``GET /v1/customers/{id}`` (ms) at ``rate`` requests/s for ``seconds``, against
    ``crm-stream serve`` (its own process) over a real redis-server while ``crm-stream run`` consumes
    ``engine_rate`` events/s from the broker into the same Redis. Open loop: each request's latency
    counts from when it was due (32 keep-alive connections take turns), so a stalled server is not
    hidden by the client waiting for it."""
    import http.client
    import threading

    from confluent_kafka import Producer

    from operators.events import CHAT_TYPES, CLICKSTREAM_TYPES

    infra = _infra()
    redis_server, kafka, names, env = _engine_env(infra, broker, click_partitions=1,
                                                  prefix="crm-bench-api-recovery-")
    kind = kafka.kind
    port = free_tcp_port()
    env.update({"CRM_KAFKA__IDLE_AFTER": "2", "CRM_API__KEYS": '["bench"]', "CRM_API__PORT": str(port)})
    log = open(Path(env["CRM_RECOVERY_DIR"]) / "engine.log", "wb")
    procs = [subprocess.Popen([sys.executable, "-m", "flows.cli", cmd], env=env, stdout=log,
                              stderr=subprocess.STDOUT) for cmd in ("run", "serve")]
    stop = threading.Event()
    customers: list[str] = []

    def feed() -> None:  # the engine's load, paced, on its own thread
        producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": "2"})
        t0 = time.perf_counter()
        with open(events, "rb") as f:
            for i, line in enumerate(f):
                if stop.is_set():
                    break
                wait = t0 + i / engine_rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                obj = _loads(line.rstrip(b"\n"))
                t = obj.get("type") if isinstance(obj, dict) else None
                topic = _topic_of(t, names)
                producer.produce(topic, line.rstrip(b"\n"))
                producer.poll(0)
                if isinstance(obj, dict) and isinstance(obj.get("customer_id"), str) and len(customers) < 5000:
                    customers.append(obj["customer_id"])
        producer.flush()

    feeder = threading.Thread(target=feed, daemon=True)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counted = threading.Lock()

    def load(lane: int, lanes: int, t0: float, known: list[str]) -> None:
        """Requests lane, lane + lanes, ... on one keep-alive connection, each sent when due."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(lane, int(rate * seconds), lanes):
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            try:
                conn.request("GET", f"/v1/customers/{known[i % len(known)]}", headers={"Authorization": "Bearer bench"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                status = 0
            with counted:
                latencies.append((time.perf_counter() - due) * 1000.0)
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    try:
        if not infra.wait_for_port("127.0.0.1", port, 30.0):
            raise RuntimeError("crm-stream serve did not start")
        time.sleep(3.0)  # the engine connects and assigns its partitions
        feeder.start()
        time.sleep(5.0)  # profiles exist for the customers the load asks for
        known, lanes, t0 = list(dict.fromkeys(customers)), 32, time.perf_counter() + 0.5
        threads = [threading.Thread(target=load, args=(k, lanes, t0, known)) for k in range(lanes)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        stop.set()
        feeder.join(10)
        for p in procs:
            p.kill()
            p.wait()
        kafka.stop()
        redis_server.close()
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    return {"requests": len(latencies), "offered_requests_per_s": rate, "engine_events_per_s": engine_rate,
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "p50": pct(0.5), "p99": pct(0.99),
            "max": round(latencies[-1], 2), "broker": kind}


def _engine_env(infra: Any, broker: str, click_partitions: int, prefix: str) -> tuple[Any, Any, dict, dict]:
    """(redis server, Kafka broker, topic names, the engine's environment) of a live bench row:
    both started, topics of their own (``KAFKA_BOOTSTRAP_SERVERS`` picks the broker when set), the
    default recovery in a directory of its own, logs at WARNING."""
    redis_server = infra.RedisServer()
    redis_server.start()
    kafka = infra.KafkaBroker(None if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else broker)
    kafka.start()
    names = {k: infra.unique_topic(k) for k in ("click", "orders", "chat", "profile", "triggers", "dlq")}
    kafka.create_topics([names["click"]], partitions=click_partitions)
    kafka.create_topics([v for k, v in names.items() if k != "click"], partitions=1)
    env = {**os.environ, "CRM_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap, "CRM_REDIS__URL": redis_server.url,
           "CRM_METRICS_PORT": "0", "CRM_KAFKA__CLICKSTREAM_TOPIC": names["click"],
           "CRM_KAFKA__ORDERS_TOPIC": names["orders"], "CRM_KAFKA__CHAT_TOPIC": names["chat"],
           "CRM_KAFKA__PROFILE_TOPIC": names["profile"],
           "CRM_KAFKA__TRIGGERS_TOPIC": names["triggers"], "CRM_KAFKA__DEADLETTER_TOPIC": names["dlq"],
           "CRM_LOG_LEVEL": "WARNING", "CRM_RECOVERY_DIR": tempfile.mkdtemp(prefix=prefix)}
    return redis_server, kafka, names, env


def _topic_of(type: object, names: dict[str, str]) -> str:
    """The input topic a log line of this event type is produced to, by its family in the events
    table (a bad line, or a type with no topic of its own: the orders topic)."""
    from operators.event_table import family_of

    fam = family_of(type)
    short = {"clickstream": "click", "chat": "chat", "profile": "profile", "catalog": "catalog"}
    name = short.get(fam.name) if fam is not None else None
    return names[name] if name in names else names["orders"]
