"""``crm-stream bench --scale``: how cost per event and memory grow with the customer base.

A shop's ids accumulate for years while a few percent are active on a given day. For each size
(10k, 100k, 1M customers) this writes a sparse six-month log (:func:`sparse_log`: most customers
have a few sessions spread over the period; ``active_share`` of them also one in the last 30
days), then measures, each in a fresh process so that one size's memory cannot hide another's:

* ``events_per_s``: the full dataflow over the mixed log (``full_run``, null sinks), up to
  ``full_max`` customers;
* ``bytes_per_cold_customer`` / ``bytes_per_active_customer``: RSS growth per customer of a
  worker resumed from the snapshot of a log where no customer / every customer was active in the
  last 30 days (the same histories otherwise), written after every customer's frontier reached
  the log's end (timers fired as a live engine's would) and quiet customers were packed
  (``operators.cold``); ``bytes_per_dormant_customer``: the cold log's customers a year later;
* ``snapshot_bytes_per_customer``: the customer state Bytewax snapshots, on the mixed log;
* ``resume_s``: a real Bytewax resume of the profile step from a recovery directory seeded with
  those snapshots (:func:`seed_recovery`, :func:`resume_figures`), until every key is back, in
  the engine's ``recovery_partitions``; ``eager_resume_s`` with every state unpickled at once;
  ``single_partition_resume_s`` from one partition (Bytewax 0.21 reads a partition 1,000 keys at a
  time, each batch a query over the whole partition: quadratic in the keys per partition);
* ``timer_us_per_event``: what a pending timer per customer costs each event, held by Bytewax
  or by the frontier's alarms (:func:`timer_cost`).

The RSS figures are of the resumed profile step, Bytewax's per-key objects included (the policy
step's come on top; README, Performance). Above ``split_max`` customers only the mixed log is
measured, and a timer's cost only in the frontier's alarms.
"""

from __future__ import annotations

import gc
import random
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from config.settings import load_settings
from operators.events import format_ts
from operators.units import DAY, HOUR

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PRODUCTS = 5000


def sparse_log(customers: int, path: Path, active_share: float, seed: int = 1, days: int = 182) -> int:
    """Write ``customers`` sparse histories over ``days`` to ``path`` (ts order); returns the number
    of events. ``active_share`` of customers get one more session in the last 30 days."""
    rnd = random.Random(seed)
    rows: list[tuple[int, bytes]] = []
    quiet_end = (days - 30) * DAY
    for i in range(customers):
        cid = f"u{i:07d}"
        sessions = [rnd.randrange(0, quiet_end) for _ in range(1 + min(int(rnd.expovariate(1.0)), 6))]
        if rnd.random() < active_share:
            sessions.append(rnd.randrange(quiet_end, days * DAY - HOUR))
        for n, t0 in enumerate(sessions):
            _session(rnd, cid, f"{cid}s{n}", START_MS + t0, rows)
    rows.sort(key=lambda r: r[0])
    with open(path, "wb") as f:
        f.writelines(line for _, line in rows)
    return len(rows)


def _session(rnd: random.Random, cid: str, sid: str, t: int, rows: list) -> None:
    """A visit: a page view, a few product views, sometimes a cart, sometimes bought."""
    def add(obj: dict) -> None:
        at = obj.pop("t")
        obj.update(event_id=f"{sid}e{len(rows)}", customer_id=cid, ts=format_ts(at))
        rows.append((at, orjson.dumps(obj) + b"\n"))

    add({"type": "page_view", "session_id": sid, "t": t})
    product = f"p{int(rnd.paretovariate(1.2)) % PRODUCTS:05d}"
    for _ in range(rnd.randint(1, 4)):
        t = t + rnd.randint(5_000, 90_000)
        product = f"p{int(rnd.paretovariate(1.2)) % PRODUCTS:05d}"
        add({"type": "product_view", "session_id": sid, "product_id": product, "t": t})
    if rnd.random() < 0.2:
        t = t + rnd.randint(5_000, 60_000)
        add({"type": "add_to_cart", "session_id": sid, "product_id": product, "price": 19.99, "quantity": 1, "t": t})
        if rnd.random() < 0.5:
            t = t + rnd.randint(60_000, 600_000)
            oid = f"o{sid}"
            add({"type": "order_placed", "order_id": oid, "total": 19.99, "t": t,
                 "items": [{"product_id": product, "quantity": 1, "price": 19.99}],
                 "promised_delivery_ts": format_ts(t + 3 * DAY)})
            t = t + rnd.randint(1, 3) * DAY
            add({"type": "order_delivered", "order_id": oid, "t": t})


