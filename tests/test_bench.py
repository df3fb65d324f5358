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
    # every trigger attributed, none written before the moment the yardstick gives it
    assert lat["unattributed"] == 0 and lat["early"] == 0 and lat["customer_event"]["triggers"] == lat["triggers"]
    assert report["memory"]["customers"] > 200
    assert 0 < report["bytes_per_customer"] < 100_000


def test_the_core_row_does_the_flows_work(tmp_path):
    """core_1w (the step classes without Bytewax) must not be a cheaper job than full_1w: the same
    triggers and model calls as a replay with a profile output (full_1w has a null profile sink)."""
    from config.settings import load_settings
    from flows.bench import core_run
    from flows.replay import ReplayOutputs, replay

    generate(300, 6, 11, tmp_path)
    events = tmp_path / "events.jsonl"
    counts: dict = {}
    assert core_run(load_settings(), events, counts=counts) > 0
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json",
                        profiles=tmp_path / "p.jsonl")
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


# The live row's yardstick (flows.bench.attribute): a send log with partitions and triggers whose
# answers are worked out by hand. lateness 10 s of event time; idle after 2 s of wall clock.
LATENESS = 10_000


def _log():
    from flows.bench import Sent

    return [Sent(0.0, "a/0", 100_000, "x"),
            Sent(0.1, "b/0", 90_000, "y"),
            Sent(0.2, "a/0", 110_500, "x"),   # x's clock passes 100_000 + lateness; b holds the watermark
            Sent(0.5, "b/0", 111_000, "y"),   # ... until b moves: watermark 110_500
            Sent(0.6, "c/0", 200_000, "z"),
            Sent(0.7, "a/0", 210_500, "z"),   # z's clock passes 200_000 + lateness; b (111_000) holds
            Sent(0.8, "a/0", 220_000, "w")]   # b idle at 2.5 -> c (200_000) holds; c idle at 2.6; a idle at 2.8


def test_the_watermark_timeline_follows_the_sends_and_the_idle_rule():
    import pytest

    from connectors.watermark import IDLE
    from flows.bench import frontier_timeline

    walls, values = frontier_timeline(_log(), idle_after_s=2.0)
    assert walls == pytest.approx([0.0, 0.1, 0.5, 0.7, 2.5, 2.6, 2.8])
    assert values == [100_000, 90_000, 110_500, 111_000, 200_000, 220_000, IDLE]


def test_a_trigger_is_attributed_to_when_the_customer_and_the_watermark_both_allowed_it():
    import pytest

    from flows.bench import Trigger, attribute

    triggers = [Trigger("x", 100_000, False, 0.6),   # customer at 0.2, watermark at 0.5
                Trigger("z", 200_000, False, 2.7),   # customer at 0.7, watermark once b and c are idle: 2.6
                Trigger("w", 220_000, True, 2.65),   # fast path: watermark within lateness of 220_000 at 2.6
                Trigger("w", 220_000, True, 11.0),   # written after the exact path's moment: w has no later
                # event, so its clock reaches 230_000 by the wall clock, 10 s after its event (0.8 + 10)
                Trigger("q", 5_000, False, 1.0)]     # a customer never sent: not attributed
    found = attribute(_log(), triggers, LATENESS, idle_after_s=2.0, watermarks=True)
    assert [a.at for a in found] == pytest.approx([0.5, 2.6, 2.6, 10.8, None])
    assert [a.fast for a in found] == [False, False, True, False, False]
    # by the customer's clock alone: the wait for the watermark is at - clock_at
    assert [a.clock_at for a in found] == pytest.approx([0.2, 0.7, 0.8, 10.8, None])
    # the older yardstick: the customer's own first event at or past due + lateness (fast: due)
    assert [a.customer_event for a in found] == pytest.approx([0.2, 0.7, 0.8, 0.8, None])
    # without watermarks only the customer's clock counts
    off = attribute(_log(), triggers, LATENESS, idle_after_s=2.0, watermarks=False)
    assert [a.at for a in off] == pytest.approx([0.2, 0.7, 0.8, 10.8, None])


def test_a_partition_with_no_event_time_yet_holds_everything_until_it_is_idle():
    import pytest

    from flows.bench import Sent, Trigger, attribute

    sends = [Sent(0.0, "a/0", 100_000, "x"), Sent(0.1, "d/0", None, None), Sent(0.2, "a/0", 120_000, "x")]
    (found,) = attribute(sends, [Trigger("x", 100_000, False, 3.0)], LATENESS, idle_after_s=2.0, watermarks=True)
    assert found.at == pytest.approx(2.1) and found.customer_event == pytest.approx(0.2)


def test_the_row_partitions_keys_as_the_producer_does(kafka_broker):
    from confluent_kafka import Producer

    from flows.bench import kafka_partition
    from infra import unique_topic

    topic = unique_topic("partitioner")
    n = kafka_broker.create_topics([topic], partitions=4)[topic]
    producer = Producer(kafka_broker.client_config())
    placed: list = []
    for i in range(64):
        key = f"c-{i}".encode()
        producer.produce(topic, b"{}", key=key, on_delivery=lambda err, msg, key=key: placed.append((key, msg.partition())))
    producer.flush(10)
    assert len(placed) == 64 and len({p for _, p in placed}) > 1
    assert all(kafka_partition(key, b"{}", n) == p for key, p in placed)
