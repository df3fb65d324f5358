"""crm-stream: generate, replay, run, demo, serve, settings, explain, backtest, eval, recs-eval, bench, archive."""

from __future__ import annotations

import logging
import sys
import time
from enum import Enum
from pathlib import Path
from typing import List, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from config.settings import Settings, SettingsError, load_settings, relocate

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)



def _fail(exc: Exception) -> NoReturn:
    """The command stops with one line (never wrapped) and exit code 2."""
    console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.callback()
def _check_environment() -> None:
    """A ``CRM_*`` variable that names no setting stops every command (it would be ignored)."""
    from config.settings import check_environment

    try:
        check_environment()
    except SettingsError as exc:
        _fail(exc)


ConfigOpt = typer.Option(None, "--config", "-c", help="TOML settings file (environment CRM_* overrides it)")


def _settings(config: Optional[Path], component: str = "cli", worker: Optional[int] = None) -> Settings:
    from operators.rules import RuleConfig

    try:
        settings = load_settings(config)
        RuleConfig(settings)  # an unknown or broken rule fails here, at start, in one line
    except SettingsError as exc:
        _fail(relocate(exc, config))
    from config.logging import setup_logging

    setup_logging(settings.log_level, component=component, worker=worker)
    return settings


@app.command()
def generate(
    customers: int = typer.Option(2000, min=1),
    days: int = typer.Option(14, min=1),
    seed: int = typer.Option(1),
    out: Path = typer.Option(..., help="directory for events.jsonl and truth.ndjson"),
    bad_share: float = typer.Option(0.005, min=0.0, max=0.5, help="share of extra bad input lines"),
    catalog: bool = typer.Option(True, "--catalog/--no-catalog",
                                 help="price and stock changes and their crm.catalog events (price_changed, "
                                      "stock_changed); off: static prices, always in stock"),
    history: bool = typer.Option(True, "--history/--no-history",
                                 help="some customers' last order before the start is in the log (up to 45 "
                                      "days back); off: every customer starts at the start"),
) -> None:
    """Simulate customers and write DIR/events.jsonl (sorted by ts) and DIR/truth.ndjson."""
    from flows.generator import generate as simulate

    t0 = time.perf_counter()
    stats = simulate(customers, days, seed, out, bad_share=bad_share, catalog=catalog, history=history)
    console.print(f"generated {stats.get('events', '?')} events for {customers} customers over {days} days "
                  f"in {time.perf_counter() - t0:.1f} s -> {out}")


def _print_summary(summary: dict, elapsed: float) -> None:
    table = Table(title="crm-stream replay", show_header=False)
    for key in ("events_read", "events_valid", "events_invalid", "events_duplicate", "events_late"):
        table.add_row(key.replace("_", " "), f"{summary[key]:,}")
    table.add_row("events per second", f"{summary['events_read'] / max(elapsed, 1e-9):,.0f}")
    for t, n in sorted(summary["triggers"].items()):
        table.add_row(f"trigger {t}", f"{n:,}")
    for t, n in sorted(summary["suppressed"].items()):
        table.add_row(f"suppressed {t}", f"{n:,}")
    for t, n in sorted(summary.get("stale_if_live", {}).items()):
        table.add_row(f"stale if live {t}", f"{n:,} (run would drop them: due > max_trigger_age before the last event)")
    for name, m in sorted(summary.get("models", {}).items()):
        auc = m.get("roc_auc")
        auc_text = "n/a (one class so far)" if auc is None else round(auc, 3)
        table.add_row(f"model {name}", f"{m.get('predictions', 0):,} predictions, {m.get('labels', 0):,} labels, "
                                        f"ROC AUC {auc_text}")
    for t, reasons in sorted(summary.get("suppressed_by_reason", {}).items()):
        table.add_row(f"  {t} by reason", ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items())))
    for t, q in sorted(summary.get("quiet_hours", {}).items()):
        table.add_row(f"quiet hours {t}", f"{q['held']:,} held, {q['released']:,} judged at morning, "
                                          f"{sum(q['dropped'].values()):,} dropped, {q['still_held']:,} still held")
    for t, h in sorted(summary.get("holdout", {}).items()):
        s, o = h["sent"], h["holdout"]
        text = (f"conversion {s['converted']}/{s['n']} sent vs {o['converted']}/{o['n']} held out")
        if h["ci95"] is not None:
            text += f": uplift {h['difference']:+.3f} (95 % CI {h['ci95'][0]:+.3f} .. {h['ci95'][1]:+.3f})"
        table.add_row(f"holdout {t}", text)
    recs = summary.get("recommendations")
    if recs:
        table.add_row("recommendations", f"hit rate@10 {recs['item_to_item']['hit_rate_at_10']} vs "
                                         f"{recs['popularity']['hit_rate_at_10']} best-sellers "
                                         f"({recs['hit_rate_lift']}x)")
    for k, v in summary.get("outputs", {}).items():
        table.add_row(f"output {k}", v)
    Console().print(table)


