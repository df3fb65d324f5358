"""One model shard: the online models for the customers hashed to it.

Predict on a :class:`ScoreRequest`, learn on a :class:`Label` (progressive validation: the
prediction made at the decision point is scored against the label when it arrives, then the
model learns from the label's features). The whole shard pickles: it is Bytewax state.
"""

from __future__ import annotations

import copy
from datetime import timedelta
import zlib
from collections import OrderedDict
from typing import Any, Mapping, Optional

from config.settings import Settings
from models.btyd import Population
from models.churn import ChurnModel, btyd_churn, btyd_features, observe, orders_only, predicted_clv
from models.frustration import FrustrationModel
from models.metrics import ModelMetrics, summarize
from models.online import OnlineModel
from operators.features import TEXT_KEY
from operators.messages import Label, ScoreRequest

MODELS: dict[str, type[OnlineModel]] = {"churn": ChurnModel, "frustration": FrustrationModel}
PENDING_MAX = 100_000  # predictions awaiting their label, per model and shard
WARMUP = 50  # labels a model learns from before it scores at all
MIN_OUTCOMES = 20  # validated predictions of each outcome before its scores are used
AUC_FLOOR = 0.6  # progressive ROC AUC (its track record) below which its scores are withheld
CLV_HORIZON_DAYS = 365.0
GATE_EVERY = 20  # validated labels between two checks of a model's gate


def shard_index(customer_id: str, shards: int) -> int:
    """Stable across processes and restarts (``hash()`` is salted per process)."""
    return zlib.crc32(customer_id.encode("utf-8", "surrogatepass")) % shards


