"""Next-item evaluation of the recommender on a real session clickstream (``crm-stream recs-eval``).

Input: session-rec's TSV format (Ludewig, Mauro, Latifi & Jannach, "Empirical analysis of
session-based recommendation algorithms", UMUAI 2021): a header line, then
``SessionId<TAB>ItemId<TAB>Time`` (Unix seconds, fractions allowed). Every click becomes a
``product_view`` of its session (the session is the customer: these logs have no user ids) and
goes, in time order, through :class:`models.recs_eval.RecsPipeline`, the dataflow's
recommendation path (``RecentItems`` -> ``observe_blocks``/``ProductNeighbours`` -> the table of a
:class:`models.recs.ShardRecs`).

Protocol (session-rec's next-item evaluation): for every test session and every position ``p``
(0-based click index, ``p < len - 1``), right after the click at ``p`` the shard's
:meth:`~models.recs.ShardRecs.for_customer` list (top 20) is scored against the click at ``p + 1``;
targets never seen in training are skipped. HR@k = share of positions whose target is in the
top k; MRR@k = mean of 1/rank over the positions (0 beyond k). Coverage@20 = the share of the
training products that appear in some top-20 list. Modes: ``static`` learns from training only;
``streaming`` also learns from the test clicks as they come (a session when it closes, as live).
The best-sellers baseline is :class:`PopularityBaseline` over clicks (last 7 days), fed what the
mode learns from.
"""

from __future__ import annotations

import csv
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from models.recs import ShardRecs
from models.recs_eval import RecsPipeline
from operators.events import Event
from operators.recs import DEFAULT, PopularityBaseline, RecsConfig

KS = (5, 10, 20)
TOP = max(KS)


class FormatError(ValueError):
    """A file that is not in the expected format (message names the file and line)."""


@dataclass
class Clicks:
    """A clickstream: sessions' (ts ms, item) lists in time order, file order breaking ties."""

    sessions: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    clicks: int = 0

    def items(self) -> set[str]:
        return {item for s in self.sessions.values() for _t, item in s}


def _rows(fh, path: Path, delimiter: str, columns: list[str], shown: str):
    """(line number, row) after a header whose first columns are ``columns``; FormatError otherwise."""
    rows = csv.reader(fh, delimiter=delimiter)
    header = next(rows, None)
    if header is None or [h.strip() for h in header[:len(columns)]] != columns:
        raise FormatError(f"{path}:1: expected the header {shown}")
    return enumerate(rows, start=2)


def read_tsv(path: Path) -> Clicks:
    """``SessionId<TAB>ItemId<TAB>Time`` with a header line -> :class:`Clicks`. Raises
    :class:`FormatError` on a missing column or a time that is not a number."""
    out = Clicks()
    with open(path, newline="") as fh:
        for line, row in _rows(fh, path, "\t", ["SessionId", "ItemId", "Time"], "SessionId<TAB>ItemId<TAB>Time"):
            if not row:
                continue
            if len(row) < 3:
                raise FormatError(f"{path}:{line}: expected 3 tab-separated columns")
            try:
                ts = int(round(float(row[2]) * 1000))
            except ValueError:
                raise FormatError(f"{path}:{line}: Time is not a number") from None
            out.sessions.setdefault(row[0], []).append((ts, row[1]))
            out.clicks += 1
    for s in out.sessions.values():
        s.sort(key=lambda c: c[0])  # stable: equal times keep file order
    return out


def read_positions(path: Path) -> tuple[set[tuple[str, int]], dict[tuple[str, int], list[str]]]:
    """A session-rec list file (``SessionId;Position;Recommendations;Scores``) -> the positions
    and the shipped list at each (Position = the 0-based index of the click recommended after)."""
    positions: set[tuple[str, int]] = set()
    lists: dict[tuple[str, int], list[str]] = {}
    with open(path, newline="") as fh:
        for line, row in _rows(fh, path, ";", ["SessionId", "Position", "Recommendations"],
                               "SessionId;Position;Recommendations;Scores"):
            if len(row) < 3 or not row[1].strip().isdigit():
                raise FormatError(f"{path}:{line}: expected SessionId;Position;Recommendations")
            key = (row[0], int(row[1]))
            positions.add(key)
            lists[key] = [r for r in row[2].split(",") if r]
    return positions, lists