@app.command()
def replay(
    logs: Optional[List[Path]] = typer.Argument(None, exists=True,
                                                help=".jsonl / .jsonl.gz event logs, or directories of them"),
    triggers_out: Path = typer.Option(..., help="triggers, one JSON object a line"),
    dlq_out: Path = typer.Option(..., help="dead letters with raw bytes and reason"),
    summary: Path = typer.Option(..., help="summary JSON"),
    profiles_out: Optional[Path] = typer.Option(None, help="each customer's final profile"),
    suppressed_out: Optional[Path] = typer.Option(None, help="candidates policy held back, with the clause"),
    audit_out: Optional[Path] = typer.Option(None, help="erasure_completed records, one JSON object a line"),
    drain: bool = typer.Option(False, help="fire every pending timer at the end, not only those due by the last event"),
    model_in: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="start the models from this file"),
    model_out: Optional[Path] = typer.Option(None, help="save the trained models here at the end"),
    kafka: bool = typer.Option(False, "--kafka", help="replay a time range straight from the input topics"),
    from_ts: Optional[str] = typer.Option(None, "--from", help="with --kafka: start (ISO-8601 with offset)"),
    to_ts: Optional[str] = typer.Option(None, "--to", help="with --kafka: end, exclusive (default: now)"),
    redis_url: Optional[str] = typer.Option(None, "--redis", help="also write triggers, profiles and "
                                            "recommendations to this Redis URL (for `crm-stream serve`)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Replay event logs (merged in ts order) through the same dataflow as `run`.

    Outputs are files, and Redis only with --redis URL: a replay never writes to the live trigger topic."""
    from connectors.files import Progress, expand_logs
    from flows.replay import ReplayOutputs, replay as do_replay, run_with_progress

    settings = _settings(config, "replay")
    logs = expand_logs(logs or [])
    if kafka:
        logs.extend(_export_kafka_range(settings, from_ts, to_ts, triggers_out.parent))
    if not logs:
        console.print("[red]error:[/red] give event logs, or --kafka --from TS")
        raise typer.Exit(2)
    outputs = ReplayOutputs(triggers_out, dlq_out, summary, profiles_out, suppressed_out, audit_out)
    progress = Progress(sum(p.stat().st_size for p in logs))
    t0 = time.perf_counter()
    redis = settings.redis.model_copy(update={"url": redis_url}) if redis_url else None
    job = lambda: do_replay(settings, list(logs), outputs, drain=drain, progress=progress,  # noqa: E731
                            model_in=model_in, model_out=model_out, redis=redis)
    result = run_with_progress(job, progress, console) if console.is_terminal else job()
    _print_summary(result, time.perf_counter() - t0)


def _export_kafka_range(settings: Settings, from_ts: Optional[str], to_ts: Optional[str], where: Path) -> List[Path]:
    """The range as one file per input partition (the replay merges them by event time)."""
    from connectors.kafka import export_range
    from operators.events import Invalid, parse_ts

    if from_ts is None:
        console.print("[red]error:[/red] --kafka needs --from")
        raise typer.Exit(2)
    try:
        start = parse_ts(from_ts)
        end = parse_ts(to_ts) if to_ts else int(time.time() * 1000)
    except Invalid as exc:
        console.print(f"[red]error:[/red] --from/--to: {exc.detail} (use e.g. 2026-11-23T10:00:00Z)")
        raise typer.Exit(2)
    files = export_range(settings.kafka, start, end, where / "kafka-range", topics=settings.read_topics())
    n = sum(sum(1 for _ in open(f, "rb")) for f in files)
    console.print(f"read {n} messages from {', '.join(settings.read_topics())} in [{from_ts}, {to_ts or 'now'})")
    return files


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), help="where the generated log and the outputs go"),
    customers: int = typer.Option(2000, min=1),
    days: int = typer.Option(14, min=1),
    seed: int = typer.Option(7),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Generate a realistic event stream and replay it through the full dataflow (no Kafka, no Redis)."""
    from flows.replay import ReplayOutputs, replay as do_replay
    from flows.generator import generate as simulate

    settings = _settings(config, "demo")
    console.print(f"generating {customers} customers x {days} days (seed {seed}) into {out}/ ...")
    simulate(customers, days, seed, out)
    outputs = ReplayOutputs(out / "triggers.jsonl", out / "deadletters.jsonl", out / "summary.json",
                            out / "profiles.jsonl", out / "suppressed.jsonl")
    console.print("replaying through decode -> profile -> models -> policy -> sinks ...")
    t0 = time.perf_counter()
    result = do_replay(settings, [out / "events.jsonl"], outputs)
    _print_summary(result, time.perf_counter() - t0)


@app.command()
def run(
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Bytewax worker threads in this process"),
    process_id: Optional[int] = typer.Option(None, "--process-id", "-i", help="this process's index in a cluster"),
    addresses: Optional[str] = typer.Option(None, "--addresses", "-a", help="host:port;host:port of all processes"),
    archive: Optional[Path] = typer.Option(None, help="write every consumed message to hourly .jsonl.gz files"),
    model_in: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                            help="warm-start the models (when there is no recovery state yet)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Consume the input topics from Kafka; write triggers to Kafka and Redis until stopped."""
    from flows.live import resume_note, run_live

    settings = _settings(config, "run", process_id)
    log = logging.getLogger("crm.run")
    if not settings.recovery:
        console.print("[bold red]warning:[/bold red] recovery is off (CRM_RECOVERY=false): a restart re-reads the "
                      "topics from the start and sends their triggers again", highlight=False, soft_wrap=True)
    try:
        run_live(settings, workers=workers, process_id=process_id,
                 addresses=addresses.split(";") if addresses else None, archive=archive, model_in=model_in)
    except KeyboardInterrupt:
        log.info("interrupted: stopping (%s)", resume_note(settings))
    except Exception as exc:
        causes = _causes(exc)
        # Bytewax reports SIGINT/SIGTERM as a runtime error, or wraps the KeyboardInterrupt it raised
        if "signal received" in str(exc) or any(isinstance(c, KeyboardInterrupt) for c in causes):
            log.info("stopped by a signal (%s)", resume_note(settings))
            return
        # one structured line with the root cause (the JSON log keeps the whole traceback), exit 1:
        # a supervisor restarts the worker and Bytewax recovery resumes from the last snapshot
        root = causes[-1]
        log.error("worker stopped: %s: %s (%s)", type(root).__name__, root, resume_note(settings), exc_info=exc)
        raise typer.Exit(1) from None


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first."""
    out = [exc]
    while out[-1].__cause__ is not None and len(out) < 20:
        out.append(out[-1].__cause__)
    return out


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="listen address (default CRM_API__HOST)"),
    port: Optional[int] = typer.Option(None, help="port (default CRM_API__PORT)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Serve profiles, triggers and recommendations from Redis over HTTP, and the agent's page (read only)."""
    import uvicorn

    from api.app import create_app

    settings = _settings(config, "serve")
    if not settings.api.keys:
        logging.getLogger("crm.api").warning("no API keys (CRM_API__KEYS): every /v1 and /agent request gets 401")
    # uvicorn's access log prints paths (customer ids): ours logs the route template instead
    uvicorn.run(create_app(settings), host=host or settings.api.host, port=port or settings.api.port,
                access_log=False, log_config=None)


class Broker(str, Enum):
    mock = "mock"
    tansu = "tansu"


@app.command()
def bench(
    customers: int = typer.Option(20000, min=1),
    days: int = typer.Option(14, min=1),
    seed: int = typer.Option(1),
    events: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="use this log instead of generating"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the report as JSON"),
    skip_live: bool = typer.Option(False, help="skip the Kafka + Redis latency row"),
    skip_cluster: bool = typer.Option(False, help="skip the 2-process row"),
    skip_api: bool = typer.Option(False, help="skip the API row (GET /v1/customers/{id} at 500/s beside the engine)"),
    broker: Broker = typer.Option(Broker.mock, help="live row's broker: librdkafka's mock cluster or Tansu; "
                                                   "KAFKA_BOOTSTRAP_SERVERS overrides both"),
    repeat: int = typer.Option(2, min=1, help="rounds of the throughput rows; each row reports its best "
                                              "(the machine is shared: one round is one noisy sample)"),
    only: Optional[str] = typer.Option(None, "--rows", help="only these rows, e.g. full,core,cluster (of decode, "
                                                          "reference, full, core, cluster, memory, live, api)"),
    scale: Optional[str] = typer.Option(None, help="only the scale mode: customer counts, e.g. 10000,100000,1000000 "
                                                   "(sparse six-month logs; events/s, bytes per active and cold "
                                                   "customer, snapshot bytes, resume time)"),
) -> None:
    """Throughput against the engine's own ceiling, side by side in one run (ratios, not absolutes)."""
    import tempfile

    import orjson

    if scale is not None:
        _bench_scale([int(x) for x in scale.split(",") if x.strip()], json_out)
        return

    from flows.bench import run_bench
    from flows.generator import generate as simulate

    rows = {"decode", "reference", "full", "core", "memory"} | (set() if skip_cluster else {"cluster"}) \
        | (set() if skip_live else {"live"}) | (set() if skip_api else {"api"})
    if only is not None:
        rows = {r.strip() for r in only.split(",") if r.strip()}
        unknown = rows - {"decode", "reference", "full", "core", "cluster", "memory", "live", "api"}
        if unknown:
            _fail(f"unknown bench rows: {', '.join(sorted(unknown))}")
    if events is None:
        where = Path(tempfile.mkdtemp(prefix="crm-bench-"))
        console.print(f"generating {customers} customers x {days} days (seed {seed}) ...")
        simulate(customers, days, seed, where)
        events = where / "events.jsonl"
    report = run_bench(events, rows, console, broker=broker.value, repeat=repeat)
    table = Table(title=f"crm-stream bench: {report['events']:,} events", show_header=False)
    for name, row in report["rows"].items():
        rounds = ", ".join(f"{report['events'] / s:,.0f}" for s in row["runs"])
        spread = f"  (best of rounds: {rounds})" if len(row["runs"]) > 1 else ""
        table.add_row(name, f"{row['events_per_s']:,.0f} events/s{spread}")
    for key in ("full_vs_reference", "core_vs_reference", "river_vs_reference", "full_vs_core", "full_vs_core_cpu",
                "two_workers_vs_one", "two_workers_vs_one_median", "two_workers_vs_one_cpu",
                "two_workers_vs_one_cpu_median", "reference_two_workers_vs_one", "reference_vs_decode",
                "bytes_per_customer"):
        if key in report:
            table.add_row(key, str(report[key]))
    if "latency_ms" in report:
        lat = report["latency_ms"]
        old = lat["customer_event"]
        table.add_row("latency_ms", f"p50 {lat['p50']}  p99 {lat['p99']}  max {lat['max']} ({lat['broker']}; "
                                    f"from the customer's event alone: p50 {old['p50']}  p99 {old['p99']}  "
                                    f"max {old['max']})")
    if "api_ms" in report:
        api = report["api_ms"]
        table.add_row("api_ms", f"p50 {api['p50']}  p99 {api['p99']}  max {api['max']} "
                                f"(GET /v1/customers/{{id}} at {api['offered_requests_per_s']}/s)")
    Console().print(table)
    if json_out:
        json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))


