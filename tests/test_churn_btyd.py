"""The churn score of an orders-only customer: BG/NBD's 1 - P(a purchase within the shop's
median gap), served instead of the River model's; customers with clickstream keep the River model."""

import pytest

from models import btyd
from models.btyd import DAY, Population
from models.churn import btyd_churn, btyd_features, orders_only
from models.shard import ModelShard
from operators.messages import ScoreRequest

PARAMS = (0.25, 30.0, 0.8, 2.5)


def stats(x, t_x, T, **extra):
    return {"_btyd_x": float(x), "_btyd_tx": float(t_x), "_btyd_T": float(T), "_btyd_spend": 10.0, **extra}


def fitted(gap=40.0):
    pop = Population()
    pop.params, pop.gap_days = PARAMS, gap
    return pop


def test_orders_only_needs_a_purchase_and_no_behaviour():
    assert orders_only(stats(2, 30, 60, sessions_log=0.0, chats_log=0.0))
    assert not orders_only(stats(2, 30, 60, sessions_log=0.7))
    assert not orders_only(stats(0, 0, 5, help_views_log=1.1))
    assert not orders_only(stats(-1, 0, 0))  # never bought


def test_btyd_churn_is_one_minus_p_buy_within_the_population_gap():
    f = stats(3, 20, 50)
    expected = 1.0 - btyd.p_buy_within(PARAMS, 3, 20.0, 50.0, 40.0)
    assert btyd_churn(fitted(40.0), f) == pytest.approx(expected)
    assert btyd_churn(Population(), f) is None  # before the first fit
    assert btyd_churn(fitted(), stats(-1, 0, 0)) is None


def test_btyd_churn_rises_while_the_customer_stays_away():
    pop = fitted()
    scores = [btyd_churn(pop, stats(3, 20, T)) for T in (25, 60, 120, 240)]
    assert scores == sorted(scores) and scores[-1] > scores[0] + 0.2


def test_population_gap_is_the_median_gap_of_repeat_buyers():
    pop = Population(min_customers=3)
    for i, (orders, span) in enumerate([(3, 40), (5, 200), (2, 30), (1, 0)]):
        pop.observe(f"c{i}", 0, span * DAY, orders, 10.0 * orders, 300 * DAY)
    pop.maybe_refit(300 * DAY)
    assert pop.gap_days == pytest.approx(30.0)  # median of 20, 50, 30 days; the one-time buyer has none


def test_shard_serves_btyd_for_orders_only_customers_and_river_otherwise():
    shard = ModelShard(warmup=0, min_outcomes=0)
    shard.population.params, shard.population.gap_days = PARAMS, 40.0
    shard.population.min_customers = 10 ** 9  # keep the parameters above: no refit
    only = stats(3, 20, 50)
    got = shard.score(ScoreRequest("churn", "a", "d1", 50 * DAY, only))
    assert got == pytest.approx(btyd_churn(shard.population, only))
    river = shard.models["churn"].predict(btyd_features(shard.population, stats(3, 20, 50, sessions_log=1.0)))
    clicks = shard.score(ScoreRequest("churn", "b", "d2", 50 * DAY, stats(3, 20, 50, sessions_log=1.0)))
    assert clicks == pytest.approx(river)
    assert "d1" in shard.pending["churn"]  # the River model is still validated on orders-only customers
