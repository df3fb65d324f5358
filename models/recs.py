"""The recommender's part of a model shard: the shared neighbour table, payload recommendations,
and the quality evaluation (item-to-item against a 7-day popularity baseline)."""

from __future__ import annotations

from typing import Any, Optional

from operators.recs import PopularityBaseline, RecsConfig, RecsEvaluator, RecsTable, recency_weights
from operators.messages import RecsEval


class ShardRecs:
    """Per model shard: every product's latest neighbour list (broadcast to all shards)."""

    def __init__(self, config: RecsConfig, in_payload: int = 5, k: int = 10):
        self.table = RecsTable(config)
        self.popularity = PopularityBaseline()
        self.i2i = RecsEvaluator(k)
        self.pop = RecsEvaluator(k)
        self.in_payload = in_payload
        self.top_k = config.top_k
        self.k = k

    def apply(self, update: Any) -> None:
        self.table.apply(update)

    def top(self, product_id: str) -> list[tuple[str, float]]:
        return self.table.top_k(product_id, self.top_k)

    def recommend(self, recs: tuple, ts: int) -> list[str]:
        items, exclude = recs
        if not items or not self.in_payload:
            return []
        return self.table.recommend(items, exclude, self.in_payload, ts)

    def for_customer(self, recs: tuple, ts: int, k: int = 10) -> list[str]:
        """The ``k`` products this customer is likeliest to want next (the profile's
        ``recommendations``, scored by ``crm-stream recs-eval``): ``recs`` = (recent products, most
        recent first; products never to offer). The query is recency-weighted and a product the
        customer looked at may come back (re-views are a large share of next clicks)."""
        items, exclude = recs
        if not items:
            return []
        cfg = self.table.cfg
        return self.table.recommend(items, exclude, k, ts, recency_weights(len(items), cfg.recency),
                                    cfg.repeat_weight)

    def evaluate(self, ev: RecsEval) -> None:
        """Score what would have been offered before this order; then count the order's products."""
        exclude = set(ev.exclude)
        if ev.items and ev.targets:
            self.i2i.add(self.table.recommend(ev.items, exclude, self.k, ev.ts), ev.targets)
            self.pop.add(self.popularity.recommend(exclude | set(ev.items), self.k, ev.ts), ev.targets)
        else:
            self.i2i.skip()
            self.pop.skip()
        self.popularity.observe(ev.bought, ev.ts)


def summary(parts: list[ShardRecs]) -> Optional[dict]:
    """The replay summary's ``recommendations`` section, merged over shards."""
    if not parts:
        return None
    k = parts[0].k
    i2i, pop = RecsEvaluator(k), RecsEvaluator(k)
    for p in parts:
        i2i.merge(p.i2i)
        pop.merge(p.pop)
    return {
        "item_to_item": i2i.result(),
        "popularity": pop.result(),
        "hit_rate_lift": round(i2i.hit_rate / pop.hit_rate, 3) if pop.hit_rate else None,
        "ndcg_lift": round(i2i.ndcg / pop.ndcg, 3) if pop.ndcg else None,
        "products": max(len(p.table) for p in parts),
    }
