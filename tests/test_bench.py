"""``crm-stream bench`` runs every row end to end on a small log (figures are never asserted:
speed is measured by the benchmark, not by tests)."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

from flows.bench import run_bench
from flows.cli import app
from flows.generator import generate


def test_every_row_runs_and_reports_its_ratios(tmp_path):
    generate(300, 4, 5, tmp_path)
    events = tmp_path / "events.jsonl"
    report = run_bench(events, {"decode", "reference", "full", "core", "cluster", "memory", "live"},
                       live_rate=400, live_seconds=4.0, repeat=2, scale=[100])
    n = report["events"]
    assert n > 5000
    for row in ("decode", "reference", "full_1w", "core_1w", "river", "full_2p", "reference_2p"):
        assert report["rows"][row]["events_per_s"] > 0
    for ratio in ("full_vs_reference", "core_vs_reference", "river_vs_reference", "two_workers_vs_one",
                  "two_workers_vs_one_median", "full_vs_core", "reference_two_workers_vs_one", "reference_vs_decode"):
        assert report[ratio] > 0
    (size,) = report["scale"]
    assert size["customers"] == 100 and size["events_per_s"] > 0 and size["resume_s"] >= 0
    lat = report["latency_ms"]
    assert lat["broker"] == "mock" or lat["broker"] == "external"
    assert lat["triggers"] > 0 and 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert report["memory"]["customers"] > 200
    assert 0 < report["bytes_per_customer"] < 100_000


def test_the_core_row_does_the_flows_work(tmp_path):
    """core_1w (the step classes without Bytewax) must not be a cheaper job: same triggers as a replay."""
    from config.settings import load_settings
    from flows.bench import core_run
    from flows.replay import ReplayOutputs, replay

    generate(300, 6, 11, tmp_path)
    events = tmp_path / "events.jsonl"
    counts: dict = {}
    assert core_run(load_settings(), events, counts=counts) > 0
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json")
    summary = replay(load_settings(), [events], out)
    replayed = sum(1 for _ in open(out.triggers, "rb"))
    assert replayed > 20 and counts["triggers"] == replayed, summary
    # the river row times exactly the model calls a replay makes: a prediction per scored
    # decision point, a learning step per label
    calls = sum(m["predictions"] + m["withheld"] + m["labels"] for m in summary["models"].values())
    assert calls > 100 and counts["river_calls"] == calls, summary["models"]
    assert 0 < counts["river_seconds"]


def test_cli_writes_json_and_refuses_an_unknown_broker(tmp_path):
    generate(100, 2, 6, tmp_path)
    out = tmp_path / "bench.json"
    runner = CliRunner()
    bad = runner.invoke(app, ["bench", "--events", str(tmp_path / "events.jsonl"), "--broker", "kafka9"])
    assert bad.exit_code == 2
    ok = runner.invoke(app, ["bench", "--events", str(tmp_path / "events.jsonl"), "--skip-live", "--skip-cluster",
                             "--skip-api", "--json", str(out)])
    assert ok.exit_code == 0, ok.output
    report = orjson.loads(out.read_bytes())
    assert set(report["rows"]) == {"decode", "reference", "full_1w", "core_1w", "river"}
    # two rounds by default: every row keeps both, and reports the better one
    for row in report["rows"].values():
        assert len(row["runs"]) == 2 and row["seconds"] == min(row["runs"])
        assert row["events_per_s"] == round(report["events"] / row["seconds"], 1)
    assert "full_vs_reference" in report and "bytes_per_customer" in report


def test_the_api_row_runs_beside_the_engine(tmp_path):
    generate(200, 3, 8, tmp_path)
    report = run_bench(tmp_path / "events.jsonl", {"api"}, api_rate=50, api_seconds=3.0)
    api = report["api_ms"]
    assert api["requests"] == 150 and api["statuses"].get("200", 0) > 0 and "0" not in api["statuses"]
    assert 0 < api["p50"] <= api["p99"] <= api["max"]
