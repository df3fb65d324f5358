"""One model shard: the online models for the customers hashed to it.

Predict on a :class:`ScoreRequest`, learn on a :class:`Label` (progressive validation: the
prediction made at the decision point is scored against the label when it arrives, then the
model learns from the label's features). The whole shard pickles: it is Bytewax state.
"""

from __future__ import annotations

import copy
import zlib
from collections import OrderedDict
from typing import Any, Mapping, Optional

from config.settings import Settings
from models.churn import ChurnModel
from models.frustration import FrustrationModel
from models.metrics import ModelMetrics, summarize
from models.online import OnlineModel
from operators.scoring import Label, ScoreRequest

MODELS: dict[str, type[OnlineModel]] = {"churn": ChurnModel, "frustration": FrustrationModel}
PENDING_MAX = 100_000  # predictions awaiting their label, per model and shard
WARMUP = 50  # labels a model learns from before its scores are used (None until then)


def shard_index(customer_id: str, shards: int) -> int:
    """Stable across processes and restarts (``hash()`` is salted per process)."""
    return zlib.crc32(customer_id.encode("utf-8", "surrogatepass")) % shards


def finite(features: Mapping[str, float]) -> bool:
    """Whether every feature value is a finite number. One C-level sum: ``x - x`` is 0 only for a
    finite ``x``, and the sum is non-finite if any term is (or if finite terms overflow, which is
    as unusable)."""
    try:
        total = sum(features.values())
    except TypeError:
        return False
    return total - total == 0


def shard_of(customer_id: str, shards: int) -> str:
    return f"models/{shard_index(customer_id, shards)}"


def _model_setting(settings: Optional[Settings], name: str, default: Any) -> Any:
    """``settings.models.<name>`` if the settings have a ``models`` group, else ``default``."""
    group = getattr(settings, "models", None)
    value = getattr(group, name, None) if group is not None else None
    return default if value is None else value


class ModelShard:
    """The churn and frustration models of one shard, their pending predictions and metrics.

    ``warm``: trained models (``load_models(path).models``) to start from; each shard gets its
    own copy. Estimator names, ``pending_max`` and ``warmup`` come from the arguments, else
    ``settings.models``, else the defaults.
    """

    def __init__(self, settings: Optional[Settings] = None, warm: Optional[Mapping[str, OnlineModel]] = None,
                 estimators: Optional[Mapping[str, str]] = None, pending_max: Optional[int] = None,
                 warmup: Optional[int] = None):
        estimators = dict(estimators or {})
        self.models: dict[str, OnlineModel] = {}
        for name, cls in MODELS.items():
            if warm and name in warm:
                self.models[name] = copy.deepcopy(warm[name])
            else:
                est = estimators.get(name) or _model_setting(settings, f"{name}_estimator", None)
                self.models[name] = cls(est)
        self.pending_max = pending_max or _model_setting(settings, "pending_max", PENDING_MAX)
        self.warmup = warmup if warmup is not None else _model_setting(settings, "warmup", WARMUP)
        self.pending: dict[str, OrderedDict[str, float]] = {name: OrderedDict() for name in self.models}
        self.stats: dict[str, ModelMetrics] = {name: ModelMetrics() for name in self.models}
        self.nonfinite: dict[str, int] = {}  # "model:predict" / "model:learn" -> calls refused

    def score(self, req: ScoreRequest) -> Optional[float]:
        """P(positive) at a decision point; ``None`` while the model is unknown or still warming up."""
        model = self.models.get(req.model)
        if model is None or model.learned < self.warmup:
            return None
        if not finite(req.features):  # a NaN/inf would score garbage: no score at all
            self._refuse(req.model, "predict")
            return None
        p = model.predict(req.features)
        self.stats[req.model].predicted(req.decision)
        if req.decision:
            pending = self.pending[req.model]
            pending[req.decision_id] = p
            if len(pending) > self.pending_max:
                pending.popitem(last=False)
                self.stats[req.model].evicted += 1
        return p

    def learn(self, label: Label) -> bool:
        """Score the stored prediction against ``label``, then learn from its features. Returns False
        (and counts it in ``nonfinite``) when a feature is NaN or infinite: one such update would
        leave the shared weights non-finite and every later score of the shard meaningless."""
        model = self.models.get(label.model)
        if model is None:
            return False
        p = self.pending[label.model].pop(label.decision_id, None)
        if not finite(label.features):
            self._refuse(label.model, "learn")
            return False
        self.stats[label.model].labelled(int(label.label), p, label.ts - label.decided_ts)
        model.learn(label.features, label.label)
        return True

    def _refuse(self, model: str, call: str) -> None:
        counts = self.__dict__.setdefault("nonfinite", {})  # shards pickled before the field existed
        counts[f"{model}:{call}"] = counts.get(f"{model}:{call}", 0) + 1

    def metric_states(self) -> dict[str, ModelMetrics]:
        """Mergeable metrics per model (see :func:`models.metrics.merge_metrics`)."""
        return self.stats

    def metrics(self) -> dict[str, dict]:
        """Per model: predictions, labels, roc_auc, log_loss, positive_rate, label_delay_hours..."""
        out = summarize(self.stats)
        for name, m in out.items():
            m["pending"] = len(self.pending[name])
            m["estimator"] = self.models[name].estimator
        return out
