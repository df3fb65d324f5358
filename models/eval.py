"""Real-data evaluation: replay a public dataset through the engine's dataflow, and score the
engine's models beside published baselines fitted on the same data (``crm-stream eval``).

The replay itself is passed in (``replay(log, out_dir, model_in, model_out, settings)`` returning
the summary and the final profiles): ``flows`` owns the dataflow, this module only makes events
from a dataset and scores what comes back, so the figures are those of the dataflow ``run`` uses.

**CDNOW** (``cdnow``, the 1/10 sample of Fader, Hardie & Lee 2005, as the ``lifetimes`` package
ships it): every purchase row becomes an ``order_placed`` at noon UTC of its day, 28 years later
(the contract's years start at 2000; the calendar repeats every 28 years) (``total`` = the
dollar value, ``promised_delivery_ts`` a week later: the log has no deliveries). Calibration = the
first 39 weeks (1997-01-01 .. 1997-09-30), holdout = the next 39 weeks. Only the calibration
orders are replayed; the engine's ``churn_probability`` in each final profile (scored at the end of
input) ranks customers for "buys in the holdout" (ROC AUC of ``1 - churn_probability``); its
``predicted_clv`` (``models.clv_horizon`` set to the holdout's 39 weeks) is compared with holdout
spend by Spearman's rho. Beside them, on the same calibration data: BG/NBD fitted in batch (ranked
by expected holdout purchases, FHL 2005 eq. 10, over distinct purchase days as in the paper),
days since the last purchase alone, and BG/NBD x gamma-gamma CLV fitted in batch.

**STC-3** (``stc3``, NTCIR-14 STC-3 DCH English dev dialogues): a dialogue is frustrated when the
mean of its 19 annotators' satisfaction ``S`` is below -0.5. Each becomes one customer's
conversation: customer lines -> customer ``chat_message``, helpdesk lines -> ``agent`` messages,
30 s apart, then ``chat_closed`` with csat 1-2 when frustrated, 3-5 otherwise (from the mean S).
Dialogues with index % 3 == 2 are the test third, the rest the training two thirds. Reported:
the engine's progressive ROC AUC over the test third's customer messages (every message is a
decision point, labelled by its dialogue's outcome) cold (the test third alone, from nothing) and
warm-started (the training two thirds replayed first, saved with ``--model-out``, then the test
third replayed from that file with ``--model-in``); beside them, on the same test messages:
VADER's compound score alone, and a batch TF-IDF (word 1-2-grams and character 2-5-grams) +
logistic regression fitted on the training third's messages, scoring each test message's text and,
second row, the same window of text the engine reads (the customer's lines still held).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import orjson

from models.btyd import expected_order_value, expected_purchases, fit_bgnbd, fit_gamma_gamma

Replay = Callable[..., tuple[dict, list[dict]]]
CAL_END = date(1997, 9, 30)
HOLDOUT_DAYS = 39 * 7
# The contract takes years 2000..2199: CDNOW's 1997-98 replays 28 years later, the same calendar
# (weekdays and leap years repeat every 28 years), so every interval is the log's own.
YEAR_SHIFT = 28
FRUSTRATED_BELOW = -0.5


def roc_auc(y, score) -> Optional[float]:
    """Mann-Whitney ROC AUC (ties count half); None without both classes."""
    from scipy.stats import rankdata

    y, score = np.asarray(y, int), np.asarray(score, float)
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if not pos or not neg:
        return None
    ranks = rankdata(score)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------- CDNOW


def read_cdnow(path: Path, limit: Optional[int] = None) -> dict[str, list[tuple[date, float]]]:
    """customer id -> [(day, dollars)] (``limit``: the first so many customers of the file)."""
    out: dict[str, list[tuple[date, float]]] = defaultdict(list)
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 5:
                continue
            cid, day = parts[0], parts[2]
            if limit is not None and cid not in out and len(out) >= limit:
                continue
            out[cid].append((date(int(day[:4]), int(day[4:6]), int(day[6:8])), float(parts[4])))
    return out


def cdnow_events(purchases: dict[str, list[tuple[date, float]]], until: date) -> list[bytes]:
    """The calibration orders as contract events (JSON lines), sorted by ts."""
    rows = []
    for cid, buys in purchases.items():
        for i, (day, value) in enumerate(sorted(buys)):
            if day > until:
                continue
            ts = datetime(day.year + YEAR_SHIFT, day.month, day.day, 12, tzinfo=timezone.utc)
            rows.append((ts, cid, i, value))
    rows.sort()
    return [orjson.dumps({"event_id": f"cdnow-{cid}-{i}", "type": "order_placed", "customer_id": f"cdnow-{cid}",
                          "ts": _iso(ts), "order_id": f"{cid}-{i}", "total": value,
                          "promised_delivery_ts": _iso(ts + timedelta(days=7))}) for ts, cid, i, value in rows]


def cdnow_truth(purchases, cal_end: date = CAL_END, holdout_days: int = HOLDOUT_DAYS) -> dict:
    """Per customer: calibration statistics over distinct purchase days (x, t_x, T in days, the
    mean value of repeat days... as FHL) and holdout outcome (bought, spend)."""
    end = cal_end + timedelta(days=holdout_days)
    out = {}
    for cid, buys in purchases.items():
        cal = [(d, v) for d, v in buys if d <= cal_end]
        if not cal:
            continue
        days = sorted({d for d, _ in cal})
        hold = [v for d, v in buys if cal_end < d <= end]
        out[cid] = {"x": len(days) - 1, "t_x": (days[-1] - days[0]).days, "T": (cal_end - days[0]).days,
                    "recency": (cal_end - days[-1]).days, "orders": len(cal), "spend": sum(v for _, v in cal),
                    "bought": int(bool(hold)), "holdout_spend": sum(hold)}
    return out


def cdnow_baselines(truth: dict, holdout_days: int = HOLDOUT_DAYS) -> dict:
    """Batch BG/NBD (+ gamma-gamma) and recency on the calibration statistics."""
    ids = sorted(truth)
    x = np.array([truth[c]["x"] for c in ids], float)
    t_x = np.array([truth[c]["t_x"] for c in ids], float)
    T = np.array([truth[c]["T"] for c in ids], float)
    y = [truth[c]["bought"] for c in ids]
    params = fit_bgnbd(x, t_x, T)
    expected = [expected_purchases(params, a, b, c, holdout_days) for a, b, c in zip(x, t_x, T)]
    n = np.array([truth[c]["orders"] for c in ids], float)
    mean = np.array([truth[c]["spend"] / truth[c]["orders"] for c in ids])
    buyers = mean > 0
    gg = fit_gamma_gamma(n[buyers], mean[buyers])
    clv = [e * expected_order_value(gg, k, m) if m > 0 else 0.0 for e, k, m in zip(expected, n, mean)]
    from scipy.stats import spearmanr

    spend = [truth[c]["holdout_spend"] for c in ids]
    return {"bgnbd_params_days": [round(v, 4) for v in params], "gamma_gamma_params": [round(v, 4) for v in gg],
            "bgnbd_auc": roc_auc(y, expected), "recency_auc": roc_auc(y, [-truth[c]["recency"] for c in ids]),
            "bgnbd_gg_clv_spearman": float(spearmanr(clv, spend).statistic)}


def evaluate_cdnow(path: Path, replay: Replay, work: Path, limit: Optional[int] = None) -> dict:
    """The CDNOW protocol (module docstring); returns the figures as a dict."""
    from scipy.stats import spearmanr

    purchases = read_cdnow(path, limit)
    truth = cdnow_truth(purchases)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "cdnow_calibration.jsonl"
    log.write_bytes(b"\n".join(cdnow_events(purchases, CAL_END)) + b"\n")
    summary, profiles = replay(log, work / "cdnow", overrides={"models": {"clv_horizon": HOLDOUT_DAYS * 86400}})
    by_id = {p["customer_id"].removeprefix("cdnow-"): p for p in profiles}
    ids = sorted(truth)
    y = [truth[c]["bought"] for c in ids]
    churn = [by_id.get(c, {}).get("churn_probability") for c in ids]
    clv = [by_id.get(c, {}).get("predicted_clv") for c in ids]
    scored = [p for p in churn if p is not None]
    out = {"dataset": str(path), "customers": len(ids), "holdout_buyers": int(sum(y)),
           "calibration_orders": summary["events_valid"], "engine_scored": len(scored),
           # a customer the engine would not score ranks as a coin toss
           "engine_churn_auc": roc_auc(y, [-(p if p is not None else 0.5) for p in churn]),
           "engine_churn_model": summary["models"].get("churn", {}),
           "engine_clv_scored": sum(v is not None for v in clv),
           "engine_clv_spearman": float(spearmanr([v or 0.0 for v in clv],
                                                  [truth[c]["holdout_spend"] for c in ids]).statistic)}
    out.update(cdnow_baselines(truth))
    return out


# ---------------------------------------------------------------------------------- STC-3


def read_stc3(path: Path, limit: Optional[int] = None) -> list[dict]:
    with open(path, "rb") as f:
        data = orjson.loads(f.read())
    return data[:limit] if limit else data


def mean_satisfaction(dialogue: dict) -> float:
    return statistics.fmean(a["quality"]["S"] for a in dialogue["annotations"])


def csat_of(mean_s: float) -> int:
    """A 1-5 csat from the mean satisfaction (-2..2): 1-2 exactly when frustrated (mean S < -0.5)."""
    if mean_s < FRUSTRATED_BELOW:
        return 1 if mean_s < -1.5 else 2
    return 3 if mean_s < 0.5 else 4 if mean_s < 1.5 else 5


def stc3_events(dialogues: list[tuple[int, dict]], start: datetime) -> list[bytes]:
    """Each dialogue as one customer's conversation, an hour apart, lines 30 s apart."""
    lines = []
    for index, d in dialogues:
        cid, conv = f"stc3-{d['id']}", f"stc3-{d['id']}"
        ts = start + timedelta(hours=index)
        n = 0
        for turn in d["turns"]:
            sender = "customer" if turn["sender"] == "customer" else "agent"
            for text in turn["utterances"]:
                if not text.strip():
                    continue
                lines.append(orjson.dumps({"event_id": f"{conv}-{n}", "type": "chat_message", "customer_id": cid,
                                           "ts": _iso(ts), "conversation_id": conv, "sender": sender, "text": text}))
                ts += timedelta(seconds=30)
                n += 1
        lines.append(orjson.dumps({"event_id": f"{conv}-close", "type": "chat_closed", "customer_id": cid,
                                   "ts": _iso(ts + timedelta(seconds=30)), "conversation_id": conv,
                                   "csat": csat_of(mean_satisfaction(d))}))
    return lines


