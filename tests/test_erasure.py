"""Erasure (GDPR Art. 17 / CCPA delete): the pure parts, and end to end through a replay."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
from helpers import at, ev, ms_at

from config.settings import load_settings
from flows.replay import ReplayOutputs, replay
from operators.customer import CustomerState
from operators.events import decode
from operators.privacy import Erasure, Tombstones, audit_record, state_inventory, tombstone_hash
from operators.rules import RuleConfig

KEY = b"test-key"


# --------------------------------------------------------------------------- pure parts


def test_tombstone_hash_is_keyed_and_does_not_contain_the_id():
    h = tombstone_hash(KEY, "alice@example.com")
    assert len(h) == 32 and "alice" not in h
    assert h == tombstone_hash(KEY, "alice@example.com")
    assert h != tombstone_hash(b"other-key", "alice@example.com")
    assert h != tombstone_hash(KEY, "bob")


def test_tombstones_keep_the_latest_erasure_and_merge_from_a_store():
    tombs = Tombstones(KEY)
    assert tombs.erased_at("c1") is None
    h, at1 = tombs.add("c1", 1000)
    assert tombs.add("c1", 500) == (h, 1000)  # an older request does not move the tombstone back
    assert tombs.add("c1", 2000) == (h, 2000)
    other = Tombstones(KEY)
    other.merge([(h, 1500), (tombstone_hash(KEY, "c2"), 7)])
    other.merge([(h, 3000)])
    assert other.erased_at("c1") == 3000 and other.erased_at("c2") == 7 and other.erased_at("c3") is None


def test_erasure_requested_decodes_from_the_base_fields_only():
    good = decode(orjson.dumps({"event_id": "e1", "type": "erasure_requested", "customer_id": "c1",
                                "ts": "2026-01-05T10:00:00Z"}), "crm.profile/0/1")
    assert good.type == "erasure_requested" and good.customer_id == "c1"
    bad = decode(orjson.dumps({"event_id": "e1", "type": "erasure_requested", "ts": "2026-01-05T10:00:00Z"}))
    assert bad.reason == "missing_field"


def test_state_inventory_counts_what_a_customer_holds_and_its_pending_decisions():
    cfg = RuleConfig(load_settings())
    st = CustomerState("c1")
    for e in (ev("add_to_cart", at(0)), ev("chat_message", at(1), sender="customer", text="where is it")):
        st.process(e, cfg)
    st.advance(ms_at(20), cfg)  # applied (not in the reorder buffer), before the cart's reminder
    st.process(ev("page_view", at(21)), cfg)  # held in the reorder buffer
    removed, decisions = state_inventory(st, held=2)
    assert removed["profile"] is True and removed["held_events"] == 3  # 2 of the flow's, 1 of the state's
    assert removed["cart_lines"] == 1 and removed["conversations"] == 1 and removed["recent_items"] >= 1
    assert all(isinstance(d, str) for d in decisions)
    assert state_inventory(None) == ({"profile": False, "held_events": 0}, ())


def test_the_audit_record_has_who_when_and_counts_only():
    e = Erasure("c1", ms_at(5), "req1", "ab" * 16, {"profile": True, "cart_lines": 2})
    rec = audit_record(e, "2026-01-05T11:00:00.000Z", lambda ms: f"T{ms}")
    assert rec == {"type": "erasure_completed", "customer_id": "c1", "event_id": "req1", "erased_at": f"T{ms_at(5)}",
                   "erased_at_ms": ms_at(5), "completed_at": "2026-01-05T11:00:00.000Z", "tombstone": "ab" * 16,
                   "removed": {"profile": True, "cart_lines": 2}}
    assert "c1" not in repr(e)


# --------------------------------------------------------------------------- end to end (replay)


def line(type: str, minutes: float, customer: str, eid: str, **fields) -> dict:
    base = {"event_id": eid, "type": type, "customer_id": customer, "ts": at(minutes)}
    if type in ("add_to_cart", "page_view", "product_view"):
        base["session_id"] = "s1"
    if type in ("add_to_cart", "product_view"):
        base.update(product_id="p1", price=10.0)
    return {**base, **fields}


def erasure_log() -> list[dict]:
    """gone: carts at 10:00, erased at 10:05 (before the 30 min reminder), an old event arriving
    late, then back at 12:00 with a new cart; kept: a cart that is reminded as usual."""
    return [
        line("add_to_cart", 0, "gone", "g1"),
        line("add_to_cart", 0, "kept", "k1"),
        line("product_view", 3, "gone", "g2"),
        line("erasure_requested", 5, "gone", "gx"),
        line("page_view", 4, "gone", "g3"),  # late: before the erasure, arrives after it
        line("page_view", 60, "kept", "k2"),
        line("add_to_cart", 120, "gone", "g4", product_id="p9"),
        line("page_view", 200, "gone", "g5"),
        line("page_view", 200, "kept", "k3"),
    ]


def run_replay(tmp_path: Path, events: list[dict], name: str = "r", **settings) -> tuple[dict, list, list, list]:
    log = tmp_path / f"{name}.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    d = tmp_path / name
    out = ReplayOutputs(d / "triggers.jsonl", d / "dlq.jsonl", d / "summary.json", d / "profiles.jsonl",
                        d / "suppressed.jsonl", d / "audit.jsonl")
    summary = replay(load_settings(**settings), [log], out)
    read = lambda p: [orjson.loads(x) for x in p.read_bytes().splitlines()]  # noqa: E731
    return summary, read(out.triggers), read(out.profiles), read(out.audit)


def test_erased_mid_log_no_trigger_or_profile_after_and_a_return_starts_fresh(tmp_path):
    summary, triggers, profiles, audit = run_replay(tmp_path, erasure_log())
    by_customer = {}
    for t in triggers:
        by_customer.setdefault(t["customer_id"], []).append(t)
    assert [t["type"] for t in by_customer["kept"]] == ["abandoned_cart"]
    # the 10:00 cart was erased before its reminder; the cart of the return (12:00) is a new customer's
    gone = by_customer["gone"]
    assert [(t["type"], t["payload"]["items"][0]["product_id"]) for t in gone] == [("abandoned_cart", "p9")]
    assert summary["events_erased"] == 1 and summary["erasures"] == 1
    [rec] = audit
    assert rec["customer_id"] == "gone" and rec["event_id"] == "gx" and rec["erased_at"] == at(5).replace("Z", ".000Z")
    # the cart and the view were still in the reorder buffer (lateness 5 min)
    assert rec["removed"]["profile"] is True and rec["removed"]["held_events"] == 2
    assert "pending_predictions" in rec["removed"] and "policy" in rec["removed"]
    profile = {p["customer_id"]: p for p in profiles}["gone"]
    assert profile["first_seen"] == at(120).replace("Z", ".000Z")  # fresh: nothing from before the erasure
    assert profile["order_count"] == 0


def test_a_tombstone_file_keeps_an_erased_customer_out_of_later_replays(tmp_path):
    store = tmp_path / "tombstones.txt"
    privacy = {"tombstone_file": store, "tombstone_key": "s3cret"}
    run_replay(tmp_path, erasure_log(), "first", privacy=privacy)
    assert len(store.read_text().split()) == 2 and "gone" not in store.read_text()
    # an old log without the erasure request: the customer's earlier events stay out
    old = [e for e in erasure_log() if e["type"] != "erasure_requested"]
    summary, triggers, profiles, audit = run_replay(tmp_path, old, "old", privacy=privacy)
    assert [t["payload"]["items"][0]["product_id"] for t in triggers if t["customer_id"] == "gone"] == ["p9"]
    assert summary["events_erased"] == 3 and audit == []
    # another key: the tombstones mean nothing
    summary, triggers, _, _ = run_replay(tmp_path, old, "otherkey", privacy={**privacy, "tombstone_key": "x"})
    assert summary["events_erased"] == 0


def test_no_customer_id_in_logs_at_info_or_above(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "jane.doe@example.org"
    events = [{**e, "customer_id": secret} if e["customer_id"] == "gone" else e for e in erasure_log()]
    events.append({"event_id": "bad", "type": "erasure_requested", "customer_id": secret, "ts": "yesterday"})
    store = tmp_path / "tombstones.txt"
    run_replay(tmp_path, events, "a", privacy={"tombstone_file": store})
    run_replay(tmp_path, events, "b", privacy={"tombstone_file": store})  # the second one drops events
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any("tombstones loaded" in m for m in loud)  # the capture sees the engine's log
    assert not [m for m in loud if secret in m or "jane" in m]


# --------------------------------------------------------------------------- archive purge


def test_archive_purge_removes_the_customers_lines_atomically_and_stays_replayable(tmp_path):
    import gzip

    from typer.testing import CliRunner

    from connectors.archive import Archive
    from flows.cli import app

    arch = Archive(tmp_path / "archive")
    events = erasure_log() + [line("page_view", 1, 123, "int1")]  # an integer id is the same customer as "123"
    for i, e in enumerate(events):
        arch("crm.clickstream", 0, ms_at(i * 30), orjson.dumps(e))
        arch.flush()  # one gzip member per line, as batches are written
    arch("crm.orders", 0, ms_at(0), b"{not json gone")  # a future dead letter naming the customer
    arch.close()
    res = CliRunner().invoke(app, ["archive", "purge", "--customer", "gone", "--archive", str(tmp_path / "archive")])
    assert res.exit_code == 0, res.output
    assert "gone" not in res.output
    files = sorted((tmp_path / "archive").rglob("*"))
    assert not [f for f in files if "purge-tmp" in f.name]
    left = b"".join(gzip.decompress(f.read_bytes()) for f in files if f.is_file())
    assert b"gone" not in left
    assert left.count(b"\n") == len(events) - 6  # gone's six lines (and the broken one) are out, kept's and 123 stay
    # the purged archive replays, with the customer absent
    summary, triggers, profiles, _ = run_replay(tmp_path, [orjson.loads(x) for x in left.splitlines()], "purged")
    assert {p["customer_id"] for p in profiles} == {"kept", "123"} and summary["events_invalid"] == 0
    # a second purge finds nothing more
    again = CliRunner().invoke(app, ["archive", "purge", "--customer", "gone", "--archive", str(tmp_path / "archive")])
    assert "0 lines removed" in again.output
