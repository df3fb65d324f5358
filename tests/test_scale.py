"""The scale mode's log and figures (flows/scale.py): sparse six-month histories, an active share
that holds, and every figure of the bench JSON (numbers are the benchmark's, not asserted here)."""

from __future__ import annotations

import orjson

from operators.units import DAY
from flows.scale import START_MS, key_cost, scale_row, sparse_log
from operators.events import Event, decode


def read(path):
    return [decode(line.rstrip(b"\n")) for line in path.read_bytes().splitlines()]


def test_sparse_logs_are_valid_in_ts_order_and_hold_their_active_share(tmp_path):
    for share, expect in ((0.0, 0.0), (1.0, 1.0), (0.3, 0.3)):
        path = tmp_path / f"{share}.jsonl"
        n = sparse_log(2000, path, share, seed=4)
        events = read(path)
        assert len(events) == n and all(type(e) is Event for e in events)
        assert [e.ts for e in events] == sorted(e.ts for e in events)
        cutoff = START_MS + (182 - 30) * DAY
        active = {e.customer_id for e in events if e.ts >= cutoff and e.type == "page_view"}
        assert abs(len(active) / 2000 - expect) < 0.05
        assert len({e.customer_id for e in events}) == 2000


def test_a_scale_row_reports_every_figure(tmp_path):
    row = scale_row(150, tmp_path)
    assert row["customers"] == 150 and row["events"] > 150
    for key in ("events_per_s", "bytes_per_active_customer", "bytes_per_cold_customer",
                "snapshot_bytes_per_customer", "resume_s"):
        assert row[key] >= 0, key
    assert row["quiet_share"]["dormant"] >= 0.9  # a year away: nearly everyone packed
    assert 0 < row["snapshot_bytes_per_dormant_customer"] < row["snapshot_bytes_per_customer"]
    assert row["eager_resume_s"] >= 0 and row["bytes_per_customer"] > 0
    assert row["recovery_partitions"] == 64 and row["single_partition_resume_s"] >= 0
    assert row["next_event_cpu_us"] > 0 and row["snapshot_commit_gc_s"] >= 0
    assert set(row["woken_bytes_per_customer"]) == {"mixed", "active", "cold", "dormant"}
    assert set(row["timer_us_per_event"]) == {"bytewax", "alarms"}
    assert orjson.loads(orjson.dumps(row)) == row


def test_a_resume_from_a_seeded_recovery_directory_brings_back_every_customer_lazily(tmp_path):
    """The resume figure is a real Bytewax resume of the engine's profile step: every customer
    comes back, and a full state stays pickled (lazy) unless ``eager``."""
    from flows.scale import event_cost, resume_figures, seed_recovery, state_figures

    log = tmp_path / "log.jsonl"
    sparse_log(120, log, 1.0, seed=2)
    state = state_figures(log, tmp_path / "snap", 0.0)
    assert state["customers"] == 120 and state["quiet"] < 120
    assert seed_recovery(tmp_path / "snap", tmp_path / "rec", 4)["customers"] == 120
    assert len(list((tmp_path / "rec").glob("part-*.sqlite3"))) == 4  # each customer back from its own
    cost = event_cost(tmp_path / "rec", touched=60, base=120)
    assert cost["resumed_first"] == 121 and cost["events"] > 60 and cost["cpu_us_per_event"] > 0, cost
    assert cost["held"] <= 5, cost  # only those waiting for a timer due before them (no tick source here)
    for eager in (False, True):
        fig = resume_figures(tmp_path / "rec", eager)
        assert fig["customers"] == 120 and fig["resume_s"] >= 0, fig
        assert (fig["still_pickled"] == 0) if eager else (fig["still_pickled"] >= 120 - state["quiet"]), fig


def test_key_cost_runs_both_ways():
    for shards in (0, 4):
        row = key_cost(300, shards)
        assert row["customers"] == 300 and row["shards"] == shards and "bytes_per_customer" in row
