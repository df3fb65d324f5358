"""Churn: P(no event from this customer within their churn horizon of the decision point).

Decision points are session ends, ``order_placed`` and every 7 days of inactivity within the
horizon; the horizon is the customer's own rhythm (``labels.churn_horizon_gaps`` expected gaps
between their active days, within ``labels.churn_horizon_min`` .. ``labels.churn_horizon``). The
features are :func:`operators.features.churn_features` plus, from the purchase statistics they
carry (``_btyd_*``), the BG/NBD view of the customer under the population parameters the shard
learns in the stream (:class:`models.btyd.Population`): P(alive), P(a purchase within 30 and 90
days) and the posterior purchase rate (Fader, Hardie & Lee 2005). The default estimator was chosen
by progressive ROC AUC and cost per call (see ``python -m models.bench``).
"""

from __future__ import annotations

import math
from typing import Optional

from models.btyd import DAY, Population, expected_order_value, expected_purchases, p_alive, p_buy_within
from models.online import OnlineModel

RAW = ("_btyd_x", "_btyd_tx", "_btyd_T", "_btyd_spend", "_horizon_days")  # purchase statistics in churn features (days)
_NONE = {"btyd_known": 0.0, "bgnbd_palive": 0.0, "bgnbd_buy_30d": 0.0, "bgnbd_buy_90d": 0.0,
         "bgnbd_rate_log": 0.0, "bgnbd_quiet_horizon": 0.0}


class ChurnModel(OnlineModel):
    name = "churn"
    default_estimator = "logreg"


def purchase_stats(features: dict) -> Optional[tuple[float, float, float, float]]:
    """(x repeat purchases, t_x days, T days, spend) from churn features; None without a purchase."""
    x = features.get("_btyd_x")
    if x is None or x < 0:
        return None
    return x, features["_btyd_tx"], features["_btyd_T"], features["_btyd_spend"]


def btyd_features(population: Population, features: dict) -> dict:
    """``features`` without the raw ``_btyd_*`` statistics, with the BG/NBD ones (zeros and
    ``btyd_known`` 0 for a customer who never bought, or before the population's first fit)."""
    out = dict(features)
    for k in RAW:
        out.pop(k, None)
    stats = purchase_stats(features)
    params = population.params
    if stats is None or params is None:
        out.update(_NONE)
        return out
    x, t_x, T, _ = stats
    r, alpha = params[0], params[1]
    alive = p_alive(params, x, t_x, T)  # (p_buy_within's first factor, computed once for the three)
    out["btyd_known"] = 1.0
    out["bgnbd_palive"] = alive
    out["bgnbd_buy_30d"] = p_buy_within(params, x, t_x, T, 30.0, alive)
    out["bgnbd_buy_90d"] = p_buy_within(params, x, t_x, T, 90.0, alive)
    out["bgnbd_rate_log"] = math.log((r + x) / (alpha + T))
    # BG/NBD's own answer to the label: no purchase within this decision's horizon
    out["bgnbd_quiet_horizon"] = 1.0 - p_buy_within(params, x, t_x, T, features.get("_horizon_days", 30.0), alive)
    return out


def observe(population: Population, customer_id: str, features: dict, ts: int) -> None:
    """Feed one customer's purchase statistics at ``ts`` (ms) to the population sample."""
    stats = purchase_stats(features)
    if stats is None:
        return
    x, t_x, T, spend = stats
    first = ts - int(T * DAY)
    population.observe(customer_id, first, first + int(t_x * DAY), int(x) + 1, spend, ts)


def predicted_clv(population: Population, features: dict, horizon_days: float) -> Optional[float]:
    """Expected spend in the next ``horizon_days``: E[purchases] (BG/NBD, FHL 2005 eq. 10) x
    E[order value] (gamma-gamma, FHL 2005b); None before the fits or for a customer who never bought."""
    stats = purchase_stats(features)
    if stats is None or population.params is None:
        return None
    x, t_x, T, spend = stats
    n = int(x) + 1
    mean = spend / n
    if population.gg is not None and mean > 0:
        value = expected_order_value(population.gg, n, mean)
    else:
        value = mean
    return expected_purchases(population.params, x, t_x, T, horizon_days) * value


# activity the log only has with clickstream or chats: all zero means the customer's history is orders
BEHAVIOUR = ("sessions_log", "cart_adds_log", "checkouts_log", "chats_log", "chat_messages_log", "help_views_log")


def orders_only(features: dict) -> bool:
    """Whether the customer bought and the log holds nothing else about them (no sessions, carts,
    checkouts, chats or help views): BG/NBD's world, where the River model has only recency."""
    return purchase_stats(features) is not None and not any(features.get(k, 0.0) for k in BEHAVIOUR)


def btyd_churn(population: Population, features: dict) -> Optional[float]:
    """Churn probability of an orders-only customer from BG/NBD alone: 1 - P(a purchase within H
    days | x, t_x, T) (FHL 2005: P(alive) x the gamma-posterior Poisson chance of a purchase,
    see :func:`models.btyd.p_buy_within`), at the time of the decision or reading.

    H is one and the same for every customer: the shop's purchase rhythm, the median days
    between purchases of the population sample's repeat buyers (``Population.gap_days``), so
    customers are ranked on the same question ("no purchase within a typical gap"); a horizon of
    the customer's own rhythm, as the label's, ranks worse (CDNOW sample, batch diagnostic: 0.762
    against 0.766 for the common gap). The median gap was chosen as the shop's rhythm before any
    holdout figure, not tuned to one (a shorter H ranks CDNOW slightly better, a longer one worse). ``None`` before the
    population's first fit or for a customer who never bought; a float in [0, 1] otherwise."""
    stats = purchase_stats(features)
    params, gap = population.params, getattr(population, "gap_days", None)
    if stats is None or params is None or gap is None:
        return None
    x, t_x, T, _ = stats
    return min(1.0, max(0.0, 1.0 - p_buy_within(params, x, t_x, T, gap)))
