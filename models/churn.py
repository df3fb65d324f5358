"""Churn: P(no event from this customer within 30 days of the decision point).

Decision points are session ends, ``order_placed`` and every 7 days of inactivity; the features
are :func:`operators.features.churn_features`. The default estimator was chosen by progressive
ROC AUC and cost per call on ``generate(5000, 60, 3)`` (see ``python -m models.bench``).
"""

from __future__ import annotations

from models.online import OnlineModel


class ChurnModel(OnlineModel):
    name = "churn"
    default_estimator = "logreg"
