"""``crm-stream bench --scale``: how cost per event and memory grow with the customer base.

A shop's ids accumulate for years while a few percent are active on a given day. For each size
(10k, 100k, 1M customers) this writes a sparse six-month log (:func:`sparse_log`: most customers
have a few sessions spread over the period; ``active_share`` of them also one in the last 30
days), then measures, each in a fresh process so that one size's memory cannot hide another's:

* ``events_per_s``: the full dataflow over the mixed log (``full_run``, null sinks);
* ``bytes_per_cold_customer`` / ``bytes_per_active_customer``: RSS growth per customer after the
  customer state machine has read a log where no customer / every customer was active in the
  last 30 days (the same histories otherwise);
* ``snapshot_bytes_per_customer``: the pickled per-customer state Bytewax snapshots (profile and
  policy), on the mixed log;
* ``resume_s``: the time to unpickle every customer's snapshot, what a resume from recovery does
  per customer (the recovery database's own read comes on top).
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

DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PRODUCTS = 5000


def sparse_log(customers: int, path: Path, active_share: float, seed: int = 1, days: int = 182) -> int:
    """Write ``customers`` sparse histories over ``days`` to ``path`` (ts order); returns the number
    of events. ``active_share`` of customers get one more session in the last 30 days."""
    rnd = random.Random(seed)
    rows: list[tuple[int, bytes]] = []
    quiet_end = (days - 30) * DAY_MS
    for i in range(customers):
        cid = f"u{i:07d}"
        sessions = [rnd.randrange(0, quiet_end) for _ in range(1 + min(int(rnd.expovariate(1.0)), 6))]
        if rnd.random() < active_share:
            sessions.append(rnd.randrange(quiet_end, days * DAY_MS - 3_600_000))
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
                 "promised_delivery_ts": format_ts(t + 3 * DAY_MS)})
            t = t + rnd.randint(1, 3) * DAY_MS
            add({"type": "order_delivered", "order_id": oid, "t": t})


def state_figures(path: Path) -> dict[str, Any]:
    """RSS growth, snapshot bytes and unpickling time per customer after the customer state
    machine (and a policy state each) has read ``path``; run in a fresh process."""
    from flows.bench import _rss
    from flows.dataflow import replay_decoder
    from operators.customer import CustomerState
    from operators.policy import PolicyState
    from operators.rules import RuleConfig

    settings = load_settings()
    cfg, decode = RuleConfig(settings), replay_decoder(settings)
    gc.collect()
    rss0 = _rss()
    states: dict[str, Any] = {}
    with open(path, "rb") as f:
        for line in f:
            ev = decode(line.rstrip(b"\n"), "")
            st = states.get(ev.customer_id)
            if st is None:
                st = states[ev.customer_id] = (CustomerState(ev.customer_id, cfg.recs), PolicyState())
            st[0].process(ev, cfg)
    ev = line = None
    gc.collect()
    rss = _rss() - rss0
    n = max(len(states), 1)
    blobs = [pickle.dumps((s, 0.0), protocol=pickle.HIGHEST_PROTOCOL) for s in states.values()]
    t0 = time.perf_counter()
    for b in blobs:
        pickle.loads(b)
    resume = time.perf_counter() - t0
    return {"customers": len(states), "rss_bytes_per_customer": round(rss / n, 1),
            "snapshot_bytes_per_customer": round(sum(map(len, blobs)) / n, 1), "resume_s": round(resume, 2)}


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "flows.scale", *args], check=True, stdout=subprocess.PIPE).stdout
    return orjson.loads(out.splitlines()[-1])


def scale_row(customers: int, work: Path, active_share: float = 0.2) -> dict[str, Any]:
    """One size of the scale mode (module docstring); logs are written under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    logs = {name: work / f"{customers}-{name}.jsonl" for name in ("mixed", "cold", "active")}
    events = sparse_log(customers, logs["mixed"], active_share)
    sparse_log(customers, logs["cold"], 0.0)
    sparse_log(customers, logs["active"], 1.0)
    seconds = _child("full", str(logs["mixed"]))["seconds"]
    mixed, cold, active = (_child("state", str(logs[k])) for k in ("mixed", "cold", "active"))
    return {"customers": customers, "events": events, "events_per_s": round(events / seconds),
            "bytes_per_active_customer": active["rss_bytes_per_customer"],
            "bytes_per_cold_customer": cold["rss_bytes_per_customer"],
            "snapshot_bytes_per_customer": mixed["snapshot_bytes_per_customer"], "resume_s": mixed["resume_s"]}


if __name__ == "__main__":  # a child of scale_row: full|state LOG
    from flows.bench import full_run

    if sys.argv[1] == "full":
        print(orjson.dumps({"seconds": full_run(load_settings(), Path(sys.argv[2]))}).decode())
    else:
        print(orjson.dumps(state_figures(Path(sys.argv[2]))).decode())
