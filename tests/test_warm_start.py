"""Models through the flow: warm start from a saved file, and what the summary reports."""

from pathlib import Path

import orjson

from config.settings import load_settings
from flows.replay import ReplayOutputs, replay
from flows.generator import generate


def outputs(d: Path, name: str) -> ReplayOutputs:
    return ReplayOutputs(d / f"{name}.t.jsonl", d / f"{name}.d.jsonl", d / f"{name}.s.json")


def test_replay_saves_models_and_a_later_replay_starts_from_them(tmp_path):
    generate(300, 30, 21, tmp_path / "month")
    model = tmp_path / "models.bin"
    summary = replay(load_settings(), [tmp_path / "month" / "events.jsonl"], outputs(tmp_path, "a"), model_out=model)
    assert model.stat().st_size > 0 and summary["saved_models"]["churn"]["learned"] > 50
    churn = summary["models"]["churn"]
    assert churn["predictions"] > 0 and churn["labels"] > 0
    assert summary["models"]["frustration"]["labels"] > 0

    # A tiny log: too few labels to leave warm-up on its own, so scores exist only with the file.
    generate(20, 3, 22, tmp_path / "few")
    log = [tmp_path / "few" / "events.jsonl"]
    cold = replay(load_settings(), log, outputs(tmp_path, "cold"))
    warm = replay(load_settings(), log, outputs(tmp_path, "warm"), model_in=model)
    assert cold["models"].get("churn", {}).get("predictions", 0) == 0
    assert warm["models"]["churn"]["predictions"] > 0
    profiles_scored = [t for t in map(orjson.loads, (tmp_path / "warm.t.jsonl").read_bytes().splitlines())
                       if t["score"] is not None]
    assert all(0.0 <= t["score"] <= 1.0 for t in profiles_scored)
