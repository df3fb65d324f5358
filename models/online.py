"""An online binary classifier behind two verbs: ``predict(features)`` and ``learn(features, label)``."""

from __future__ import annotations

from typing import ClassVar, Optional

from models.estimators import TEXT_ESTIMATORS, build
from models.metrics import ModelMetrics
from models.text import TEXT_KEY


class OnlineModel:
    """A River pipeline chosen by name (see :mod:`models.estimators`), plus how much it has learned
    and its own track record (``record``: progressive validation over its whole life, warm starts
    included), which decides whether its scores may be used (:meth:`ModelShard.ready`)."""

    name: ClassVar[str] = "model"
    default_estimator: ClassVar[str] = "logreg"

    def __init__(self, estimator: Optional[str] = None):
        self.estimator = estimator or self.default_estimator
        self.pipeline = build(self.estimator)
        self.learned = 0  # labels learned from (warm starts carry it over)
        self.record = ModelMetrics()

    def _input(self, features: dict) -> dict:
        if TEXT_KEY in features and self.estimator not in TEXT_ESTIMATORS:
            return {k: v for k, v in features.items() if k != TEXT_KEY}
        return features

    def predict(self, features: dict) -> float:
        """P(label = 1); 0.5 before the first label."""
        proba = self.pipeline.predict_proba_one(self._input(features))
        if not proba:
            return 0.5
        p = proba.get(True)
        if p is None:
            p = 1.0 - proba.get(False, 0.5)
        return min(1.0, max(0.0, float(p)))

    def learn(self, features: dict, label: int) -> None:
        self.pipeline.learn_one(self._input(features), bool(label))
        self.learned += 1

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "record" not in state:  # a model file from before track records
            self.record = ModelMetrics()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.estimator!r}, learned={self.learned})"
