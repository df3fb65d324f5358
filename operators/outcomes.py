"""Holdout groups and outcomes: does a flow earn its messages? (pure)

A share of customers per trigger type is held out (:func:`in_holdout`, a keyed hash of customer
and type: stable across runs, restarts and workers). For every candidate that went out (``sent``)
or was held out (``holdout``) policy keeps an :class:`Exposure`; an ``order_placed`` within the
type's attribution window after it is a conversion. An exposure counts once its window has ended in
event time, so open windows never bias a rate. :func:`uplift` compares the two groups.
"""

from __future__ import annotations

import hashlib
import math
from statistics import NormalDist
from typing import Optional

GROUPS = ("sent", "holdout")


def in_holdout(customer_id: str, type: str, share: float, key: bytes) -> bool:
    """Is this customer in ``type``'s holdout group? ``share`` of customers are, uniformly."""
    if share <= 0:
        return False
    if len(key) > 64:  # BLAKE2b takes keys of up to 64 bytes
        key = hashlib.blake2b(key, digest_size=32).digest()
    h = hashlib.blake2b(f"{customer_id}\x1f{type}".encode(), key=key, digest_size=8).digest()
    return int.from_bytes(h, "big") < share * (1 << 64)


class Exposure:
    """A sent or held-out candidate waiting for its attribution window to end."""

    __slots__ = ("type", "group", "start", "end", "converted")

    def __init__(self, type: str, group: str, start: int, end: int, converted: bool = False):
        self.type, self.group, self.start, self.end, self.converted = type, group, start, end, converted

    def __reduce__(self):
        return (Exposure, (self.type, self.group, self.start, self.end, self.converted))


def wilson(x: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion x/n (Wilson, JASA 22 (1927) 209-212)."""
    if n == 0:
        return 0.0, 1.0
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, level: float = 0.95) -> Optional[tuple[float, float]]:
    """Interval of p1 - p2 by Newcombe's hybrid score method (method 10 of R. G. Newcombe, "Interval
    estimation for the difference between independent proportions: comparison of eleven methods",
    Statistics in Medicine 17 (1998) 873-890): Wilson intervals of both, combined. ``None`` when a
    group is empty."""
    if n1 == 0 or n2 == 0:
        return None
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def uplift(counts: dict[str, dict[str, int]]) -> dict:
    """``{group: {"n": matured exposures, "converted": x, "open": still in their window}}`` -> the
    summary's entry for one type: both groups with their rates, the difference sent - holdout and
    its 95 % interval (``null`` while a group has no matured exposure)."""
    out: dict = {}
    for g in GROUPS:
        c = counts.get(g, {})
        n, x = c.get("n", 0), c.get("converted", 0)
        out[g] = {"n": n, "converted": x, "open": c.get("open", 0), "rate": round(x / n, 6) if n else None}
    s, h = out["sent"], out["holdout"]
    ci = newcombe(s["converted"], s["n"], h["converted"], h["n"])
    out["difference"] = round(s["rate"] - h["rate"], 6) if ci is not None else None
    out["ci95"] = [round(ci[0], 6), round(ci[1], 6)] if ci is not None else None
    out["method"] = "newcombe_hybrid_score"
    return out