def customer_messages(d: dict, window: int = 1) -> list[str]:
    """The dialogue's customer lines, each with up to ``window - 1`` earlier customer lines still
    within the engine's last 3 messages of the conversation (``window`` 3: what the engine reads)."""
    out, held = [], []  # held: the conversation's last 3 (sender, text)
    for turn in d["turns"]:
        for text in turn["utterances"]:
            if not text.strip():
                continue
            held = (held + [(turn["sender"], text)])[-3:]
            if turn["sender"] == "customer":
                mine = [t for s, t in held[:-1] if s == "customer"] if window > 1 else []
                out.append(" ".join(mine + [text]))
    return out


def stc3_baselines(train: list[dict], test: list[dict]) -> dict:
    """VADER alone and batch TF-IDF + logistic regression (scikit-learn) on the test messages."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    from operators.features import vader

    def labelled(ds, window):
        xs, ys = [], []
        for d in ds:
            msgs = customer_messages(d, window)
            xs += msgs
            ys += [int(mean_satisfaction(d) < FRUSTRATED_BELOW)] * len(msgs)
        return xs, ys

    out = {}
    for name, window in (("tfidf_lr_auc", 1), ("tfidf_lr_same_text_auc", 3)):
        xs, ys = labelled(train, window)
        model = make_pipeline(make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
                                         TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                                                         min_df=2)),
                              LogisticRegression(max_iter=2000))
        model.fit(xs, ys)
        tx, ty = labelled(test, window)
        out[name] = roc_auc(ty, model.predict_proba(tx)[:, 1])
    tx, ty = labelled(test, 1)
    out["vader_auc"] = roc_auc(ty, [-vader().polarity_scores(t)["compound"] for t in tx])
    out["test_messages"] = len(tx)
    return out


def evaluate_stc3(path: Path, replay: Replay, work: Path, limit: Optional[int] = None) -> dict:
    """The STC-3 protocol (module docstring); returns the figures as a dict."""
    data = read_stc3(path, limit)
    train = [(i, d) for i, d in enumerate(data) if i % 3 != 2]
    test = [(i, d) for i, d in enumerate(data) if i % 3 == 2]
    work.mkdir(parents=True, exist_ok=True)
    start = datetime(2017, 1, 1, tzinfo=timezone.utc)
    train_log, test_log = work / "stc3_train.jsonl", work / "stc3_test.jsonl"
    train_log.write_bytes(b"\n".join(stc3_events(train, start)) + b"\n")
    # the test third comes after the training dialogues in event time
    test_log.write_bytes(b"\n".join(stc3_events(test, start + timedelta(hours=len(data) + 1))) + b"\n")
    cold, _ = replay(test_log, work / "cold")
    models = work / "stc3_train.models"
    replay(train_log, work / "train", model_out=models)
    warm, _ = replay(test_log, work / "warm", model_in=models)
    frustrated = sum(mean_satisfaction(d) < FRUSTRATED_BELOW for d in data)
    out = {"dataset": str(path), "dialogues": len(data), "frustrated": frustrated,
           "engine_cold": cold["models"].get("frustration", {}), "engine_warm": warm["models"].get("frustration", {}),
           "engine_cold_auc": cold["models"].get("frustration", {}).get("roc_auc"),
           "engine_warm_auc": warm["models"].get("frustration", {}).get("roc_auc")}
    out.update(stc3_baselines([d for _, d in train], [d for _, d in test]))
    return out


def dump(result: dict, path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v)
                               else str(v)))
