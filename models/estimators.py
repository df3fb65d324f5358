"""The River pipelines a model can run, by setting name.

Each builder returns a fresh, unfitted pipeline (``predict_proba_one`` / ``learn_one``). Seeds are
fixed so that two replays of the same input score identically.
"""

from __future__ import annotations

from typing import Callable

from river import compose, forest, linear_model, naive_bayes, optim, tree

from models.scaler import StandardScaler
from models.text import TextAndNumbers


def _logreg(lr: float = 0.01, l2: float = 0.0):
    return lambda: compose.Pipeline(
        StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2),
    )


def _logreg_adagrad():
    return compose.Pipeline(StandardScaler(),
                            linear_model.LogisticRegression(optimizer=optim.AdaGrad(0.05)))


def _logreg_text(lr: float = 0.1):
    """Scaled numeric features beside hashed n-grams of the text (unscaled: unit-norm already), one
    logistic regression over both; AdaGrad, as the hashed weights are sparse and seen rarely."""
    return lambda: compose.Pipeline(TextAndNumbers(StandardScaler()),
                                    linear_model.LogisticRegression(optimizer=optim.AdaGrad(lr)))


def _hoeffding():
    return tree.HoeffdingAdaptiveTreeClassifier(grace_period=100, delta=1e-5, leaf_prediction="nba", seed=7)


def _arf(n: int = 10):
    return lambda: forest.ARFClassifier(n_models=n, seed=7, leaf_prediction="mc")


def _gaussian_nb():
    return compose.Pipeline(StandardScaler(), naive_bayes.GaussianNB())


ESTIMATORS: dict[str, Callable[[], object]] = {
    "logreg": _logreg(0.01),
    "logreg_fast": _logreg(0.05),
    "logreg_l2": _logreg(0.05, l2=1e-3),
    "logreg_adagrad": _logreg_adagrad,
    "logreg_text": _logreg_text(0.1),
    "hoeffding": _hoeffding,
    "arf": _arf(10),
    "arf5": _arf(5),
    "gaussian_nb": _gaussian_nb,
}


TEXT_ESTIMATORS = frozenset({"logreg_text"})  # read ``TEXT_KEY``; the others never see it


def build(name: str):
    try:
        return ESTIMATORS[name]()
    except KeyError:
        raise ValueError(f"unknown estimator {name!r}; one of {', '.join(sorted(ESTIMATORS))}") from None
