"""Safe live defaults: recovery on unless turned off (loudly), a stop message that claims no
snapshot that does not exist, and marketing due long before the wall clock suppressed as `stale`
live (a replay only counts what live would drop)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from test_live import iso, make_topics, produce

from config.settings import load_settings
from connectors.metrics import telemetry
from flows.live import RECOVERY_OFF, last_snapshot, recovery_config, resume_note, run_live
from flows.replay import ReplayOutputs, replay
from operators.policy import PolicyConfig, PolicyState
from operators.messages import Candidate, Suppressed

HOUR = 3600_000
NOW = 1_800_000_000_000  # a wall clock (ms)


def cand(type: str, due: int, key: str) -> Candidate:
    return Candidate(type, "c1", due, ["x"], {}, key=key)


# ---------------------------------------------------------------------------- stale


def test_marketing_due_before_max_trigger_age_is_stale_live_only():
    cfg = PolicyConfig(load_settings())  # max_trigger_age 2 h
    p = PolicyState()
    [s] = p.decide(cand("abandoned_cart", NOW - 3 * HOUR, "old"), cfg, now=NOW)
    assert type(s) is Suppressed and s.reason == "stale"
    # not counted as sent: a fresh cart an hour later is neither in cooldown nor capped
    [fresh, _] = p.decide(cand("abandoned_cart", NOW - 2 * HOUR + 60_000, "fresh"), cfg, now=NOW)
    assert type(fresh) is Candidate
    [s] = p.decide(cand("proactive_outreach", NOW - 5 * HOUR, "out"), cfg, now=NOW)
    assert s.reason == "stale"
    # service triggers are never stale; without a wall clock (replay) nothing is
    assert type(p.decide(cand("delay_apology", NOW - 50 * HOUR, "o1"), cfg, now=NOW)[0]) is Candidate
    assert type(PolicyState().decide(cand("abandoned_cart", NOW - 50 * HOUR, "r"), cfg)[0]) is Candidate


def test_stale_comes_after_the_event_time_clauses():
    """A candidate another clause holds back keeps that reason: replay and live agree on it."""
    cfg = PolicyConfig(load_settings())
    p = PolicyState()
    p.decide(cand("abandoned_cart", NOW - 10 * HOUR, "a"), cfg)
    [s] = p.decide(cand("abandoned_cart", NOW - 9 * HOUR, "b"), cfg, now=NOW)
    assert s.reason == "cooldown"


def _cart(customer: str, ts: datetime, view_after: timedelta) -> list[dict]:
    return [{"event_id": f"{customer}-a", "type": "add_to_cart", "customer_id": customer, "ts": iso(ts),
             "session_id": "s", "product_id": "p1", "price": 10.0},
            {"event_id": f"{customer}-v", "type": "page_view", "customer_id": customer,
             "ts": iso(ts + view_after), "session_id": "s"}]


def test_replay_reports_what_live_would_drop_as_stale_without_dropping(tmp_path):
    t0 = datetime(2026, 3, 1, 8, tzinfo=timezone.utc)
    events = _cart("old", t0, timedelta(minutes=45)) + _cart("new", t0 + timedelta(hours=4), timedelta(minutes=45)) \
        + [{"event_id": "end", "type": "page_view", "customer_id": "z", "ts": iso(t0 + timedelta(hours=5)),
            "session_id": "s"}]
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sorted(events, key=lambda e: e["ts"])))
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json")
    summary = replay(load_settings(), [log], out)
    assert summary["triggers"]["abandoned_cart"] == 2  # a replay drops nothing
    # the old cart was due 4.5 h before the last event (> 2 h), the new one 30 min before
    assert summary["stale_if_live"] == {"abandoned_cart": 1, "proactive_outreach": 0}
    assert orjson.loads(out.summary.read_bytes())["stale_if_live"]["abandoned_cart"] == 1
    summary = replay(load_settings(policy={"max_trigger_age": 5 * 3600}), [log], out)
    assert summary["stale_if_live"]["abandoned_cart"] == 0


@pytest.mark.integration
def test_first_live_start_over_history_sends_no_stale_marketing(kafka_broker, kafka_topics, redis_client, redis_url,
                                                                 tmp_path):
    """A cart abandoned four days ago and one abandoned 40 minutes ago: only the recent one goes
    out; the old one is suppressed as stale and counted. Recovery on by default, in a directory."""
    topics = make_topics(kafka_topics)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    produce(kafka_broker, topics["clickstream_topic"],
            _cart("old", now - timedelta(days=4), timedelta(minutes=45))
            + _cart("new", now - timedelta(minutes=40), timedelta(minutes=39)))
    settings = load_settings(kafka={"bootstrap_servers": kafka_broker.bootstrap, **topics},
                             redis={"url": redis_url}, metrics_port=0, recovery_dir=tmp_path / "recovery",
                             snapshot_interval=0.2)
    assert settings.recovery  # the default
    stale = lambda: telemetry().counts["suppressed:abandoned_cart:stale"]  # noqa: E731
    before = stale()
    run_live(settings, tail=False)
    triggers = [orjson.loads(f[b"trigger"]) for _, f in redis_client.xrange("crm:triggers")]
    assert [(t["type"], t["customer_id"]) for t in triggers] == [("abandoned_cart", "new")]
    assert stale() - before == 1
    assert last_snapshot(tmp_path / "recovery") is not None
    assert resume_note(settings).startswith("state resumes from the snapshot of ")


# ---------------------------------------------------------------------------- recovery


def test_recovery_is_on_by_default_in_a_directory():
    s = load_settings()
    assert s.recovery and str(s.recovery_dir) == "crm-recovery"


def test_recovery_off_is_loud_and_the_stop_message_says_so(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    off = load_settings(recovery=False, recovery_dir=tmp_path / "r")
    assert recovery_config(off, 1) is None
    assert RECOVERY_OFF in caplog.text and any(r.levelno == logging.WARNING for r in caplog.records)
    assert resume_note(off) == "recovery is off: a restart re-reads the topics from kafka.starting_offset"
    assert not (tmp_path / "r").exists()


def test_no_snapshot_is_claimed_before_one_was_taken(tmp_path):
    on = load_settings(recovery_dir=tmp_path / "r")
    assert "snapshot of" not in resume_note(on) and "no snapshot was taken yet" in resume_note(on)
    assert recovery_config(on, 2) is not None  # creates the partitions: still no snapshot in them
    assert len(list((tmp_path / "r").glob("part-*.sqlite3"))) == 64  # recovery_partitions' default
    assert last_snapshot(tmp_path / "r") is None and "no snapshot was taken yet" in resume_note(on)


def test_recovery_has_a_partition_per_worker_at_least(tmp_path):
    few = load_settings(recovery_dir=tmp_path / "r", recovery_partitions=1)
    assert recovery_config(few, 3) is not None
    assert len(list((tmp_path / "r").glob("part-*.sqlite3"))) == 3


def test_partitions_left_half_made_by_a_killed_first_start_are_made_again(tmp_path):
    """A first start killed while it made its 64 partitions left some of them: the restart made
    Bytewax stop with MissingPartitionsError. Such a set (no commit in any) is made again."""
    from bytewax.recovery import init_db_dir

    db = tmp_path / "r"
    db.mkdir()
    init_db_dir(db, 8)
    for part in sorted(db.glob("part-*.sqlite3"))[3:]:
        part.unlink()
    assert recovery_config(load_settings(recovery_dir=db, recovery_partitions=4), 1) is not None
    assert len(list(db.glob("part-*.sqlite3"))) == 4 and not list(db.glob(".init-*"))


def test_a_used_recovery_directory_with_missing_partitions_is_left_for_bytewax_to_refuse(tmp_path):
    import sqlite3

    from bytewax.recovery import init_db_dir

    db = tmp_path / "r"
    db.mkdir()
    init_db_dir(db, 4)
    with sqlite3.connect(db / "part-0.sqlite3") as conn:
        conn.execute("INSERT INTO commits (part_index, commit_epoch) VALUES (0, 5)")
    (db / "part-3.sqlite3").unlink()
    recovery_config(load_settings(recovery_dir=db), 1)
    assert len(list(db.glob("part-*.sqlite3"))) == 3  # real state may be in the others: never wiped
