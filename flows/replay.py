"""Replay event logs through the same dataflow as ``run``, into files."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import orjson
from bytewax.testing import run_main

from config.settings import RedisSettings, Settings, ms
from connectors.files import (JsonlSink, LogSource, ProfilesFileSink, Progress, ReplayEnd, TombstoneFileSink,
                              read_tombstones)
from connectors.redis_sink import RedisProfileSink, RedisRecsSink, RedisTriggerSink
from connectors.metrics import Telemetry, reset_telemetry
from models.metrics import refresh, shards_of
from models.recs import summary as recs_summary
from models.persist import load_models, save_models
from flows.dataflow import Edges, build_flow, future_guard, publish_uplift, replay_decoder
from flows.runtime import engine_gc
from operators.events import parse_ts
from operators.rules import RuleConfig
from operators.triggers import MARKETING
from operators.privacy import Tombstones

log = logging.getLogger("crm.replay")


@dataclass
class ReplayOutputs:
    triggers: Path
    dlq: Path
    summary: Path
    profiles: Optional[Path] = None
    suppressed: Optional[Path] = None
    audit: Optional[Path] = None  # erasure_completed records


def replay(settings: Settings, logs: list[Path], out: ReplayOutputs, drain: bool = False,
           progress: Optional[Progress] = None, shards: int = 1, model_in: Optional[Path] = None,
           model_out: Optional[Path] = None, redis: Optional[RedisSettings] = None) -> dict:
    """Run the whole flow over ``logs`` (merged by ``ts``); write outputs; return the summary.

    ``redis``: also write triggers, profiles and recommendations there, as ``run`` does (a Redis
    the API can serve from a past log; never implied, the URL is always given).

    ``model_in`` warm-starts every model shard from a saved file; ``model_out`` saves the trained
    models at the end (so a live engine can start from last month's log)."""
    warm = load_models(model_in).models if model_in else None
    t = reset_telemetry()
    for path in (out.triggers, out.dlq, out.profiles, out.suppressed, out.audit):
        if path is not None:  # an output with nothing in it is still an (empty) file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    end = ReplayEnd(Path(tempfile.mkdtemp(prefix="crm-replay-end-")), partitions=1, drain=drain)
    source = LogSource(logs, replay_decoder(settings), end, progress=progress, guard=future_guard(settings))
    edges = Edges(
        source=source,
        end=end,
        recovery=False,
        triggers=[(JsonlSink(out.triggers, "triggers_file"), None)],
        deadletters=[(JsonlSink(out.dlq, "dead_letters_file"), None)],
        profiles=[(ProfilesFileSink(out.profiles), None)] if out.profiles else [],
        suppressed=[(JsonlSink(out.suppressed, "suppressed_file"), None)] if out.suppressed else [],
        **privacy_edges(settings, out.audit),
    )
    if redis is not None:
        edges.triggers.append((RedisTriggerSink(redis), None))
        edges.profiles.append((RedisProfileSink(redis), None))
        edges.recs = [(RedisRecsSink(redis), None)]
    flow = build_flow(settings, edges, shards=shards, t=t, warm=warm)
    try:
        with engine_gc():
            run_main(flow)
        marketing = MARKETING | {r.name for r in RuleConfig(settings).rules if r.policy_class == "marketing"}
        t.extra["stale_if_live"] = stale_if_live(out.triggers, end.read(), ms(settings.policy.max_trigger_age),
                                                 marketing)
    finally:
        shutil.rmtree(end.directory, ignore_errors=True)
    refresh(t)
    recs = recs_summary(list(t.recs_parts.values()))
    if recs is not None:
        t.extra["recommendations"] = recs
    if model_out:
        t.extra["saved_models"] = save_models(shards_of(t), model_out)
    summary = finish_summary(t, out)
    return summary


def stale_if_live(triggers: Path, end_ts: Optional[int], max_age_ms: int,
                  marketing: frozenset = MARKETING) -> dict[str, int]:
    """Per marketing type (``marketing``: the contract's and the enabled rules' of that class), the triggers of this replay that ``run`` would suppress as ``stale`` had it
    started over the same events with the wall clock at the latest event time read (a first start
    over history): those due more than ``max_trigger_age`` before it. Deterministic, as a replay is."""
    counts = {t: 0 for t in sorted(marketing)}
    if end_ts is None:
        return counts
    with open(triggers, "rb") as f:
        for line in f:
            trig = orjson.loads(line)
            if trig["type"] in counts and end_ts - parse_ts(trig["event_ts"]) > max_age_ms:
                counts[trig["type"]] += 1
    return counts


def privacy_edges(settings: Settings, audit: Optional[Path]) -> dict:
    """The erasure outputs of a replay: the audit file, and the tombstone file (loaded now, appended
    to as the replay erases customers) when ``privacy.tombstone_file`` is set."""
    key = settings.privacy.tombstone_key.get_secret_value().encode()
    store = settings.privacy.tombstone_file
    sinks = [(JsonlSink(audit, "audit_file"), None)] if audit else []
    if store is not None:
        sinks.append((TombstoneFileSink(store), None))
    tombs = Tombstones(key)
    tombs.merge(read_tombstones(store))
    if store is not None:
        log.info("%d erased customers' tombstones loaded from %s", len(tombs.erased), store)
    return {"audit": sinks, "tombstones": tombs}


def replay_for_eval(config: Optional[Path], log: Path, out_dir: Path, model_in: Optional[Path] = None,
                    model_out: Optional[Path] = None, overrides: Optional[dict] = None) -> tuple[dict, list[dict]]:
    """One replay of ``log`` into ``out_dir`` for ``crm-stream eval``: (summary, final profiles).
    ``overrides``: settings groups to change (``{"models": {"clv_horizon": 86400}}``)."""
    from config.settings import load_settings

    settings = load_settings(config, **(overrides or {}))
    out = ReplayOutputs(out_dir / "triggers.jsonl", out_dir / "dlq.jsonl", out_dir / "summary.json",
                        out_dir / "profiles.jsonl")
    summary = replay(settings, [log], out, model_in=model_in, model_out=model_out)
    profiles = [orjson.loads(line) for line in out.profiles.read_bytes().splitlines() if line.strip()]
    return summary, profiles


def finish_summary(t: Telemetry, out: ReplayOutputs) -> dict:
    summary = t.summary()
    summary["holdout"] = {typ: publish_uplift(t, typ) for typ in t.holdout_types()}
    summary["outputs"] = {k: str(v) for k, v in vars(out).items() if v is not None}
    out.summary.parent.mkdir(parents=True, exist_ok=True)
    out.summary.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return summary


def run_with_progress(fn, progress: Progress, console=None):
    """Run ``fn`` in a thread while a Rich progress bar follows ``progress`` (terminal only)."""
    from rich.progress import BarColumn, DownloadColumn, Progress as Bar, TimeRemainingColumn

    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    with Bar("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
             console=console, transient=True) as bar:
        task = bar.add_task("replaying", total=progress.total)
        th.start()
        while th.is_alive():
            th.join(0.2)
            bar.update(task, completed=progress.done)
    if "error" in result:
        raise result["error"]
    return result["value"]
