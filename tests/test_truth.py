"""Rule-driven triggers against the simulation's hidden truth: precision and recall >= 0.99.

The rule decides before policy; policy may then hold a marketing trigger back. So carts are
measured on emitted + suppressed candidates (the suppressed file), service triggers on emitted.
"""

from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from config.settings import load_settings
from flows.replay import ReplayOutputs, replay
from flows.generator import generate
from operators.events import format_ts, parse_ts

pytestmark = pytest.mark.slow


def read(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("truth")
    generate(2000, 14, 11, d)
    out = ReplayOutputs(d / "triggers.jsonl", d / "dlq.jsonl", d / "summary.json", suppressed=d / "suppressed.jsonl")
    summary = replay(load_settings(), [d / "events.jsonl"], out, drain=False)
    truth = read(d / "truth.ndjson")
    emitted = read(out.triggers)
    return {"summary": summary, "truth": truth, "emitted": emitted, "all": emitted + read(out.suppressed),
            "end": max(orjson.loads(x)["ts"] for x in (d / "events.jsonl").read_bytes().splitlines()[-50:]
                       if x.startswith(b"{") and b'"ts"' in x and _is_json(x))}


def _is_json(x: bytes) -> bool:
    try:
        orjson.loads(x)
        return True
    except orjson.JSONDecodeError:
        return False


def precision_recall(predicted: set, actual: set) -> tuple[float, float]:
    hit = len(predicted & actual)
    return hit / max(len(predicted), 1), hit / max(len(actual), 1)


def test_abandoned_carts(world):
    idle = timedelta(minutes=30)
    end = parse_ts(world["end"])
    actual = {(t["customer_id"], format_ts(parse_ts(t["last_activity_ts"]) + int(idle.total_seconds() * 1000)))
              for t in world["truth"] if t["kind"] == "cart" and t["abandoned"]
              and parse_ts(t["last_activity_ts"]) + idle.total_seconds() * 1000 <= end}
    predicted = {(t["customer_id"], t["event_ts"]) for t in world["all"] if t["type"] == "abandoned_cart"}
    p, r = precision_recall(predicted, actual)
    print(f"abandoned_cart: {len(actual)} true, {len(predicted)} fired, precision {p:.4f} recall {r:.4f}")
    assert len(actual) > 200 and p >= 0.99 and r >= 0.99


def test_late_orders(world):
    actual = {t["order_id"] for t in world["truth"] if t["kind"] == "order" and t["late"]}
    predicted = {t["payload"]["order_id"] for t in world["emitted"] if t["type"] == "delay_apology"}
    p, r = precision_recall(predicted, actual)
    print(f"delay_apology: {len(actual)} late orders, {len(predicted)} apologies, precision {p:.4f} recall {r:.4f}")
    assert len(actual) > 50 and p >= 0.99 and r >= 0.99


def test_human_requests(world):
    actual = {t["conversation_id"] for t in world["truth"] if t["kind"] == "conversation" and t["human_requested"]}
    escalated = {t["payload"]["conversation_id"]: t for t in world["emitted"] if t["type"] == "escalation"}
    fired_for_human = {c for c, t in escalated.items() if "human_requested" in t["reasons"]}
    precision = len(fired_for_human & actual) / max(len(fired_for_human), 1)
    recall = len(actual & set(escalated)) / max(len(actual), 1)  # one per conversation, whichever reason first
    print(f"escalation/human_requested: {len(actual)} true, precision {precision:.4f} recall {recall:.4f}")
    assert len(actual) > 20 and precision >= 0.99 and recall >= 0.99


def test_accounting_holds_on_the_simulation(world):
    s = world["summary"]
    assert s["events_read"] == s["events_valid"] + s["events_invalid"] + s["events_duplicate"]
    assert s["events_invalid"] > 0 and s["events_duplicate"] > 0 and s["events_late"] > 0
