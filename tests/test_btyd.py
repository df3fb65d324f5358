"""BG/NBD and gamma-gamma formulas against published and hand-computed values, and the
population that learns their parameters in the stream."""

import math
import random
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from models import btyd
from models.btyd import DAY, Population
from models.eval import cdnow_truth, read_cdnow

CDNOW = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata" / "cdnow" / "CDNOW_sample.txt"
# Fader, Hardie & Lee (2005), CDNOW, weeks: r, alpha, a, b
FHL_PARAMS_WEEKS = (0.243, 4.414, 0.793, 2.426)


def test_fit_on_cdnow_recovers_the_published_parameters():
    truth = cdnow_truth(read_cdnow(CDNOW))
    x = np.array([t["x"] for t in truth.values()], float)
    t_x = np.array([t["t_x"] for t in truth.values()], float) / 7
    T = np.array([t["T"] for t in truth.values()], float) / 7
    r, alpha, a, b = btyd.fit_bgnbd(x, t_x, T, start=(1.0, 1.0, 1.0, 1.0))
    assert (r, alpha, a, b) == pytest.approx(FHL_PARAMS_WEEKS, rel=0.01)
    # the same customers in days: alpha scales by 7, the rest does not move
    assert btyd.fit_bgnbd(x, t_x * 7, T * 7) == pytest.approx((r, alpha * 7, a, b), rel=0.01)


def test_conditional_expectation_of_the_papers_example_customer():
    # FHL 2005, section 5: x = 2, t_x = 30.43, T = 38.86 weeks: 1.226 purchases in the next 39 weeks
    assert btyd.expected_purchases(FHL_PARAMS_WEEKS, 2, 30.43, 38.86, 39) == pytest.approx(1.226, abs=0.002)


def test_p_alive_by_hand():
    r, alpha, a, b = params = (0.5, 10.0, 1.2, 3.0)
    assert btyd.p_alive(params, 0, 0.0, 50.0) == 1.0  # no repeat purchase: BG/NBD cannot have died yet
    x, t_x, T = 3, 20.0, 40.0
    hand = 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    assert btyd.p_alive(params, x, t_x, T) == pytest.approx(hand)
    # P(buy within t) = P(alive) x (1 - P(no Poisson event within t | gamma posterior))
    quiet = ((alpha + T) / (alpha + T + 30)) ** (r + x)
    assert btyd.p_buy_within(params, x, t_x, T, 30) == pytest.approx(hand * (1 - quiet))


def test_likelihood_matches_a_brute_force_integral():
    """One customer's BG/NBD likelihood by integrating over lambda and p (FHL 2005, eqs. 3-5)."""
    r, alpha, a, b = params = (0.8, 5.0, 1.5, 2.5)
    x, t_x, T = 2, 6.0, 10.0

    def given(lam, p):
        alive = (1 - p) ** x * lam ** x * math.exp(-lam * T)
        dead = p * (1 - p) ** (x - 1) * lam ** x * math.exp(-lam * t_x)
        return (alive + dead) * stats.gamma.pdf(lam, r, scale=1 / alpha) * stats.beta.pdf(p, a, b)

    brute, _ = integrate.dblquad(lambda p, lam: given(lam, p), 0, 20, 0, 1)
    got = btyd.bgnbd_log_likelihood(params, np.array([x]), np.array([t_x]), np.array([T]))[0]
    assert math.exp(got) == pytest.approx(brute, rel=1e-4)


def test_gamma_gamma_by_hand():
    p, q, gamma = params = (6.25, 3.74, 15.44)  # Fader & Hardie's gamma-gamma note, CDNOW
    # E[M] = (gamma + n mean) p / (p n + q - 1): weight p n/(p n + q - 1) on the customer's own mean
    assert btyd.expected_order_value(params, 1, 30.0) == pytest.approx((15.44 + 30.0) * 6.25 / (6.25 + 2.74))
    assert btyd.expected_order_value(params, 1000, 30.0) == pytest.approx(30.0, rel=0.01)
    # the likelihood of one mean over n = 2 orders, by integrating over the customer's nu
    n, mean = 2, 25.0

    def given(nu):  # the mean of n gamma(p, nu) values is gamma(n p, n nu)
        return stats.gamma.pdf(mean, n * p, scale=1 / (n * nu)) * stats.gamma.pdf(nu, q, scale=1 / gamma)

    brute, _ = integrate.quad(given, 0, 5, limit=200)
    got = btyd.gamma_gamma_log_likelihood(params, np.array([n]), np.array([mean]))[0]
    assert math.exp(got) == pytest.approx(brute, rel=1e-5)


def simulate(n, params, days, seed=3):
    """Customers from BG/NBD itself (FHL 2005's story), first purchase at day 0."""
    r, alpha, a, b = params
    rng = np.random.default_rng(seed)
    out = []
    for lam, p in zip(rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)):
        t, buys = 0.0, [0.0]
        while True:
            t += rng.exponential(1 / lam)
            if t > days:
                break
            buys.append(t)
            if rng.random() < p:
                break
        out.append(buys)
    return out


def test_population_learns_the_parameters_from_a_bounded_sample():
    true = (0.5, 20.0, 1.0, 4.0)
    customers = simulate(6000, true, 300)
    pop = Population(capacity=2500, min_customers=200, refit_every=30 * DAY)
    now = 300 * DAY
    for i, buys in enumerate(customers):
        pop.observe(f"c{i}", 0, int(buys[-1] * DAY), len(buys), 10.0 * len(buys), now)
    assert len(pop.sample) <= 2500 and pop.params is None
    assert pop.maybe_refit(now) and not pop.maybe_refit(now + DAY)  # refits only when due
    r, alpha, a, b = pop.params
    # what the data identify well: the mean purchase rate r/alpha and the mean dropout a/(a + b)
    assert r / alpha == pytest.approx(true[0] / true[1], rel=0.15)
    assert a / (a + b) == pytest.approx(true[2] / (true[2] + true[3]), rel=0.15)
    # the sample is the same whatever the order customers come in
    again = Population(capacity=2500)
    order = list(range(len(customers)))
    random.Random(1).shuffle(order)
    for i in order:
        again.observe(f"c{i}", 0, int(customers[i][-1] * DAY), len(customers[i]), 1.0, now)
    assert set(again.sample) == set(pop.sample)


def test_population_ignores_customers_without_a_purchase_and_survives_a_bad_fit():
    pop = Population(min_customers=2)
    pop.observe("a", 0, 0, 0, 0.0, DAY)
    assert not pop.sample
    pop.observe("b", 0, 0, 1, 0.0, DAY)
    pop.observe("c", 0, 0, 1, 0.0, DAY)
    pop.maybe_refit(DAY)  # degenerate (no repeat purchase at all): whatever it gives, no exception
    assert pop.fits == 1


def test_population_refits_early_when_its_sample_has_grown():
    # a replay can run event time ahead of the customers seen: the fit must not freeze on the first few
    pop = Population(min_customers=2, refit_every=30 * DAY)
    for i in range(8):
        pop.observe(f"a{i}", 0, (10 + i) * DAY, 3, 30.0, 100 * DAY)
    assert pop.maybe_refit(100 * DAY) and pop.fitted_n == 8
    pop.observe("b0", 0, 10 * DAY, 2, 20.0, 101 * DAY)  # 9 < 8 x 1.25: not yet
    assert not pop.maybe_refit(101 * DAY)
    pop.observe("b1", 0, 20 * DAY, 2, 20.0, 101 * DAY)
    assert pop.maybe_refit(101 * DAY) and pop.fitted_n == 10 and pop.fits == 2
