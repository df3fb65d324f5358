"""Compare estimators by progressive validation on a generated (or any) event log.

    python -m models.bench EVENTS.jsonl [--estimators logreg,hoeffding,arf] [--models churn,frustration]

Drives the customer state machine directly (no Bytewax: the same items, in the same order, as a
single-worker replay), keeps the scoring requests and labels, then replays them through a
:class:`ModelShard` per estimator and prints progressive ROC AUC, log loss and cost per call.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path
from typing import Iterable, Optional

from config.settings import Settings
from models.shard import ModelShard
from operators.customer import CustomerState
from operators.events import Event, decode
from operators.rules import RuleConfig
from operators.messages import Label, ScoreRequest


def model_stream(paths: Iterable[Path], settings: Optional[Settings] = None) -> list:
    """Every ScoreRequest and Label a single-worker replay would send to the models, in order."""
    cfg = RuleConfig(settings or Settings())
    states: dict[str, CustomerState] = {}
    out: list = []
    end = None
    for path in paths:
        with open(path, "rb") as f:
            for raw in f:
                ev = decode(raw.rstrip(b"\r\n"))
                if type(ev) is not Event:
                    continue
                st = states.get(ev.customer_id)
                if st is None:
                    st = states[ev.customer_id] = CustomerState(ev.customer_id)
                res, _ = st.process(ev, cfg)
                out.extend(x for x in res if type(x) in (ScoreRequest, Label))
                end = ev.ts if end is None or ev.ts > end else end
    for cid in sorted(states):
        out.extend(x for x in states[cid].flush(end, cfg) if type(x) in (ScoreRequest, Label))
    return out


def evaluate(stream: list, estimator: str, models: Iterable[str] = ("churn", "frustration"),
             warmup: int = 50) -> dict:
    """Progressive validation of ``estimator`` for ``models`` over ``stream``."""
    models = tuple(models)
    shard = ModelShard(estimators={m: estimator for m in models}, warmup=warmup)
    cost = {m: 0.0 for m in models}
    calls = {m: 0 for m in models}
    clock = time.perf_counter
    for item in stream:
        if item.model not in models:
            continue
        t0 = clock()
        if type(item) is ScoreRequest:
            shard.score(item)
        else:
            shard.learn(item)
        cost[item.model] += clock() - t0
        calls[item.model] += 1
    out = {}
    for m, s in shard.metrics().items():
        if m in models:
            s["us_per_call"] = round(cost[m] / max(calls[m], 1) * 1e6, 1)
            out[m] = s
    return out


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events", nargs="+", type=Path)
    ap.add_argument("--estimators", default="logreg,logreg_fast,hoeffding,arf")
    ap.add_argument("--models", default="churn,frustration")
    ap.add_argument("--cache", type=Path, help="pickle of the model stream (built once, reused)")
    args = ap.parse_args(argv)
    if args.cache and args.cache.exists():
        stream = pickle.loads(args.cache.read_bytes())
    else:
        t0 = time.perf_counter()
        stream = model_stream(args.events)
        print(f"model stream: {len(stream)} items in {time.perf_counter() - t0:.1f}s")
        if args.cache:
            args.cache.write_bytes(pickle.dumps(stream, protocol=pickle.HIGHEST_PROTOCOL))
    print(f"{'model':<12} {'estimator':<16} {'roc_auc':>8} {'log_loss':>9} {'validated':>9} {'pos_rate':>8} "
          f"{'us/call':>8}")
    for est in args.estimators.split(","):
        res = evaluate(stream, est, args.models.split(","))
        for m, s in res.items():
            print(f"{m:<12} {est:<16} {s['roc_auc'] or 0:>8.4f} {s['log_loss'] or 0:>9.4f} {s['validated']:>9} "
                  f"{s['positive_rate'] or 0:>8.3f} {s['us_per_call']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
