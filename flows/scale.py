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
* ``resume_s``: the time to unpickle every customer's snapshot, what a resume from recovery does
  per customer (the recovery database's own read comes on top).

The state figures are the customer state machine's; Bytewax's own per-key cost (the logic
objects of the profile and policy steps, the key in its map) comes on top (README, Performance).
"""

from __future__ import annotations

import gc
import pickle
import random
import subprocess
import sys
import time
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
    each customer's snapshot as ``ProfileLogic`` pickles it to ``snapshot``. Returns the customer
    and quiet counts and the snapshot bytes per customer."""
    from flows.dataflow import replay_decoder
    from operators.cold import compact
    from operators.customer import CustomerState
    from operators.rules import RuleConfig

    settings = load_settings()
    cfg, decode = RuleConfig(settings), replay_decoder(settings)
    states: dict[str, Any] = {}
    end = 0
    with open(path, "rb") as f:
        for line in f:
            ev = decode(line.rstrip(b"\n"), "")
            st = states.get(ev.customer_id)
            if st is None:
                st = states[ev.customer_id] = CustomerState(ev.customer_id, cfg.recs)
            st.process(ev, cfg)
            end = max(end, ev.ts)
    now = end + int(away_days * DAY)
    quiet = 0
    size = 0
    with open(snapshot, "wb") as out:
        for cid, st in states.items():
            st.advance(max(now, st.clock), cfg)
            record = compact(st, cfg)
            quiet += record is not None
            blob = pickle.dumps((st if record is None else record, 0.0), protocol=pickle.HIGHEST_PROTOCOL)
            size += len(blob)
            out.write(orjson.dumps([cid, len(blob)]) + b"\n" + blob)
    n = max(len(states), 1)
    return {"customers": len(states), "quiet": quiet, "snapshot_bytes_per_customer": round(size / n, 1)}


def resume_figures(snapshot: Path) -> dict[str, Any]:
    """Resume every customer from ``snapshot`` (run in a fresh process): the seconds to unpickle
    them all (what a resume from recovery does per key; the recovery database's own read comes on
    top) and the RSS growth per customer of the state held afterwards (a packed record stays
    packed until the customer's next event)."""
    from flows.bench import _rss

    blobs = []
    with open(snapshot, "rb") as f:
        while True:
            head = f.readline()
            if not head:
                break
            cid, size = orjson.loads(head)
            blobs.append((cid, f.read(size)))
    from flows.runtime import engine_gc

    gc.collect()
    rss0 = _rss()
    with engine_gc():  # as the engine resumes: inside the run, under its collector settings
        t0 = time.perf_counter()
        states = {cid: pickle.loads(blob) for cid, blob in blobs}
        resume = time.perf_counter() - t0
    blobs = []
    gc.collect()
    n = max(len(states), 1)
    return {"customers": len(states), "rss_bytes_per_customer": round((_rss() - rss0) / n, 1),
            "resume_s": round(resume, 2)}


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "flows.scale", *args], check=True, stdout=subprocess.PIPE).stdout
    return orjson.loads(out.splitlines()[-1])


def _state(log: Path, away_days: float = 0.0) -> dict[str, Any]:
    snap = log.with_suffix(f".snap{away_days:g}")
    fig = _child("state", str(log), str(snap), str(away_days))
    fig.update(_child("resume", str(snap)))
    snap.unlink()
    return fig


def scale_row(customers: int, work: Path, active_share: float = 0.2, full_max: int = 300_000) -> dict[str, Any]:
    """One size of the scale mode (module docstring); logs are written under ``work``. The full
    flow's events/s is measured up to ``full_max`` customers (``None`` above: at ~1,000 events/s a
    million customers' seven million events take two hours on this machine)."""
    work.mkdir(parents=True, exist_ok=True)
    logs = {name: work / f"{customers}-{name}.jsonl" for name in ("mixed", "cold", "active")}
    events = sparse_log(customers, logs["mixed"], active_share)
    sparse_log(customers, logs["cold"], 0.0)
    sparse_log(customers, logs["active"], 1.0)
    seconds = _child("full", str(logs["mixed"]))["seconds"] if customers <= full_max else None
    mixed, cold, active = (_state(logs[k]) for k in ("mixed", "cold", "active"))
    dormant = _state(logs["cold"], 365.0)
    for log in logs.values():
        log.unlink()
    return {"customers": customers, "events": events,
            "events_per_s": None if seconds is None else round(events / seconds),
            "bytes_per_active_customer": active["rss_bytes_per_customer"],
            "bytes_per_cold_customer": cold["rss_bytes_per_customer"],
            "snapshot_bytes_per_customer": mixed["snapshot_bytes_per_customer"], "resume_s": mixed["resume_s"],
            # beyond the fields: how many were packed, and the cold customers a year later
            "quiet_share": {"mixed": round(mixed["quiet"] / mixed["customers"], 3),
                            "cold": round(cold["quiet"] / cold["customers"], 3),
                            "dormant": round(dormant["quiet"] / dormant["customers"], 3)},
            "bytes_per_dormant_customer": dormant["rss_bytes_per_customer"],
            "snapshot_bytes_per_dormant_customer": dormant["snapshot_bytes_per_customer"]}


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


if __name__ == "__main__":  # a child of scale_row: full LOG | state LOG SNAPSHOT AWAY_DAYS | resume SNAPSHOT | keycost N SHARDS
    from flows.bench import full_run

    if sys.argv[1] == "full":
        print(orjson.dumps({"seconds": full_run(load_settings(), Path(sys.argv[2]))}).decode())
    elif sys.argv[1] == "keycost":  # keycost CUSTOMERS SHARDS
        print(orjson.dumps(key_cost(int(sys.argv[2]), int(sys.argv[3]))).decode())
    elif sys.argv[1] == "state":
        print(orjson.dumps(state_figures(Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]))).decode())
    else:
        print(orjson.dumps(resume_figures(Path(sys.argv[2]))).decode())
