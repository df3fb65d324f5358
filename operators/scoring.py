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
                               self.candidate, self.decision), (None, {"pos": self.pos}))


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
                        self.decided_ts), (None, {"pos": self.pos}))


class PairMsg:
    """The co-occurrences of a closed session, as :class:`operators.recs.Block` s, for the product
    step (the flow splits the blocks by product shard)."""

    __slots__ = ("blocks", "pos")

    def __init__(self, blocks: tuple, pos: int = 0):
        self.blocks = blocks
        self.pos = pos

    def __reduce__(self):
        return (PairMsg, (self.blocks, self.pos))


def pair_messages(blocks: list) -> list[PairMsg]:
    """One message per closed session (none when it closed empty)."""
    return [PairMsg(tuple(blocks))] if blocks else []


class RecsEval:
    """An order, before the recommender learns from it: what to ask (the customer's earlier items),
    what never to offer, and what was bought (the targets), for hit rate and NDCG."""

    __slots__ = ("customer_id", "ts", "items", "exclude", "targets", "bought", "pos")

    def __init__(self, customer_id: str, ts: int, items: tuple, exclude: tuple, targets: tuple, bought: tuple):
        self.customer_id = customer_id
        self.ts = ts
        self.items = items
        self.exclude = exclude
        self.targets = targets
        self.bought = bought
        self.pos = 0

    def __reduce__(self):
        return (RecsEval, (self.customer_id, self.ts, self.items, self.exclude, self.targets, self.bought),
                (None, {"pos": self.pos}))


class RecsUpdate:
    """Products' new neighbour lists, broadcast to every model shard; ``write`` on the copy for
    the shard that also writes ``crm:recs:{product_id}``."""

    __slots__ = ("updates", "shard", "write", "pos")

    def __init__(self, updates: list, shard: str, write: bool, pos: int):
        self.updates = updates
        self.shard = shard
        self.write = write
        self.pos = pos

    def __reduce__(self):
        return (RecsUpdate, (self.updates, self.shard, self.write, self.pos))