def merged(clicks: Clicks) -> list[tuple[int, str, int, str]]:
    """Every click as (ts, session, index in the session, item), in time order."""
    rows = [(ts, sid, i, item) for sid, s in clicks.sessions.items() for i, (ts, item) in enumerate(s)]
    rows.sort(key=lambda r: r[0])
    return rows


def rank_of(target: str, recs: list[str]) -> int:
    """1-based rank of ``target`` in ``recs``, 0 when absent."""
    try:
        return recs.index(target) + 1
    except ValueError:
        return 0


def metrics(ranks: Iterable[int]) -> dict:
    """HR@k and MRR@k for k in 5, 10, 20 from 1-based ranks (0 = missed), and the count."""
    ranks = list(ranks)
    n = len(ranks)
    out: dict = {"positions": n}
    for k in KS:
        out[f"HR@{k}"] = round(sum(0 < r <= k for r in ranks) / n, 4) if n else None
        out[f"MRR@{k}"] = round(sum(1.0 / r for r in ranks if 0 < r <= k) / n, 4) if n else None
    return out


class SessionRun:
    """One mode's run: the pipeline, a click best-seller baseline, and every scored position's
    rank (recommender, baseline)."""

    def __init__(self, pipe: RecsPipeline, shard: ShardRecs, popularity: PopularityBaseline, learn: bool):
        self.pipe, self.shard, self.popularity, self.learn = pipe, shard, popularity, learn
        self.ranks: dict[tuple[str, int], tuple[int, int]] = {}
        self.recommended: set[str] = set()
        self.skipped = 0  # positions whose target was never seen in training
        self.seconds = 0.0

    def click(self, sid: str, ts: int, item: str) -> None:
        """One click through the dataflow's path (learning from it only when the mode does)."""
        ev = Event(f"{sid}:{ts}", "product_view", sid, ts, {"product_id": item, "session_id": sid})
        self.pipe.learn = self.learn
        self.pipe.process(ev)
        if self.learn:
            self.popularity.observe((item,), ts)

    def predict(self, sid: str, p: int, ts: int, target: str, known: set[str]) -> None:
        """Score the list after the click at ``p`` against ``target`` (the click at ``p + 1``)."""
        if target not in known:
            self.skipped += 1
            return
        cust = self.pipe.customers[sid]
        recs = self.shard.for_customer((tuple(cust.interests(ts, self.pipe.query_size)), ()), ts, TOP)
        self.recommended.update(recs)
        self.ranks[(sid, p)] = (rank_of(target, recs), rank_of(target, self.popularity.recommend((), TOP, ts)))


def train_pipeline(train: Clicks, config: RecsConfig, query_size: int) -> tuple[RecsPipeline, ShardRecs,
                                                                                   PopularityBaseline]:
    """Stream the training clicks through the recommendation path (sessions close on their timers)."""
    shard = ShardRecs(config)
    pipe = RecsPipeline(config, query_size)
    pipe.table = shard.table  # the pipeline's updates land in the shard's table
    popularity = PopularityBaseline()
    run = SessionRun(pipe, shard, popularity, learn=True)
    for ts, sid, _i, item in merged(train):
        run.click("train:" + sid, ts, item)
    return pipe, shard, popularity