def state_figures(path: Path, snapshot: Path, away_days: float = 0.0) -> dict[str, Any]:
    """Replay ``path`` through the customer state machine (run in a fresh process), move every
    customer's frontier to the log's end plus ``away_days`` (what a live engine's timers do while
    customers stay away: labels and rescores fire), pack the quiet ones (operators.cold), and write
    each customer's snapshot as the live profile step (``ProfileLogic.snapshot``) writes it to
    ``snapshot``. Returns the customer and quiet counts and the snapshot bytes per customer."""
    from connectors.metrics import reset_telemetry
    from flows.dataflow import ProfileLogic
    from operators.cold import compact
    from operators.rules import RuleConfig

    # the state machine's own rules: the live engine's daily profile refresh would only repeat scores here
    cfg, t = RuleConfig(load_settings()), reset_telemetry()
    states, end = replay_states(path, cfg)
    now = end + int(away_days * DAY)
    quiet = size = customers = 0
    shell = ProfileLogic(cfg, True, t, None, None, "batch", True)
    with open(snapshot, "wb") as out:
        for cid in list(states):
            st = states.pop(cid)
            st.advance(max(now, st.clock), cfg)
            record = compact(st, cfg)
            quiet += record is not None
            shell.state, shell.cold = (st, None) if record is None else (None, (cid, record))
            blob = shell.snapshot()
            size += len(blob)
            customers += 1
            out.write(orjson.dumps([cid, len(blob)]) + b"\n" + blob)
    return {"customers": customers, "quiet": quiet, "snapshot_bytes_per_customer": round(size / max(customers, 1), 1)}


def replay_states(path: Path, cfg: Any) -> tuple[dict[str, Any], int]:
    """(customer id -> ``CustomerState`` after ``path`` replayed through the state machine with the
    rules ``cfg``, the log's latest event time in ms); dead letters and catalogue events (no
    customer) are left out."""
    from flows.dataflow import replay_decoder
    from operators.customer import CustomerState
    from operators.events import DeadLetter

    decode = replay_decoder(load_settings())
    states: dict[str, Any] = {}
    end = 0
    with open(path, "rb") as f:
        for line in f:
            ev = decode(line.rstrip(b"\n"), "")
            if type(ev) is DeadLetter or not ev.customer_id:
                continue
            st = states.get(ev.customer_id)
            if st is None:
                st = states[ev.customer_id] = CustomerState(ev.customer_id, cfg.recs)
            st.process(ev, cfg)
            end = max(end, ev.ts)
    return states, end


def _snapshots(snapshot: Path):
    """(customer id, snapshot bytes) pairs of a :func:`state_figures` file."""
    with open(snapshot, "rb") as f:
        while True:
            head = f.readline()
            if not head:
                return
            cid, size = orjson.loads(head)
            yield cid, f.read(size)


def seed_recovery(snapshot: Path, recovery: Path, partitions: int) -> dict[str, Any]:
    """Write ``snapshot``'s customers into a fresh Bytewax recovery directory of ``partitions``
    partitions as the profile step's state (run in a fresh process): what a live engine's recovery
    holds after its last epoch."""
    from bytewax.operators import StatefulBatchLogic
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import TestingSource, run_main

    class Seed(StatefulBatchLogic):
        def __init__(self, resume: Any):
            self.blob = resume

        def on_batch(self, items: list) -> tuple[list, bool]:
            self.blob = items[-1]
            return [], StatefulBatchLogic.RETAIN

        def snapshot(self) -> bytes:
            return self.blob

    recovery.mkdir(parents=True, exist_ok=True)
    init_db_dir(recovery, partitions)
    items = list(_snapshots(snapshot))
    run_main(_resume_flow(TestingSource(items, batch_size=5000), Seed), epoch_interval=None,
             recovery_config=RecoveryConfig(str(recovery)))
    return {"customers": len(items), "partitions": partitions,
            "recovery_bytes": sum(p.stat().st_size for p in recovery.iterdir())}


