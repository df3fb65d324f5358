"""Messages from a customer's state machine to the online models: score this, learn that."""

from __future__ import annotations

from typing import Optional

from operators.triggers import Candidate


class ScoreRequest:
    """Features at a decision point. ``candidate`` (if any) goes on to policy with the score.

    ``decision`` is false for a score taken only to fill a payload (no label will follow).
    """

    __slots__ = ("model", "customer_id", "decision_id", "ts", "features", "candidate", "decision", "pos")

    def __init__(self, model: str, customer_id: str, decision_id: str, ts: int, features: dict,
                 candidate: Optional[Candidate] = None, decision: bool = True):
        self.model = model
        self.customer_id = customer_id
        self.decision_id = decision_id
        self.ts = ts
        self.features = features
        self.candidate = candidate
        self.decision = decision
        self.pos = 0

    def __repr__(self) -> str:
        return f"ScoreRequest({self.model}, {self.decision_id}, candidate={self.candidate!r})"

    def __reduce__(self):
        return (ScoreRequest, (self.model, self.customer_id, self.decision_id, self.ts, self.features,
                               self.candidate, self.decision))


class Label:
    """The outcome of an earlier decision point, once event time has told it."""

    __slots__ = ("model", "customer_id", "decision_id", "ts", "features", "label", "decided_ts", "pos")

    def __init__(self, model: str, customer_id: str, decision_id: str, ts: int, features: dict, label: int,
                 decided_ts: int):
        self.model = model
        self.customer_id = customer_id
        self.decision_id = decision_id
        self.ts = ts  # when the label became known
        self.features = features
        self.label = label
        self.decided_ts = decided_ts
        self.pos = 0

    def __repr__(self) -> str:
        return f"Label({self.model}, {self.decision_id}, {self.label})"

    def __reduce__(self):
        return (Label, (self.model, self.customer_id, self.decision_id, self.ts, self.features, self.label,
                        self.decided_ts))
