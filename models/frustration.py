"""Frustration: P(the conversation ends badly: escalated, csat <= 2, or abandoned for 24 h).

Each customer ``chat_message`` is a decision point; the features are
:func:`operators.features.message_features`: hand-made ones (VADER, shape, word lists, context)
and the text itself (``_text``: the message and the customer's earlier lines still held), which
the ``logreg_text`` pipeline turns into hashed word and character n-grams (:mod:`models.text`). The default estimator was chosen by progressive
ROC AUC and cost per call on ``generate(5000, 60, 3)`` (see ``python -m models.bench``).
"""

from __future__ import annotations

from models.online import OnlineModel


class FrustrationModel(OnlineModel):
    name = "frustration"
    default_estimator = "logreg_text"