def _resume_flow(source: Any, builder: Any, input_id: str = "input") -> Any:
    import bytewax.operators as bop
    from bytewax.dataflow import Dataflow

    flow = Dataflow("scale_resume")  # the same flow and step ids in the seeding and the resuming run
    stream = bop.input(input_id, flow, source)  # another id: a fresh source (the seed's is at its end)
    bop.inspect("out", bop.stateful_batch("profile", stream, builder), lambda *a: None)
    return flow


def resume_figures(recovery: Path, eager: bool = False) -> dict[str, Any]:
    """Resume the profile step from ``recovery`` (a :func:`seed_recovery` directory) with the
    engine's own ``ProfileLogic`` in a real Bytewax run (run in a fresh process): ``resume_s``, the
    seconds from start to the moment every key is back (the recovery database read, a logic per
    key built from its snapshot, its timer asked, as Bytewax resumes; ``resume_cpu_s`` the
    process's CPU seconds for it: the figure to compare on a busy machine), and the RSS growth per
    customer then (``rss_bytes_per_customer``: Bytewax's per-key objects included; a resumed full
    state stays pickled until the customer's next event or timer, a quiet one packed). ``eager``:
    every customer is woken (its state unpickled, a packed one expanded) as it is resumed, as if
    its next event came at once: what a worker holds for customers it has seen since."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.testing import TestingSource, run_main

    from connectors.metrics import reset_telemetry
    from flows.bench import _rss
    from connectors.watermark import Watermarks
    from flows.dataflow import ProfileLogic, profile_rules
    from flows.runtime import engine_gc
    from operators.policy import PolicyConfig

    run = recovery.with_name(recovery.name + ".run")  # the run's end of input writes into its recovery
    shutil.copytree(recovery, run)
    settings = load_settings()
    cfg, t = profile_rules(settings, PolicyConfig(settings), live=True), reset_telemetry()
    watermarks = Watermarks()  # as live: a timer far ahead waits in the frontier's alarms, not in Bytewax
    logics: list = []
    fig: dict[str, Any] = {}

    class Probe(ProfileLogic):
        __slots__ = ()

        def on_eof(self) -> tuple[list, bool]:  # the first key's end of input: every key is resumed by now
            if not fig:
                fig["resume_s"], fig["cpu_s"] = time.perf_counter() - t0, time.process_time() - cpu0
                gc.collect()
                fig["rss"] = _rss()
            return [], True

    def build(resume: Any) -> ProfileLogic:
        logic = Probe(cfg, True, t, resume, None, "batch", True, watermarks)
        if eager and logic.frozen is not None:
            logic._unfreeze()
        elif eager and logic.cold is not None:
            logic._thaw()
        logics.append(logic)
        return logic

    gc.collect()
    rss0 = _rss()
    with engine_gc():  # as the engine resumes: inside the run, under its collector settings
        t0, cpu0 = time.perf_counter(), time.process_time()
        run_main(_resume_flow(TestingSource([]), build), epoch_interval=None,
                 recovery_config=RecoveryConfig(str(run)))
    shutil.rmtree(run)
    n = max(len(logics), 1)
    return {"customers": len(logics), "resume_s": round(fig["resume_s"], 2), "resume_cpu_s": round(fig["cpu_s"], 2),
            "rss_bytes_per_customer": round((fig["rss"] - rss0) / n, 1),
            "still_pickled": sum(logic.frozen is not None for logic in logics)}


def next_events(touched: int, seed: int = 7, base: int = 10_000) -> list[tuple[int, bytes]]:
    """Fresh visits after every scale log's end, the same at every base size: ``touched`` of the
    first ``base`` customers (every size has them) each visit once within one minute of event time,
    all (ts, line) in ts order. A minute holds a base's own timers (labels, rescores) out of the
    figure: it is the cost of an event, not of the base's passing time."""
    rnd = random.Random(seed)
    rows: list[tuple[int, bytes]] = []
    t0 = START_MS + 183 * DAY  # a day after the logs' last possible event
    for n, i in enumerate(rnd.sample(range(base), touched)):
        visit: list[tuple[int, bytes]] = []
        _session(rnd, f"u{i:07d}", f"n{n}", 0, visit)
        start = t0 + rnd.randrange(60_000)
        for step, (_, line) in enumerate(sorted(visit, key=lambda r: r[0])):  # a visit keeps its order
            obj = orjson.loads(line)
            obj["ts"] = format_ts(start + step)
            rows.append((start + step, orjson.dumps(obj)))
    rows.sort(key=lambda r: r[0])
    return rows