def run_mode(trained: bytes, test: Clicks, known: set[str], learn: bool) -> SessionRun:
    """Replay the test clicks on a copy of the trained state; score every position."""
    pipe, shard, popularity = pickle.loads(trained)
    run = SessionRun(pipe, shard, popularity, learn)
    t0 = time.perf_counter()
    first = True
    for ts, sid, i, item in merged(test):
        if first:  # close every training session first: that is still training
            pipe.learn = True
            pipe.advance(ts)
            first = False
        run.click(sid, ts, item)
        s = test.sessions[sid]
        if i + 1 < len(s):
            run.predict(sid, i, ts, s[i + 1][1], known)
    run.seconds = time.perf_counter() - t0
    return run


def memory(pipe: RecsPipeline) -> dict:
    """Pickled bytes of the recommender's state per product: the product step's sketches and a
    model shard's neighbour table (what recovery snapshots hold)."""
    products = len(pipe.products)
    state = len(pickle.dumps(pipe.products, protocol=pickle.HIGHEST_PROTOCOL))
    table = len(pickle.dumps(pipe.table, protocol=pickle.HIGHEST_PROTOCOL))
    entries = sum(len(p.sketch) for p in pipe.products.values())
    return {"products": products, "bytes_per_product": round((state + table) / products, 1) if products else None,
            "sketch_bytes_per_product": round(state / products, 1) if products else None,
            "table_bytes_per_product": round(table / products, 1) if products else None,
            "sketch_entries_per_product": round(entries / products, 1) if products else None}


def mode_report(run: SessionRun, keys: Optional[set[tuple[str, int]]], catalogue: set[str]) -> dict:
    """HR/MRR of the recommender and the baseline over ``keys`` (all scored positions if None)."""
    ranks = run.ranks if keys is None else {k: v for k, v in run.ranks.items() if k in keys}
    out = metrics(r for r, _b in ranks.values())
    out["best_sellers"] = metrics(b for _r, b in ranks.values())
    if keys is None:
        out["skipped_unseen_targets"] = run.skipped
        out["coverage@20"] = round(len(run.recommended & catalogue) / len(catalogue), 4) if catalogue else None
        out["seconds"] = round(run.seconds, 2)
    return out


def evaluate(train_path: Path, test_path: Path, positions_path: Optional[Path] = None,
             config: RecsConfig = DEFAULT, query_size: int = 10) -> dict:
    """The ``recs-eval`` report: per mode, HR@k / MRR@k over all test positions (and over the
    positions of ``positions_path``), the best-sellers baseline, coverage, memory; with
    ``positions_path``, that file's own lists scored the same way."""
    train, test = read_tsv(Path(train_path)), read_tsv(Path(test_path))
    known = train.items()
    trained = pickle.dumps(train_pipeline(train, config, query_size), protocol=pickle.HIGHEST_PROTOCOL)
    keys, shipped = read_positions(Path(positions_path)) if positions_path else (None, None)
    report: dict = {
        "data": {"train_clicks": train.clicks, "train_sessions": len(train.sessions), "test_clicks": test.clicks,
                 "test_sessions": len(test.sessions), "products_in_training": len(known)},
        "config": config._asdict(),
    }
    for mode, learn in (("static", False), ("streaming", True)):
        run = run_mode(trained, test, known, learn)
        report[mode] = {"all": mode_report(run, None, known)}
        if keys is not None:
            report[mode]["positions"] = mode_report(run, keys, known)
        report[mode]["memory"] = memory(run.pipe)
    if keys is not None:
        report["shipped"] = {"file": Path(positions_path).name, **score_shipped(test, keys, shipped)}
    return report


def score_shipped(test: Clicks, keys: set[tuple[str, int]], lists: dict) -> dict:
    """A shipped list file scored with this module's scorer (the target of (s, p) is click p + 1)."""
    ranks, missing = [], 0
    for sid, p in sorted(keys):
        s = test.sessions.get(sid)
        if s is None or p + 1 >= len(s):
            missing += 1  # a position the test file does not have
            continue
        ranks.append(rank_of(s[p + 1][1], lists[(sid, p)][:TOP]))
    return {**metrics(ranks), "positions_not_in_test": missing}
