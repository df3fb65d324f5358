"""The Bytewax flow in replay: end-of-input flush, drain, merge of logs, determinism, accounting."""

import gzip
from pathlib import Path

import orjson
import pytest
from helpers import at

from config.settings import load_settings
from flows.replay import ReplayOutputs, replay


def write_log(path: Path, events: list, gz: bool = False) -> Path:
    data = b"".join((e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in events)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def cart(eid, cust, ts, **kw):
    return {"event_id": eid, "type": "add_to_cart", "customer_id": cust, "ts": ts, "session_id": "s",
            "product_id": "p1", "price": 3.0, **kw}


def view(eid, cust, ts):
    return {"event_id": eid, "type": "page_view", "customer_id": cust, "ts": ts, "session_id": "s"}


def run(tmp_path: Path, logs: list[Path], name: str = "out", drain: bool = False, settings=None):
    out = ReplayOutputs(tmp_path / f"{name}.triggers.jsonl", tmp_path / f"{name}.dlq.jsonl",
                        tmp_path / f"{name}.summary.json", tmp_path / f"{name}.profiles.jsonl")
    summary = replay(settings or load_settings(), logs, out, drain=drain)
    triggers = [orjson.loads(line) for line in out.triggers.read_bytes().splitlines()]
    return summary, triggers, out


def test_flush_fires_only_timers_due_by_the_latest_event_time(tmp_path):
    log = write_log(tmp_path / "a.jsonl", [
        cart("1", "early", at(0)),       # due at +30: before the latest event time -> fires
        cart("2", "late", at(50)),       # due at +80: after it -> only with --drain
        view("3", "other", at(60)),      # the latest event time of the replay
    ])
    _, triggers, _ = run(tmp_path, [log])
    assert [(t["customer_id"], t["event_ts"]) for t in triggers] == [("early", "2026-01-05T10:30:00.000Z")]
    _, drained, _ = run(tmp_path, [log], name="drained", drain=True)
    assert sorted(t["customer_id"] for t in drained) == ["early", "late"]


def test_timer_due_exactly_at_latest_event_time_fires(tmp_path):
    log = write_log(tmp_path / "a.jsonl", [cart("1", "a", at(0)), view("2", "b", at(30))])
    _, triggers, _ = run(tmp_path, [log])
    assert len(triggers) == 1


def test_logs_merge_in_ts_order_and_gzip_is_read(tmp_path):
    a = write_log(tmp_path / "a.jsonl", [cart("1", "c", at(0)), view("3", "c", at(20))])
    b = write_log(tmp_path / "b.jsonl.gz", [cart("2", "c", at(10), product_id="p2"), view("4", "c", at(45))],
                  gz=True)
    summary, triggers, _ = run(tmp_path, [a, b])
    # Merged by ts the cart activity ends at +10, so the trigger is due at +40 (not +30).
    assert [t["event_ts"] for t in triggers] == ["2026-01-05T10:40:00.000Z"]
    assert summary["events_read"] == 4


def test_accounting_and_dead_letters_keep_raw_bytes(tmp_path):
    good = cart("1", "c", at(0))
    lines = [good, good, b"{not json", b"\xff\xfe garbage", {"event_id": "x", "type": "teleport",
             "customer_id": "c", "ts": at(1)}, {"event_id": "y", "type": "page_view", "customer_id": "c",
             "ts": "2026-01-05T10:00:00"}, b"", view("2", "c", at(2))]
    log = write_log(tmp_path / "a.jsonl", lines)
    summary, _, out = run(tmp_path, [log])
    assert summary["events_read"] == 8
    assert summary["events_read"] == summary["events_valid"] + summary["events_invalid"] + summary["events_duplicate"]
    assert (summary["events_valid"], summary["events_invalid"], summary["events_duplicate"]) == (2, 5, 1)
    dlq = [orjson.loads(x) for x in out.dlq.read_bytes().splitlines()]
    reasons = sorted(d["reason"] for d in dlq)
    assert reasons == ["invalid_ts", "malformed_json", "malformed_json", "malformed_json", "unknown_type"]
    garbage = next(d for d in dlq if d["raw_encoding"] == "base64")
    import base64

    assert base64.b64decode(garbage["raw"]) == b"\xff\xfe garbage"
    assert all(d["source"].startswith(str(log)) for d in dlq)


def test_two_replays_give_the_same_triggers(tmp_path):
    events = []
    for i in range(40):
        events.append(cart(f"a{i}", f"c{i % 7}", at(i * 7), product_id=f"p{i % 3}"))
        events.append(view(f"v{i}", f"c{(i + 3) % 7}", at(i * 7 + 3)))
    log = write_log(tmp_path / "a.jsonl", events)

    def strip(ts):  # the contract leaves emitted_at, and recommendations (advisory), out of the comparison
        return sorted(orjson.dumps({**{k: v for k, v in t.items() if k != "emitted_at"},
                                    "payload": {k: v for k, v in t["payload"].items() if k != "recommendations"}})
                      for t in ts)

    _, first, _ = run(tmp_path, [log], name="one")
    _, second, _ = run(tmp_path, [log], name="two")
    assert first and strip(first) == strip(second)


def test_profiles_out_has_the_final_profile(tmp_path):
    log = write_log(tmp_path / "a.jsonl", [
        cart("1", "c", at(0)),
        {"event_id": "2", "type": "order_placed", "customer_id": "c", "ts": at(5), "order_id": "o1",
         "total": 30.0, "promised_delivery_ts": at(days=2)},
    ])
    _, _, out = run(tmp_path, [log])
    [profile] = [orjson.loads(x) for x in out.profiles.read_bytes().splitlines()]
    assert profile["customer_id"] == "c" and profile["order_count"] == 1 and profile["cart"] == []
    assert profile["open_orders"][0]["order_id"] == "o1"
    assert profile["tier"] == "regular" and "churn_probability" in profile


@pytest.mark.parametrize("bad", ["abc", "-5"])
def test_bad_setting_is_one_line_naming_it(bad, monkeypatch):
    from config.settings import SettingsError

    monkeypatch.setenv("CRM_ABANDONED_CART__IDLE", bad)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "CRM_ABANDONED_CART__IDLE" in str(info.value) and "\n" not in str(info.value)


def test_a_failure_inside_the_state_machine_costs_one_event_not_the_flow(tmp_path, monkeypatch):
    from operators.customer import CustomerState

    original = CustomerState._apply

    def failing(self, ev, late, cfg, out):
        if ev.event_id == "boom":
            raise RuntimeError("simulated bug")
        return original(self, ev, late, cfg, out)

    monkeypatch.setattr(CustomerState, "_apply", failing)
    log = write_log(tmp_path / "a.jsonl", [cart("1", "c", at(0)), view("boom", "c", at(1)),
                                           view("3", "c", at(40))])
    summary, triggers, out = run(tmp_path, [log])
    assert len(triggers) == 1  # the cart still triggered
    [dead] = [orjson.loads(x) for x in out.dlq.read_bytes().splitlines()]
    assert dead["reason"] == "processing_error" and "simulated bug" in dead["detail"]
    assert summary["events_read"] == 3 and summary["events_invalid"] == 1 and summary["events_valid"] == 2
