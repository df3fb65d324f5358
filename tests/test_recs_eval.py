"""``crm-stream recs-eval``: session-rec's next-item protocol through the dataflow's recommender,
checked against a case worked out by hand."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from flows.cli import app

# products: A=101 B=102 C=103 D=104; E=105 is never seen in training
T0 = 1_396_000_000  # Unix seconds
HOUR = 3600
TRAIN = [("1", "101", 0), ("1", "102", 10),  # A then B, twice
         ("2", "101", 60), ("2", "102", 70),
         ("3", "101", 120), ("3", "103", 130),  # A then C
         ("4", "102", 180), ("4", "104", 190)]  # B then D
TEST = [("11", "101", HOUR), ("11", "105", HOUR + 10), ("11", "102", HOUR + 20),  # A E B
        ("12", "105", 3 * HOUR), ("12", "102", 3 * HOUR + 10),  # E B, after session 11 closed
        ("13", "104", 5 * HOUR), ("13", "104", 5 * HOUR + 10)]  # D D: a re-view


def write_tsv(path: Path, rows) -> Path:
    path.write_text("SessionId\tItemId\tTime\n" + "".join(f"{s}\t{i}\t{T0 + t}.5\n" for s, i, t in rows))
    return path


def run(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "report.json"
    res = CliRunner().invoke(app, ["recs-eval", "--train", str(write_tsv(tmp_path / "train.tsv", TRAIN)),
                                   "--test", str(write_tsv(tmp_path / "test.tsv", TEST)), "--json", str(out),
                                   *extra])
    assert res.exit_code == 0, res.output
    return orjson.loads(out.read_bytes())


def mrr(*ranks: int) -> float:
    return round(sum(1 / r for r in ranks if r) / len(ranks), 4)


def test_hand_computed_case(tmp_path):
    """Training, with view 1 + next view 1 (itself included): n(A) = n(B) = 6, n(C) = n(D) = 2,
    c(A,B) = 4, c(A,C) = 2, c(B,D) = 2, c(D,B) = 1. Cosine: A -> B 0.667, A -> C 0.577, D -> B 0.289.

    Positions (0-based click index; the target is the next click):
    * 11 @ 0 (after A, target E): E never seen in training: skipped.
    * 11 @ 1 (after E, A; weights 1, 0.5): E 1 (re-view), A 0.5, B 0.333, C 0.289: B is 3rd.
    * 12 @ 0 (after E, target B): static, E has no neighbours: missed. Streaming, session 11 (A E B)
      closed two hours before: E -> B c = 1 + 1 (next view), E -> A c = 1, so E 1, B ~0.5, A ~0.25: 2nd.
    * 13 @ 0 (after D, target D): D 1 (re-view) above B 0.289: 1st.

    Best-sellers (clicks in 7 days, ties by larger id): static B 3, A 3, D 1, C 1: B 1st, B 1st, D 3rd.
    Streaming, the test clicks count as they come: A 4 > B 3 at 11 @ 1 (B 2nd); B 4 = A 4 at 12 @ 0
    (B 1st); at 13 @ 0 B, A, E 2, D 2: D 4th."""
    report = run(tmp_path)
    static, streaming = report["static"]["all"], report["streaming"]["all"]
    assert report["data"] == {"train_clicks": 8, "train_sessions": 4, "test_clicks": 7, "test_sessions": 3,
                              "products_in_training": 4}
    for res in (static, streaming):
        assert res["positions"] == 3 and res["skipped_unseen_targets"] == 1
    assert static["HR@5"] == static["HR@20"] == pytest.approx(2 / 3, abs=1e-4)
    assert static["MRR@5"] == static["MRR@20"] == mrr(3, 0, 1)
    assert static["MRR@10"] == mrr(3, 0, 1)
    assert streaming["HR@5"] == streaming["HR@20"] == 1.0
    assert streaming["MRR@20"] == mrr(3, 2, 1)
    assert static["best_sellers"]["MRR@20"] == mrr(1, 1, 3)
    assert streaming["best_sellers"]["MRR@20"] == mrr(2, 1, 4)
    assert streaming["best_sellers"]["MRR@5"] == mrr(2, 1, 4)
    # every list of 11 @ 1 / 13 @ 0 names A, B, C, D or E; E is not in training
    assert static["coverage@20"] == 1.0
    assert report["streaming"]["memory"]["products"] == 5


def test_positions_of_a_shipped_list(tmp_path):
    """A session-rec list file: Position p is the click recommended after, p + 1 the target. Its own
    lists are scored the same way, and the recommender only on those positions."""
    lists = tmp_path / "recoms.csv"
    lists.write_text("SessionId;Position;Recommendations;Scores\n"
                     "11;1;102,105;0.9,0.1\n"  # target B: 1st
                     "13;0;101,104,103;0.5,0.4,0.1\n")  # target D: 2nd
    report = run(tmp_path, "--positions", str(lists))
    shipped = report["shipped"]
    assert shipped["positions"] == 2 and shipped["positions_not_in_test"] == 0
    assert shipped["HR@5"] == 1.0 and shipped["MRR@20"] == mrr(1, 2)
    listed = report["static"]["positions"]
    assert listed["positions"] == 2 and listed["MRR@20"] == mrr(3, 1)
    assert report["streaming"]["positions"]["best_sellers"]["MRR@20"] == mrr(2, 4)


def test_a_file_in_another_format_is_one_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("session,item,time\n1,2,3\n")
    res = CliRunner().invoke(app, ["recs-eval", "--train", str(bad), "--test", str(bad)])
    assert res.exit_code == 2
    assert "bad.tsv:1: expected the header" in res.output and "Traceback" not in res.output


def test_the_profile_gets_next_product_recommendations_at_session_end(tmp_path):
    """The dataflow's profile ``recommendations``: the same next-product list recs-eval scores,
    from the customer's recent products (most recent first), refreshed when a session ends;
    products just bought are never in it, a product only viewed may come back."""
    from helpers import at

    from config.settings import load_settings
    from flows.replay import ReplayOutputs, replay

    def event(eid, type_, ts, **kw):
        return {"event_id": eid, "type": type_, "customer_id": "c", "ts": ts, "session_id": "s", **kw}

    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\n".join(orjson.dumps(e) for e in [
        event("1", "product_view", at(0), product_id="p1"),
        event("2", "product_view", at(1), product_id="p2"),
        event("3", "order_placed", at(2), order_id="o1", total=9.0, items=[{"product_id": "p2", "quantity": 1}],
              promised_delivery_ts=at(days=2)),
        event("4", "page_view", at(hours=3)),  # 30 min after p2, the session ended
    ]) + b"\n")
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json", tmp_path / "p.jsonl")
    replay(load_settings(), [log], out)
    [profile] = [orjson.loads(x) for x in out.profiles.read_bytes().splitlines()]
    assert profile["recommendations"] == ["p1"]
