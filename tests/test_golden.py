"""The four contract triggers are byte-identical across refactors of the rules (issue 14).

``tests/golden/`` holds three generated logs (``crm-stream generate --customers 300 --days 14
--seed 3/5/11``, stored so a later generator cannot move them) and, for each and for the Olist
sample (read from ../shared/realdata at test time, never copied here), the triggers and summary
a replay with ``--drain`` wrote with the code before the rule interface existed (gzipped; for
Olist, whose 50,000 triggers are mostly churn outreach, its delay apologies in full and a
BLAKE2b digest of all of them). Wall-clock fields (``emitted_at``) and output paths are left
out. ``CRM_GOLDEN_WRITE=1`` rewrites them.

Counts, rates and the kept triggers are compared exactly; the models' progressive ``log_loss`` and
``roc_auc`` within ``MODEL_FLOAT_TOL``, and the Olist digest leaves the score-filled fields out
(``SCORE_FIELDS``): see there, they are not reproducible across machines.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import os
from pathlib import Path

import orjson
import pytest

from config.settings import load_settings
from flows.replay import ReplayOutputs, replay
from test_olist import OLIST, olist_events

GOLDEN = Path(__file__).resolve().parent / "golden"
SEEDS = (3, 5, 11)
WRITE = os.environ.get("CRM_GOLDEN_WRITE") == "1"
ADDED_SINCE = ("channels", "released_at")  # the contact policy's trigger fields (issue 15)
# schema_version rose 1 -> 2 when the trigger type became open (issue 14, CHANGELOG): the files were
# written at 1 and every other byte must still match, so a 2 reads as the 1 written then
SCHEMA_VERSION_THEN, SCHEMA_VERSION_NOW = 1, 2
# The models' log_loss / roc_auc depend on the machine, not only on the code and package versions:
# the churn features include BG/NBD parameters fitted by L-BFGS-B, whose objective's last bits follow
# the CPU (OpenBLAS picks its kernels by CPU, NumPy its SIMD loops, glibc its FMA libm). On the Olist
# sample (few repeat buyers: alpha sits on its bound, a and b stay at their start) the fit is flat in
# r: OPENBLAS_CORETYPE=Nehalem instead of Haswell moves r by 1 %; an objective scaled by 1 - 1e-9
# (under L-BFGS-B's own stopping tolerance, 2.2e-9) by 30 %, roc_auc by 3.5e-4, log_loss by 7e-5.
# The golden Olist figures, written on another machine, differ from this one's by about 6e-4 / 1e-4;
# the tolerance is a few times that. Counts, rates and the kept triggers stay exact.
MODEL_FLOAT_TOL = {"log_loss": 2e-3, "roc_auc": 2e-3}
# The same fit fills the churn outreach's scores (BG/NBD's churn probability is served on an orders-only
# log) at 4 decimals, and its priority (one step up at a score of 0.9): these move with the machine too
# (glibc without FMA, NumPy without AVX2, OpenBLAS's Nehalem kernels: 637 of Olist's 50,708 triggers
# differ, one in its priority). The Olist digest of all its triggers, most of them outreach, leaves
# these fields out; where every trigger is kept (the seeds), all is exact. Not covered: a score on the
# outreach threshold itself, which could add or drop a trigger on some machine (the objective
# scaled by 1 - 1e-9 above dropped one of 50,708).
SCORE_FIELDS, SCORE_PAYLOAD_FIELDS = ("score", "priority"), ("churn_probability", "predicted_clv")


def without_scores(triggers: bytes) -> bytes:
    """``triggers`` (one sorted JSON object a line) without the fields a model's score fills."""
    lines = []
    for line in triggers.splitlines():
        trigger = orjson.loads(line)
        for field in SCORE_FIELDS:
            trigger.pop(field, None)
        for field in SCORE_PAYLOAD_FIELDS:
            trigger.get("payload", {}).pop(field, None)
        lines.append(orjson.dumps(trigger, option=orjson.OPT_SORT_KEYS) + b"\n")
    return b"".join(lines)


def split_model_floats(summary: dict) -> tuple[dict, dict]:
    """(a copy of ``summary`` without the models' ``MODEL_FLOAT_TOL`` figures, {(model, figure): value})."""
    rest = copy.deepcopy(summary)
    floats = {}
    for model, figures in (rest.get("models") or {}).items():
        for figure in MODEL_FLOAT_TOL:
            if figure in figures:
                floats[(model, figure)] = figures.pop(figure)
    return rest, floats


def normalised(tmp_path: Path, log: Path) -> tuple[bytes, bytes]:
    """(triggers without ``emitted_at``, one sorted JSON object a line; summary without ``outputs``)."""
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json")
    summary = replay(load_settings(), [log], out, drain=True)
    lines = []
    for line in out.triggers.read_bytes().splitlines():
        trigger = orjson.loads(line)
        del trigger["emitted_at"]
        for field in ADDED_SINCE:  # contract additions after the files were written (CHANGELOG)
            trigger.pop(field, None)
        assert trigger["schema_version"] == SCHEMA_VERSION_NOW
        trigger["schema_version"] = SCHEMA_VERSION_THEN
        lines.append(orjson.dumps(trigger, option=orjson.OPT_SORT_KEYS) + b"\n")
    summary.pop("outputs")
    return b"".join(lines), orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def check(name: str, tmp_path: Path, log: Path, whole: bool = True) -> None:
    """``whole``: compare every trigger; else the delay apologies and a digest of all without their scores."""
    triggers, summary = normalised(tmp_path, log)
    kept = triggers if whole else b"".join(line for line in triggers.splitlines(keepends=True)
                                           if b'"type":"delay_apology"' in line)
    digested = triggers if whole else without_scores(triggers)
    digest = hashlib.blake2b(digested, digest_size=16).hexdigest().encode() + b"\n"
    if WRITE:
        (GOLDEN / f"{name}.triggers.jsonl.gz").write_bytes(gzip.compress(kept, 9, mtime=0))
        (GOLDEN / f"{name}.summary.json").write_bytes(summary)
        (GOLDEN / f"{name}.digest").write_bytes(digest)
    assert kept.count(b"\n") > 50
    assert kept == gzip.decompress((GOLDEN / f"{name}.triggers.jsonl.gz").read_bytes())
    golden = orjson.loads((GOLDEN / f"{name}.summary.json").read_bytes())
    now = orjson.loads(summary)  # figures added by later features (new keys) do not break the old ones
    now_rest, now_floats = split_model_floats({k: now.get(k) for k in golden})
    golden_rest, golden_floats = split_model_floats(golden)
    assert now_rest == golden_rest
    assert now_floats.keys() == golden_floats.keys()
    for (model, figure), want in golden_floats.items():
        got = now_floats[(model, figure)]
        if got is None or want is None:
            assert got == want, (model, figure)
        else:
            assert abs(got - want) <= MODEL_FLOAT_TOL[figure], (model, figure, got, want)
    assert digest == (GOLDEN / f"{name}.digest").read_bytes()


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_logs_give_the_golden_triggers_and_summary(seed, tmp_path):
    check(f"seed{seed}", tmp_path, GOLDEN / f"seed{seed}.events.jsonl.gz")


@pytest.mark.skipif(not OLIST.is_dir(), reason="../shared/realdata/olist is absent (never in CI)")
def test_the_olist_sample_gives_the_golden_triggers_and_summary(tmp_path):
    log = tmp_path / "olist.jsonl"
    events = olist_events(OLIST / "olist_orders_dataset.csv", OLIST / "olist_order_items_dataset.csv")
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    check("olist", tmp_path, log, whole=False)