def event_cost(recovery: Path, touched: int = 3000, base: int = 10_000, batch: int = 50) -> dict[str, Any]:
    """Microseconds per event of the profile step resumed from ``recovery`` (the base), as live
    (the frontier's watermarks come with each batch): :func:`next_events` for ``touched`` customers
    of the first ``base`` in batches of ``batch`` events, timed from the first event to the end of input (run in a fresh
    process; ``cpu_us_per_event`` by the process's CPU time). ``resumed_first``: keys back before
    the first event (the whole base: the figure is the cost at that base size); ``held``: events
    still waiting at the end for a timer due before them (live, the frontier's tick releases them;
    this flow has no tick source)."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.testing import TestingSource, run_main

    from connectors.metrics import reset_telemetry
    from connectors.routing import worker_keys
    from connectors.watermark import Watermark, Watermarks
    from flows.dataflow import ProfileLogic, profile_rules, replay_decoder
    from flows.runtime import engine_gc
    from operators.policy import PolicyConfig

    run = recovery.with_name(recovery.name + ".run")
    shutil.copytree(recovery, run)
    settings = load_settings()
    cfg, t, decode = profile_rules(settings, PolicyConfig(settings), live=True), reset_telemetry(), \
        replay_decoder(settings)
    watermarks, logics, clock = Watermarks(), [], {}
    inbox = worker_keys(" watermarks/", 1)[0]
    rows = next_events(touched, base=base)
    items: list = []
    for k in range(0, len(rows), batch):  # each batch with its watermark: one activation, all admitted
        group = [decode(line, "p/0") for _, line in rows[k:k + batch]]
        items += [(ev.customer_id, ev) for ev in group] + [(inbox, Watermark("p", group[-1].ts, 1))]

    class Probe(ProfileLogic):
        __slots__ = ()

        def on_batch(self, items: list) -> tuple[list, bool]:
            if "t0" not in clock and type(items[0]) is not Watermark:
                clock["t0"], clock["cpu0"], clock["resumed"] = time.perf_counter(), time.process_time(), len(logics)
            return super().on_batch(items)

        def on_eof(self) -> tuple[list, bool]:
            if "t1" not in clock:
                clock["t1"], clock["cpu1"] = time.perf_counter(), time.process_time()
            return [], True

    def build(resume: Any) -> ProfileLogic:
        logics.append(Probe(cfg, True, t, resume, None, "batch", True, watermarks))
        return logics[-1]

    with engine_gc():  # one epoch: a snapshot's commit (commit_gc_s) is a cost per interval, not per event
        run_main(_resume_flow(TestingSource(items, batch_size=batch + 1), build, "next"), epoch_interval=timedelta(days=1),
                 recovery_config=RecoveryConfig(str(run)))
    shutil.rmtree(run)
    return {"events": len(rows), "touched": touched, "resumed_first": clock["resumed"],
            "us_per_event": round((clock["t1"] - clock["t0"]) / len(rows) * 1e6, 2),
            "cpu_us_per_event": round((clock["cpu1"] - clock["cpu0"]) / len(rows) * 1e6, 2),
            "held": int(t.held._value.get())}


# Bytewax 0.21's RecoveryCommitter::commit (src/recovery.rs), run by every partition after every snapshot
_COMMIT_GC = """WITH max_epoch_snapshots AS (
    SELECT step_id, state_key, MAX(snap_epoch) AS snap_epoch FROM snaps WHERE snap_epoch <= ?1
    GROUP BY step_id, state_key),
  garbage_snapshots AS (
    SELECT step_id, state_key, snaps.snap_epoch FROM snaps JOIN max_epoch_snapshots USING (step_id, state_key)
    WHERE snaps.snap_epoch < max_epoch_snapshots.snap_epoch)
  DELETE FROM snaps WHERE (step_id, state_key, snap_epoch) IN garbage_snapshots"""


def commit_gc_s(recovery: Path) -> float:
    """Seconds the worker waits at each snapshot for Bytewax's clean-up of superseded snapshots, a
    query over every row of every partition (run here with Python's SQLite on ``recovery``, rolled
    back): a cost per snapshot interval that grows with the base."""
    import sqlite3

    took = 0.0
    for part in sorted(recovery.glob("part-*.sqlite3")):
        db = sqlite3.connect(part, isolation_level=None)
        try:
            t0 = time.perf_counter()
            db.execute("BEGIN")
            db.execute(_COMMIT_GC, (2 ** 62,))
            took += time.perf_counter() - t0
            db.execute("ROLLBACK")
        finally:
            db.close()
    return round(took, 3)


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "flows.scale", *args], check=True, stdout=subprocess.PIPE).stdout
    return orjson.loads(out.splitlines()[-1])


def _state(log: Path, away_days: float = 0.0, single: bool = False, mixed: bool = False) -> dict[str, Any]:
    """The state figures of ``log``, resumed from as many recovery partitions as the engine makes
    (``recovery_partitions``); ``single``: also from one partition (``single_partition_resume_s``);
    ``mixed``: also :func:`event_cost` on that base (``next_events``)."""
    snap, recovery = log.with_suffix(f".snap{away_days:g}"), log.with_suffix(f".recovery{away_days:g}")
    fig = _child("state", str(log), str(snap), str(away_days))
    fig.update(_child("seed", str(snap), str(recovery), str(load_settings().recovery_partitions)))
    fig.update(_child("resume", str(recovery)))
    eager = _child("resume", str(recovery), "eager")  # the older way: every state unpickled at resume
    fig.update(eager_resume_s=eager["resume_s"], woken_bytes_per_customer=eager["rss_bytes_per_customer"])
    if mixed:  # what the next visits cost with this base resumed (the same visits at every size)
        base = min(10_000, fig["customers"])
        fig["next_events"] = _child("events", str(recovery), str(min(3000, base)), str(base))
        fig["commit_gc_s"] = commit_gc_s(recovery)
    shutil.rmtree(recovery)
    if single:  # Bytewax reads a partition per 1,000 keys with a query over all of it: quadratic
        _child("seed", str(snap), str(recovery), "1")
        fig["single_partition_resume_s"] = _child("resume", str(recovery))["resume_s"]
        shutil.rmtree(recovery)
    snap.unlink()
    return fig


def scale_row(customers: int, work: Path, active_share: float = 0.2, full_max: int = 300_000,
              split_max: int = 300_000) -> dict[str, Any]:
    """One size of the scale mode (module docstring); logs are written under ``work``. The full
    flow's events/s is measured up to ``full_max`` customers, the active / cold / dormant split up
    to ``split_max`` (``None`` above: at ~1,000 events/s a million customers' seven million events
    take two hours on this machine, and each state figure some 35 minutes)."""
    work.mkdir(parents=True, exist_ok=True)
    split = customers <= split_max
    logs = {name: work / f"{customers}-{name}.jsonl" for name in (("mixed", "cold", "active") if split else ("mixed",))}
    events = sparse_log(customers, logs["mixed"], active_share)
    if split:
        sparse_log(customers, logs["cold"], 0.0)
        sparse_log(customers, logs["active"], 1.0)
    seconds = _child("full", str(logs["mixed"]))["seconds"] if customers <= full_max else None
    mixed = _state(logs["mixed"], single=split, mixed=True)
    cold, active, dormant = (_state(logs["cold"]), _state(logs["active"]), _state(logs["cold"], 365.0)) if split \
        else ({}, {}, {})
    for log in logs.values():
        log.unlink()
    share = lambda fig: round(fig["quiet"] / fig["customers"], 3) if fig else None  # noqa: E731
    return {"customers": customers, "events": events,
            "events_per_s": None if seconds is None else round(events / seconds),
            "bytes_per_active_customer": active.get("rss_bytes_per_customer"),
            "bytes_per_cold_customer": cold.get("rss_bytes_per_customer"),
            "snapshot_bytes_per_customer": mixed["snapshot_bytes_per_customer"], "resume_s": mixed["resume_s"],
            # beyond the fields: the mixed base at rest after a resume, how many were packed,
            # the cold customers a year later, and each figure's state once every customer was woken
            "bytes_per_customer": mixed["rss_bytes_per_customer"],
            "quiet_share": {"mixed": share(mixed), "cold": share(cold), "dormant": share(dormant)},
            "bytes_per_dormant_customer": dormant.get("rss_bytes_per_customer"),
            "snapshot_bytes_per_dormant_customer": dormant.get("snapshot_bytes_per_customer"),
            "woken_bytes_per_customer": {k: f.get("woken_bytes_per_customer") for k, f in
                                         (("mixed", mixed), ("active", active), ("cold", cold), ("dormant", dormant))},
            "eager_resume_s": mixed["eager_resume_s"],
            "recovery_partitions": mixed["partitions"],
            "single_partition_resume_s": mixed.get("single_partition_resume_s"),
            # the profile step resumed with the whole base, then the same visits at every size (CPU us)
            "next_event_cpu_us": mixed["next_events"]["cpu_us_per_event"],
            # and what every snapshot interval costs with this base (Bytewax's clean-up query)
            "snapshot_commit_gc_s": mixed["commit_gc_s"],
            # live: what each customer's pending timer costs per event, in Bytewax's notify_at map or in
            # the frontier's alarms (flows.dataflow.NEAR_S); fewer events at large sizes, same figure.
            # Bytewax's only up to split_max: making its keys scans every timer per activation, O(n^2)
            # (a million keys took 37 minutes, for 4,729 us per event against 1.0 with alarms)
            "timer_us_per_event": {kind: _child("timers", str(customers), flag, str(_timer_events(customers, flag)))
                                   ["us_per_event"] if split or flag == "0" else None
                                   for kind, flag in (("bytewax", "1"), ("alarms", "0"))}}


def _timer_events(customers: int, timers: str) -> int:
    return 100_000 if timers == "0" else max(1_000, min(100_000, 10 ** 9 // customers))


def key_cost(customers: int, shards: int = 0, record: int = 190) -> dict[str, Any]:
    """RSS growth per customer of a minimal Bytewax flow holding a ``record``-byte ``bytes`` per
    customer: one ``stateful_batch`` key per customer (``shards`` 0), or ``shards`` keys each with
    a dict of records (what Bytewax's per-key objects cost; run in a fresh process)."""
    import bytewax.operators as bop
    from bytewax.dataflow import Dataflow
    from bytewax.operators import StatefulBatchLogic
    from bytewax.testing import TestingSource, run_main

    from flows.bench import _rss

    at_end: dict = {}

    class Logic(StatefulBatchLogic):
        def __init__(self, resume: Any):
            self.recs: Any = None if not shards else {}

        def on_batch(self, items: list) -> tuple[list, bool]:
            for item in items:
                if shards:
                    self.recs[item[0]] = bytes(bytearray(item[1]))
                else:
                    self.recs = bytes(bytearray(item))
            return [], StatefulBatchLogic.RETAIN

        def on_eof(self) -> tuple[list, bool]:
            if "rss" not in at_end:
                gc.collect()
                at_end["rss"] = _rss()
            return [], StatefulBatchLogic.RETAIN

        def snapshot(self) -> None:
            return None

    blob = bytes(record)
    ids = [f"u{i:07d}" for i in range(customers)]
    items = [(f"s{i % shards}", (c, blob)) for i, c in enumerate(ids)] if shards else [(c, blob) for c in ids]
    flow = Dataflow("key_cost")
    stream = bop.input("in", flow, TestingSource(items, batch_size=2000))
    bop.inspect("out", bop.stateful_batch("state", stream, Logic), lambda *a: None)
    gc.collect()
    rss0 = _rss()
    run_main(flow)
    return {"customers": customers, "shards": shards, "bytes_per_customer": round((at_end["rss"] - rss0) / customers, 1)}


def timer_cost(customers: int, timers: bool, events: int = 100_000, batch: int = 20) -> dict[str, Any]:
    """Microseconds per event of a minimal Bytewax flow once ``customers`` keys exist, each with a
    timer a day ahead in ``notify_at`` (``timers``) or none (as when the frontier's alarms hold
    them): then ``events`` items for 100 keys in batches of ``batch``, an activation each. Bytewax
    0.21 scans every key's ``notify_at`` twice per activation (run in a fresh process)."""
    from datetime import datetime, timezone

    import bytewax.operators as bop
    from bytewax.dataflow import Dataflow
    from bytewax.operators import StatefulBatchLogic
    from bytewax.testing import TestingSource, run_main

    far = datetime.now(timezone.utc) + timedelta(days=1)
    clock: dict = {}

    class Logic(StatefulBatchLogic):
        def __init__(self, resume: Any):
            pass

        def on_batch(self, items: list) -> tuple[list, bool]:
            if items[0] == 1 and "t0" not in clock:
                clock["t0"] = time.perf_counter()
            return [], StatefulBatchLogic.RETAIN

        def on_eof(self) -> tuple[list, bool]:
            clock.setdefault("t1", time.perf_counter())
            return [], StatefulBatchLogic.RETAIN

        def notify_at(self) -> Any:
            return far if timers else None

        def snapshot(self) -> None:
            return None

    items = [(f"u{i:07d}", 0) for i in range(customers)] + [(f"u{i % 100:07d}", 1) for i in range(events)]
    flow = Dataflow("timer_cost")
    stream = bop.input("in", flow, TestingSource(items, batch_size=batch))
    bop.inspect("out", bop.stateful_batch("state", stream, Logic), lambda *a: None)
    run_main(flow)
    return {"customers": customers, "timers": timers,
            "us_per_event": round((clock["t1"] - clock["t0"]) / events * 1e6, 2)}


if __name__ == "__main__":  # a child of scale_row: full LOG | state LOG SNAPSHOT AWAY_DAYS | seed SNAPSHOT RECOVERY
    # PARTITIONS | resume RECOVERY [eager] | events RECOVERY TOUCHED BASE | keycost N SHARDS | timers N 0|1 EVENTS
    from flows.bench import full_run

    if sys.argv[1] == "full":
        print(orjson.dumps({"seconds": full_run(load_settings(), Path(sys.argv[2]))}).decode())
    elif sys.argv[1] == "keycost":  # keycost CUSTOMERS SHARDS
        print(orjson.dumps(key_cost(int(sys.argv[2]), int(sys.argv[3]))).decode())
    elif sys.argv[1] == "timers":  # timers CUSTOMERS 0|1 EVENTS
        print(orjson.dumps(timer_cost(int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4]))).decode())
    elif sys.argv[1] == "events":  # events RECOVERY TOUCHED BASE
        print(orjson.dumps(event_cost(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))).decode())
    elif sys.argv[1] == "seed":
        print(orjson.dumps(seed_recovery(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))).decode())
    elif sys.argv[1] == "state":
        print(orjson.dumps(state_figures(Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]))).decode())
    else:  # resume RECOVERY [eager]
        print(orjson.dumps(resume_figures(Path(sys.argv[2]), sys.argv[3:] == ["eager"])).decode())
