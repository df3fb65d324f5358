"""An online binary classifier behind two verbs: ``predict(features)`` and ``learn(features, label)``."""

from __future__ import annotations

from typing import ClassVar, Optional

from models.estimators import build


class OnlineModel:
    """A River pipeline chosen by name (see :mod:`models.estimators`), plus how much it has learned."""

    name: ClassVar[str] = "model"
    default_estimator: ClassVar[str] = "logreg"

    def __init__(self, estimator: Optional[str] = None):
        self.estimator = estimator or self.default_estimator
        self.pipeline = build(self.estimator)
        self.learned = 0  # labels learned from (warm starts carry it over)

    def predict(self, features: dict) -> float:
        """P(label = 1); 0.5 before the first label."""
        proba = self.pipeline.predict_proba_one(features)
        if not proba:
            return 0.5
        p = proba.get(True)
        if p is None:
            p = 1.0 - proba.get(False, 0.5)
        return min(1.0, max(0.0, float(p)))

    def learn(self, features: dict, label: int) -> None:
        self.pipeline.learn_one(features, bool(label))
        self.learned += 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.estimator!r}, learned={self.learned})"
