"""One model shard: the online models for the customers hashed to it.

Predict on a :class:`ScoreRequest`, learn on a :class:`Label` (progressive validation: the
prediction made at the decision point is scored against the label when it arrives).
"""

from __future__ import annotations

import zlib
from typing import Optional

from config.settings import Settings
from operators.scoring import Label, ScoreRequest


def shard_of(customer_id: str, shards: int) -> str:
    """Stable across processes and restarts (``hash()`` is salted per process)."""
    return f"models/{zlib.crc32(customer_id.encode()) % shards}"


class ModelShard:
    """Holds no model yet: every score is ``None`` (model-confirmed candidates never fire)."""

    def __init__(self, settings: Optional[Settings] = None):
        self.settings = settings

    def score(self, req: ScoreRequest) -> Optional[float]:
        return None

    def learn(self, label: Label) -> None:
        return None

    def metrics(self) -> dict:
        return {}
