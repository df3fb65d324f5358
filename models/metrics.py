"""Progressive-validation metrics: every prediction is scored against its label when it arrives.

:class:`ModelMetrics` is mergeable (sums and a histogram), so shards spread over workers add up
to one per-model figure: ROC AUC from a 1000-bin score histogram per class (ties within a bin
count half), log loss, positive rate and label delay.
"""

from __future__ import annotations

import math
import time
from itertools import accumulate, compress
import weakref
from typing import Any, Iterable, Mapping, Optional

from operators.units import HOUR

BINS = 1000
EPS = 1e-7


class ModelMetrics:
    __slots__ = ("predictions", "withheld", "decisions", "labels", "matched", "positives", "matched_positives",
                 "log_loss_sum", "delay_ms_sum", "evicted", "pos_hist", "neg_hist")

    def __init__(self) -> None:
        self.predictions = 0  # scores returned (decision points and payload-only scores)
        self.withheld = 0  # scores computed and validated, but withheld: the model is not ready
        self.decisions = 0  # scores kept to wait for their label
        self.labels = 0  # labels received (learned from)
        self.matched = 0  # labels that found their prediction: the progressive-validation sample
        self.positives = 0
        self.matched_positives = 0
        self.log_loss_sum = 0.0
        self.delay_ms_sum = 0
        self.evicted = 0  # pending predictions dropped before their label came (memory bound)
        self.pos_hist = [0] * BINS
        self.neg_hist = [0] * BINS

    def predicted(self, decision: bool, returned: bool = True) -> None:
        if returned:
            self.predictions += 1
        else:
            self.withheld += 1
        self.decisions += decision

    def labelled(self, label: int, p: Optional[float], delay_ms: int) -> None:
        self.labels += 1
        self.positives += label
        self.delay_ms_sum += max(0, delay_ms)
        if p is None:
            return
        self.matched += 1
        self.matched_positives += label
        q = min(1.0 - EPS, max(EPS, p))
        self.log_loss_sum -= math.log(q) if label else math.log(1.0 - q)
        b = min(BINS - 1, int(p * BINS))
        if label:
            self.pos_hist[b] += 1
        else:
            self.neg_hist[b] += 1

    def merge(self, other: "ModelMetrics") -> "ModelMetrics":
        """A new object holding both (``self`` is left alone)."""
        out = ModelMetrics()
        for s in self.__slots__:
            a, b = getattr(self, s), getattr(other, s)
            setattr(out, s, [x + y for x, y in zip(a, b)] if isinstance(a, list) else a + b)
        return out

    @property
    def roc_auc(self) -> Optional[float]:
        pos, neg = self.matched_positives, self.matched - self.matched_positives
        if not pos or not neg:
            return None
        # area += p * (below + n / 2) over the bins in order; a bin without positives adds an exact
        # 0.0, so only those with some are visited (a few hundred of the 1000, checked every 20 labels)
        below = list(accumulate(self.neg_hist, initial=0))  # negatives in the bins before each
        neg_hist = self.neg_hist
        area = 0.0
        for i in compress(range(BINS), self.pos_hist):
            area += self.pos_hist[i] * (below[i] + 0.5 * neg_hist[i])
        return area / (pos * neg)

    def summary(self) -> dict[str, Any]:
        auc = self.roc_auc
        return {
            "predictions": self.predictions,
            "withheld": self.withheld,
            "decisions": self.decisions,
            "labels": self.labels,
            "validated": self.matched,
            "roc_auc": None if auc is None else round(auc, 4),
            "log_loss": round(self.log_loss_sum / self.matched, 4) if self.matched else None,
            "positive_rate": round(self.positives / self.labels, 4) if self.labels else None,
            "label_delay_hours": round(self.delay_ms_sum / self.labels / HOUR, 2) if self.labels else None,
            "evicted": self.evicted,
        }

    def __getstate__(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state):
        if len(state) == len(self.__slots__) - 1:  # pickled before ``withheld``
            state = state[:1] + (0,) + tuple(state[1:])
        for s, v in zip(self.__slots__, state):
            setattr(self, s, v)


def merge_metrics(parts: Iterable[Mapping[str, ModelMetrics]]) -> dict[str, ModelMetrics]:
    """Per-model sums of several shards' ``ModelShard.metric_states()``."""
    out: dict[str, ModelMetrics] = {}
    for part in parts:
        for name, m in part.items():
            out[name] = out[name].merge(m) if name in out else m.merge(ModelMetrics())
    return out


def summarize(states: Mapping[str, ModelMetrics]) -> dict[str, dict[str, Any]]:
    return {name: m.summary() for name, m in sorted(states.items())}


# ------------------------------------------------------------------ the process's view over shards

class _Board:
    """The shards one process holds (one per ``ModelLogic``), for merged metrics and saving."""

    def __init__(self) -> None:
        self.shards: dict[int, Any] = {}
        self.published = float("-inf")


_boards: "weakref.WeakKeyDictionary[Any, _Board]" = weakref.WeakKeyDictionary()


def publish(t: Any, shard: Any, force: bool = False, every_s: float = 5.0) -> None:
    """Register ``shard`` with telemetry ``t`` and, at most every ``every_s`` seconds (or when
    ``force``), write the per-model aggregates over all registered shards to ``t.models`` and the
    Prometheus gauges ``t.roc_auc`` / ``t.log_loss``. Cheap enough to call on every batch."""
    board = _boards.get(t)
    if board is None:
        board = _boards[t] = _Board()
    board.shards[id(shard)] = shard
    now = time.monotonic()
    if not force and now - board.published < every_s:
        return
    board.published = now
    merged = merge_metrics(s.metric_states() for s in board.shards.values())
    for name, m in merged.items():
        summary = m.summary()
        t.models[name] = summary
        if summary["roc_auc"] is not None and hasattr(t, "roc_auc"):
            t.roc_auc.labels(name).set(summary["roc_auc"])
        if summary["log_loss"] is not None and hasattr(t, "log_loss"):
            t.log_loss.labels(name).set(summary["log_loss"])


def shards_of(t: Any) -> list:
    """Every shard registered with ``t`` through :func:`publish` (for ``save_models``)."""
    board = _boards.get(t)
    return list(board.shards.values()) if board is not None else []


def refresh(t: Any) -> None:
    """Write the final per-model aggregates now (call after a replay's ``run_main``)."""
    shards = shards_of(t)
    if shards:
        publish(t, shards[0], force=True)