def finite(features: Mapping[str, float]) -> bool:
    """Whether every feature value is a finite number. One C-level sum: ``x - x`` is 0 only for a
    finite ``x``, and the sum is non-finite if any term is (or if finite terms overflow, which is
    as unusable)."""
    try:
        total = sum(features.values())
    except TypeError:  # the frustration model's text rides along as a str (TEXT_KEY), nothing else may
        text = features.get(TEXT_KEY)
        if type(text) is not str:
            return False
        try:
            total = sum(v for k, v in features.items() if k != TEXT_KEY)
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
    """The churn and frustration models of one shard, their pending predictions and metrics, and
    the BG/NBD + gamma-gamma population the churn features and ``predicted_clv`` use.

    ``warm``: trained models (``load_models(path).models``) to start from; each shard gets its
    own copy. Estimator names, ``pending_max``, ``warmup``, ``min_outcomes`` and ``auc_floor``
    come from the arguments, else ``settings.models``, else the defaults.

    No action on a model that has not proven itself: a model predicts (and is validated) once it
    has learned ``warmup`` labels, but its scores are returned (to payloads, profiles and
    thresholds) only while :meth:`ready`: its track record holds ``min_outcomes`` validated
    predictions of each outcome and a progressive ROC AUC >= ``auc_floor``. Until then
    :meth:`score` returns ``None`` and the metrics count the score as ``withheld``.
    """

    def __init__(self, settings: Optional[Settings] = None, warm: Optional[Mapping[str, OnlineModel]] = None,
                 estimators: Optional[Mapping[str, str]] = None, pending_max: Optional[int] = None,
                 warmup: Optional[int] = None, min_outcomes: Optional[int] = None,
                 auc_floor: Optional[float] = None):
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
        self.min_outcomes = min_outcomes if min_outcomes is not None else \
            _model_setting(settings, "min_outcomes", MIN_OUTCOMES)
        self.auc_floor = auc_floor if auc_floor is not None else _model_setting(settings, "auc_floor", AUC_FLOOR)
        self.clv_horizon = _model_setting(settings, "clv_horizon", None)
        self.clv_horizon = self.clv_horizon.total_seconds() / 86400 if self.clv_horizon else CLV_HORIZON_DAYS
        self.population = Population(
            capacity=_model_setting(settings, "btyd_sample", 4000),
            min_customers=_model_setting(settings, "btyd_min_customers", 200),
            refit_every=int(_model_setting(settings, "btyd_refit", timedelta(days=7)).total_seconds() * 1000))
        self.pending: dict[str, OrderedDict[str, float]] = {name: OrderedDict() for name in self.models}
        self.stats: dict[str, ModelMetrics] = {name: ModelMetrics() for name in self.models}
        self.nonfinite: dict[str, int] = {}  # "model:predict" / "model:learn" -> calls refused

    def ready(self, model: OnlineModel, keep: bool = True) -> bool:
        """True when ``model``'s scores may drive anything (see the class docstring).

        The verdict is cached as ``model.gate`` = (validated labels when checked, verdict) and
        re-checked once ``GATE_EVERY`` more labels are validated, so when it is re-checked depends
        on which calls come when. ``keep=False`` (a profile-only refresh, which only a live run
        makes) reads the cache or checks without storing: such calls must not move the re-check
        points the decisions see, or a live run would serve or withhold other scores than a replay."""
        if self.min_outcomes <= 0:  # the gate is off: scores as soon as warmed up
            return True
        rec = model.record
        seen, was = getattr(model, "gate", (-1, False))
        if 0 <= rec.matched - seen < GATE_EVERY:  # the AUC reads 1,000 bins: re-checked every few labels
            return was
        pos, neg = rec.matched_positives, rec.matched - rec.matched_positives
        auc = rec.roc_auc if pos >= self.min_outcomes and neg >= self.min_outcomes else None
        verdict = auc is not None and auc >= self.auc_floor
        if keep:
            model.gate = (rec.matched, verdict)
        return verdict

    def _features(self, name: str, customer_id: str, features: dict, ts: int, observe_stats: bool) -> dict:
        if name != "churn":
            return features
        if observe_stats:
            observe(self.population, customer_id, features, ts)
            self.population.maybe_refit(ts)
        return btyd_features(self.population, features)

    def score(self, req: ScoreRequest) -> Optional[float]:
        """P(positive) at a decision point; ``None`` while the model is unknown, warming up or not
        :meth:`ready` (the prediction is still kept for validation)."""
        model = self.models.get(req.model)
        if model is None:
            return None
        if not finite(req.features):  # a NaN/inf would score garbage: no score at all
            self._refuse(req.model, "predict")
            return None
        # a profile-only refresh (live, daily while the customer is away) must not move the
        # population's statistics nor the gate's re-check points: a replay takes none, and later
        # decisions would differ from it
        observe = req.decision or req.candidate is not None
        feats = self._features(req.model, req.customer_id, req.features, req.ts, observe)
        served = self._orders_only_churn(req) if req.model == "churn" else None
        if model.learned < self.warmup:
            return served
        p = model.predict(feats)
        ready = self.ready(model, keep=observe)
        self.stats[req.model].predicted(req.decision, ready)
        if req.decision:
            pending = self.pending[req.model]
            pending[req.decision_id] = p
            if len(pending) > self.pending_max:
                pending.popitem(last=False)
                self.stats[req.model].evicted += 1
        if served is not None:
            return served
        return p if ready else None

    def _orders_only_churn(self, req: ScoreRequest) -> Optional[float]:
        """BG/NBD's churn probability where the log has nothing but the customer's orders
        (:func:`models.churn.btyd_churn`), else ``None`` (the River model's score is served).

        Issue 16: on an orders-only log the River model has little but recency, and its labels (no
        order within at most 90 days) reward near-term recency. The River model still predicts,
        is validated and learns as everywhere (its progressive AUC in the metrics is its own), but
        the BG/NBD score is served instead; it is not gated on the River model's track record
        (it learns from no label): its readiness is the population's first fit (settings
        ``models.btyd_min_customers`` buyers, at least one repeat buyer)."""
        if not orders_only(req.features):
            return None
        return btyd_churn(self.population, req.features)

    def clv(self, req: ScoreRequest) -> Optional[float]:
        """``predicted_clv`` of a churn request's customer: expected spend in the next
        ``models.clv_horizon`` (BG/NBD x gamma-gamma); ``None`` before the population's first fit."""
        if req.model != "churn":
            return None
        v = predicted_clv(self.population, req.features, self.clv_horizon)
        return None if v is None else round(v, 2)

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
        if p is not None:
            model.record.labelled(int(label.label), p, label.ts - label.decided_ts)
        model.learn(self._features(label.model, label.customer_id, label.features, label.ts, False), label.label)
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
