"""``crm-stream eval`` on a small slice of each real dataset: the protocol runs end to end through
the dataflow and reports the engine beside its baselines."""

import json
from datetime import datetime, timezone
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from models.eval import csat_of, customer_messages, stc3_events

REALDATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"


def run_eval(dataset, limit, tmp_path):
    out = tmp_path / f"{dataset}.json"
    res = CliRunner().invoke(app, ["eval", dataset, "--realdata", str(REALDATA), "--limit", str(limit),
                                   "--work", str(tmp_path / dataset), "--json", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def test_eval_cdnow_on_a_slice(tmp_path):
    r = run_eval("cdnow", 400, tmp_path)
    assert r["customers"] == 400 and 0 < r["holdout_buyers"] < 400
    assert r["engine_scored"] == 400  # every customer's final profile carries a churn score
    for key in ("engine_churn_auc", "bgnbd_auc", "recency_auc"):
        assert 0.5 < r[key] <= 1.0, (key, r[key])
    assert r["engine_clv_scored"] > 300 and -1 <= r["engine_clv_spearman"] <= 1
    assert r["engine_churn_model"]["labels"] > 0


def test_eval_stc3_on_a_slice(tmp_path):
    r = run_eval("stc3", 120, tmp_path)
    assert r["dialogues"] == 120 and 0 < r["frustrated"] < 120
    warm = r["engine_warm"]
    assert warm["validated"] > 0 and warm["predictions"] > 0  # warm-started: it acts from the start
    assert r["engine_cold"].get("predictions", 0) == 0  # cold on 40 dialogues: never sure enough to act
    for key in ("tfidf_lr_auc", "vader_auc"):
        assert 0.0 <= r[key] <= 1.0


def test_stc3_dialogue_becomes_a_conversation():
    d = {"id": "7", "annotations": [{"quality": {"S": -2}}, {"quality": {"S": 0}}],
         "turns": [{"sender": "customer", "utterances": ["no signal", "again!"]},
                   {"sender": "helpdesk", "utterances": ["sorry"]},
                   {"sender": "customer", "utterances": ["still none"]}]}
    events = [json.loads(e) for e in stc3_events([(0, d)], datetime(2017, 1, 1, tzinfo=timezone.utc))]
    assert [e.get("sender") for e in events] == ["customer", "customer", "agent", "customer", None]
    assert events[-1]["type"] == "chat_closed" and events[-1]["csat"] == 2  # mean S -1: frustrated
    assert csat_of(-0.5) == 3 and csat_of(-0.51) == 2 and csat_of(2.0) == 5
    # the text the engine reads: the customer's lines still among the last 3 messages
    assert customer_messages(d, 3) == ["no signal", "no signal again!", "again! still none"]