@app.command("recs-eval")
def recs_eval(
    train: Path = typer.Option(..., exists=True, dir_okay=False, help="training clicks: SessionId<TAB>ItemId<TAB>Time"),
    test: Path = typer.Option(..., exists=True, dir_okay=False, help="test clicks (the next-item protocol runs on them)"),
    positions: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                             help="session-rec list file (SessionId;Position;Recommendations;Scores): "
                                                  "also score exactly its positions, and its own lists"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the report as JSON"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Next-item HR@k / MRR@k of the recommender on a session clickstream (session-rec's protocol)."""
    import orjson

    from models.session_eval import FormatError, evaluate
    from operators.rules import RuleConfig

    settings = _settings(config)
    try:
        report = evaluate(train, test, positions, RuleConfig(settings).recs)
    except FormatError as exc:
        _fail(exc)
    _print_recs_eval(report)
    if json_out:
        json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))


def _print_recs_eval(report: dict) -> None:
    from rich import box

    keys = [f"{m}@{k}" for m in ("HR", "MRR") for k in (5, 10, 20)]
    table = Table(title="crm-stream recs-eval (next item)", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("recommender", no_wrap=True)
    table.add_column("positions", justify="right", no_wrap=True)
    for col in keys:
        table.add_column(col, justify="right")
    for mode in ("static", "streaming"):
        for part, res in report[mode].items():
            if part == "memory":
                continue
            for who, row in ((mode, res), (" best-sellers", res["best_sellers"])):
                where = "all" if part == "all" else "listed"
                table.add_row(who, f"{where} {row['positions']:,}", *(f"{row[k]:.3f}" for k in keys))
    if "shipped" in report:
        row = report["shipped"]
        table.add_row("the list's own", f"listed {row['positions']:,}", *(f"{row[k]:.3f}" for k in keys))
    out = Console()
    out.print(table)
    for mode in ("static", "streaming"):
        res, mem = report[mode]["all"], report[mode]["memory"]
        out.print(f"{mode}: coverage@20 {res['coverage@20']}, {res['skipped_unseen_targets']} targets unseen in "
                  f"training skipped, {mem['products']:,} products, {mem['bytes_per_product']} bytes per product "
                  f"(pickled sketch + table), {res['seconds']} s")

class Dataset(str, Enum):
    cdnow = "cdnow"
    stc3 = "stc3"


DATASET_FILES = {"cdnow": "cdnow/CDNOW_sample.txt", "stc3": "stc3/dialogues_en_dev.json"}


@app.command("eval")
def eval_cmd(
    dataset: Dataset = typer.Argument(..., help="cdnow (churn, CLV) or stc3 (frustration)"),
    realdata: Path = typer.Option(Path("../shared/realdata"), help="the real-data directory"),
    data: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="the dataset file itself"),
    limit: Optional[int] = typer.Option(None, min=3, help="only the first N customers / dialogues (a quick look)"),
    work: Optional[Path] = typer.Option(None, help="where the replayed logs and outputs go (default: a temp dir)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the figures as JSON"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Replay a real dataset through the same dataflow as `run` and print the model figures beside
    baselines fitted on the same data (protocols: models/eval.py)."""
    import tempfile

    from models import eval as ev
    from flows.replay import replay_for_eval

    settings_file = config
    _settings(config, "eval")
    path = data or realdata / DATASET_FILES[dataset.value]
    if not path.is_file():
        console.print(f"[red]error:[/red] {path} not found (give --realdata or --data)")
        raise typer.Exit(2)
    where = work or Path(tempfile.mkdtemp(prefix=f"crm-eval-{dataset.value}-"))
    replay = lambda log, out, **kw: replay_for_eval(settings_file, log, out, **kw)  # noqa: E731
    result = (ev.evaluate_cdnow if dataset is Dataset.cdnow else ev.evaluate_stc3)(path, replay, where, limit)
    table = Table(title=f"crm-stream eval {dataset.value}", show_header=False)
    for key, value in result.items():
        if not isinstance(value, dict):
            table.add_row(key, str(round(value, 4)) if isinstance(value, float) else str(value))
    Console().print(table)
    if json_out:
        ev.dump(result, json_out)


def _bench_scale(sizes: List[int], json_out: Optional[Path]) -> None:
    import tempfile

    import orjson

    from flows.scale import scale_row

    work = Path(tempfile.mkdtemp(prefix="crm-scale-"))
    rows = []
    table = Table(title="crm-stream bench --scale")
    for col in ("customers", "events", "events/s", "B/active", "B/cold", "snapshot B", "resume s"):
        table.add_column(col, justify="right")
    for n in sizes:
        console.print(f"scale: {n:,} customers ...")
        r = scale_row(n, work)
        rows.append(r)
        table.add_row(*("-" if r[k] is None else f"{r[k]:,}" for k in (
            "customers", "events", "events_per_s", "bytes_per_active_customer", "bytes_per_cold_customer",
            "snapshot_bytes_per_customer", "resume_s")))
    Console().print(table)
    if json_out:
        json_out.write_bytes(orjson.dumps({"scale": rows}, option=orjson.OPT_INDENT_2))


@app.command("explain")
def explain_cmd(
    logs: List[Path] = typer.Argument(..., exists=True, help=".jsonl / .jsonl.gz event logs, or directories of them"),
    customer: str = typer.Option(..., "--customer", help="the customer_id to explain"),
    type: Optional[str] = typer.Option(None, "--type", help="a trigger type: why it did or did not go out"),
    replayed: Optional[Path] = typer.Option(None, exists=True, file_okay=False,
                                            help="a directory with triggers.jsonl and suppressed.jsonl of a replay of the same logs"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of a table (every event)"),
    verbose: bool = typer.Option(False, "--all", help="table rows for every event, also those that only moved a timer"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """One customer's timeline: each event, what it changed for the rules, each candidate and the
    policy's decision, what the replay sent and held back, and with --type why (not)."""
    import orjson

    from connectors.files import expand_logs
    from flows.explain import explain, render

    settings = _settings(config, "explain")
    try:
        result = explain(settings, expand_logs(logs), customer, type, replayed)
    except FileNotFoundError as exc:
        _fail(exc)
    if json_out:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    Console().print(render(result, verbose))
    out = Console()
    for t in result["sent"]:
        out.print(f"sent {t['type']} at {t['event_ts']} ({', '.join(t['reasons'])})")
    for t in result["suppressed"]:
        out.print(f"held back {t['type']} at {t['event_ts']}: {t.get('suppressed')}")
    if "why" in result:
        out.print(f"[bold]{type}[/bold]: {result['why']}")


@app.command("backtest")
def backtest_cmd(
    logs: List[Path] = typer.Argument(..., exists=True, help=".jsonl / .jsonl.gz event logs, or directories of them"),
    proposed: Path = typer.Option(..., "--config", "-c", help="the changed rules and policy settings (TOML)"),
    current: Optional[Path] = typer.Option(None, "--current",
                                           help="the settings to compare with (default: the defaults and CRM_* environment)"),
    examples: int = typer.Option(3, min=0, help="examples of added and removed triggers per type"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """What a changed set of rules and policy settings would have sent on past logs, against
    what the current settings send: per type, sent and suppressed (by reason), added and removed."""
    import orjson

    from connectors.files import expand_logs
    from flows.explain import backtest

    report = backtest(_settings(current, "backtest"), _settings(proposed, "backtest"), expand_logs(logs), examples)
    if json_out:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table(title="crm-stream backtest: current -> proposed")
    for col in ("type", "sent", "suppressed (by reason)", "added", "removed", "examples"):
        table.add_column(col)
    for ty, r in report["types"].items():
        sup = lambda d: ", ".join(f"{k} {v}" for k, v in d.items()) or "0"  # noqa: E731
        ex = [f"+ {e['customer_id']} {e['event_ts']}" for e in r["added_examples"]]
        ex += [f"- {e['customer_id']} {e['event_ts']}" for e in r["removed_examples"]]
        table.add_row(ty, f"{r['sent']['current']} -> {r['sent']['proposed']}",
                      f"{sup(r['suppressed']['current'])} -> {sup(r['suppressed']['proposed'])}",
                      str(r["added"]), str(r["removed"]), "\n".join(ex))
    Console().print(table)


archive_app = typer.Typer(no_args_is_help=True, help="The event-log archive of `crm-stream run --archive`.")
app.add_typer(archive_app, name="archive")


@archive_app.command("purge")
def archive_purge(
    customer: str = typer.Option(..., "--customer", help="the customer_id whose lines go (an erasure)"),
    archive: Path = typer.Option(Path("archive"), "--archive", exists=True, file_okay=False,
                                 help="the archive directory (as given to `run --archive`)"),
) -> None:
    """Rewrite the archive without one customer's lines: each file that has any is rewritten beside
    itself and renamed over it (atomic), so the archive stays replayable."""
    from connectors.archive import purge

    counts = purge(archive, customer)
    console.print(f"archive purge: {counts['lines_removed']} lines removed from {counts['rewritten']} of "
                  f"{counts['files']} files")


@app.command("settings")
def settings_cmd(
    config: Optional[Path] = ConfigOpt,
    markdown: bool = typer.Option(False, "--markdown", help="the documentation table instead: every setting's "
                                                            "default and meaning (README's configuration table)"),
) -> None:
    """Print every setting's effective value and where it came from (default, --config file,
    environment); secrets (passwords, credentials in URLs) are masked."""
    from config.settings import effective_table, settings_table

    if markdown:
        print("| environment variable | default | meaning |\n|---|---|---|")
        for env, default, desc in settings_table():
            print(f"| `{env}` | `{default}` | {desc} |")
        return
    settings = _settings(config, "settings")
    for env, value, source in effective_table(settings, config):
        print(f"{env:<40} {source:<12} {value}")


def main() -> None:
    try:
        app()
    except SettingsError as exc:  # pragma: no cover - _settings handles the CLI paths
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
