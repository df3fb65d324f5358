"""Buy-till-you-die models: BG/NBD for purchase counts, gamma-gamma for order values.

Formulas (time in days throughout; ``x`` repeat purchases, ``t_x`` time of the last purchase and
``T`` age, both measured from the first purchase):

* BG/NBD: Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to
  the Pareto/NBD model", Marketing Science 24(2) 275-284: the log-likelihood (their eq. 6),
  P(alive | x, t_x, T) (their eq. 11 rearranged) and the conditional expectation
  E[X(T, T + t) | x, t_x, T] (their eq. 10, with Gauss's hypergeometric 2F1).
* gamma-gamma: Fader, Hardie & Lee (2005b), "RFM and CLV: using iso-value curves for customer
  base analysis", JMR 42(4) 415-430, and Fader & Hardie's note "The gamma-gamma model of monetary
  value" (2013): the marginal likelihood of a customer's mean order value and
  E[M | mean, n] = (q - 1)/(p n + q - 1) * gamma p/(q - 1) + p n/(p n + q - 1) * mean.

:class:`Population` learns the four BG/NBD and three gamma-gamma population parameters in the
stream: it keeps a bounded, deterministic sample of customers' sufficient statistics
(first purchase, last purchase, purchase count, spend) and refits by maximum likelihood (SciPy)
every so often in event time.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from typing import Optional

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from operators.units import DAY

# Starting points of the fits (days): close to FHL 2005's CDNOW estimates (r 0.24, alpha 4.4
# weeks, a 0.79, b 2.43) and to the gamma-gamma note's (p 6.25, q 3.74, gamma 15.44).
BGNBD_START = (0.25, 30.0, 0.8, 2.5)
GG_START = (6.0, 4.0, 15.0)
GROWTH = 1.25  # refit when the sample grew by a quarter since the last fit (O(log n) extra fits)


# ---------------------------------------------------------------------------------- BG/NBD


def bgnbd_log_likelihood(params, x, t_x, T) -> np.ndarray:
    """Per-customer log-likelihood of BG/NBD (FHL 2005, eq. 6); arrays of equal shape, days."""
    r, alpha, a, b = params
    x, t_x, T = np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float)
    common = gammaln(r + x) - gammaln(r) + r * math.log(alpha)
    a1 = common + betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    repeat = x > 0
    a2 = np.full_like(x, -np.inf)
    xr = x[repeat]
    a2[repeat] = (common[repeat] + betaln(a + 1, b + xr - 1) - betaln(a, b)
                  - (r + xr) * np.log(alpha + t_x[repeat]))
    return np.logaddexp(a1, a2)


def fit_bgnbd(x, t_x, T, start=BGNBD_START) -> tuple[float, float, float, float]:
    """Maximum-likelihood (r, alpha, a, b) from arrays of (x, t_x, T) in days (L-BFGS on logs).

    Raises ``ValueError`` when the optimiser fails (too few or degenerate customers)."""
    x, t_x, T = np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float)

    def nll(logp):
        return -float(bgnbd_log_likelihood(np.exp(logp), x, t_x, T).sum()) / len(x)

    res = minimize(nll, np.log(start), method="L-BFGS-B", bounds=[(-9, 9)] * 4)
    if not np.isfinite(res.fun):
        raise ValueError(f"BG/NBD fit failed: {res.message}")
    return tuple(float(v) for v in np.exp(res.x))


def p_alive(params, x: float, t_x: float, T: float) -> float:
    """P(the customer is still alive at T | x, t_x, T) under BG/NBD (FHL 2005, eq. 11 form);
    1 for a customer with no repeat purchase (BG/NBD's death only follows a purchase)."""
    r, alpha, a, b = params
    if x <= 0:
        return 1.0
    odds = a / (b + x - 1) * math.exp((r + x) * math.log((alpha + T) / (alpha + t_x)))
    return 1.0 / (1.0 + odds)


def p_buy_within(params, x: float, t_x: float, T: float, t: float, alive: Optional[float] = None) -> float:
    """P(at least one purchase in (T, T + t] | x, t_x, T): alive, and the gamma-posterior
    Poisson rate (shape r + x, rate alpha + T) gives a purchase within t days. ``alive``: the
    caller's ``p_alive(params, x, t_x, T)``, if it has it."""
    r, alpha = params[0], params[1]
    quiet = math.exp((r + x) * math.log((alpha + T) / (alpha + T + t)))
    return (p_alive(params, x, t_x, T) if alive is None else alive) * (1.0 - quiet)


def expected_purchases(params, x: float, t_x: float, T: float, t: float) -> float:
    """E[X(T, T + t) | x, t_x, T], purchases in the next ``t`` days (FHL 2005, eq. 10)."""
    r, alpha, a, b = params
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    tail = 1.0 - math.exp((r + x) * math.log((alpha + T) / (alpha + T + t))) * float(
        hyp2f1(r + x, b + x, a + b + x - 1, z))
    odds = a / (b + x - 1) * math.exp((r + x) * math.log((alpha + T) / (alpha + t_x))) if x > 0 else 0.0
    return max(0.0, head * tail / (1.0 + odds))


# ---------------------------------------------------------------------------------- gamma-gamma


def gamma_gamma_log_likelihood(params, n, mean) -> np.ndarray:
    """Per-customer log-likelihood of the mean order value ``mean`` over ``n`` orders
    (Fader & Hardie's gamma-gamma note, eq. 3, up to a term free of the parameters)."""
    p, q, gamma = params
    n, mean = np.asarray(n, float), np.asarray(mean, float)
    return (gammaln(p * n + q) - gammaln(p * n) - gammaln(q) + q * math.log(gamma)
            + (p * n - 1) * np.log(mean) + p * n * np.log(n) - (p * n + q) * np.log(gamma + n * mean))


def fit_gamma_gamma(n, mean, start=GG_START) -> tuple[float, float, float]:
    """Maximum-likelihood (p, q, gamma) from customers' order counts and mean order values (> 0)."""
    n, mean = np.asarray(n, float), np.asarray(mean, float)

    def nll(logp):
        return -float(gamma_gamma_log_likelihood(np.exp(logp), n, mean).sum()) / len(n)

    res = minimize(nll, np.log(start), method="L-BFGS-B", bounds=[(-9, 9), (math.log(1.01), 9), (-9, 12)])
    if not np.isfinite(res.fun):
        raise ValueError(f"gamma-gamma fit failed: {res.message}")
    return tuple(float(v) for v in np.exp(res.x))


def expected_order_value(params, n: int, mean: float) -> float:
    """E[M | n orders with mean value ``mean``] (FHL 2005b): a weighted mean of the population's
    mean gamma p/(q - 1) and the customer's own mean, weight p n/(p n + q - 1) on their own."""
    p, q, gamma = params
    return (gamma + n * mean) * p / (p * n + q - 1)


# ---------------------------------------------------------------------------------- in the stream

_blas = None  # the process's threadpoolctl controller, made at the first fit


def one_blas_thread():
    """A context in which BLAS runs on the calling thread only. SciPy's L-BFGS-B calls BLAS on
    vectors of four numbers; with OpenBLAS's thread pool each call also wakes (and spins) its
    threads: measured, a refit then cost 12x the CPU time, with the same results bit for bit.
    Without threadpoolctl, a no-op."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a dependency; the fits only run slower without it
            _blas = False
        else:
            _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas") if _blas else contextlib.nullcontext()



class Population:
    """BG/NBD and gamma-gamma population parameters learned from a bounded customer sample.

    ``observe`` takes one customer's statistics (event time ms: first and last purchase, purchases,
    spend) at each churn decision; a customer is sampled when ``crc32(id)`` falls below a
    threshold that halves whenever the sample exceeds ``capacity`` (the same sample for the same
    input, whatever the order). ``maybe_refit(now)`` refits every ``refit_every`` ms of event time
    once ``min_customers`` are sampled; before the first fit ``params`` is ``None``.
    """

    def __init__(self, capacity: int = 4000, min_customers: int = 200, refit_every: int = 7 * DAY):
        self.capacity = capacity
        self.min_customers = min_customers
        self.refit_every = refit_every
        self.threshold = 1 << 32
        self.sample: dict[str, tuple[int, int, int, float]] = {}  # id -> (first ms, last ms, orders, spend)
        self.params: Optional[tuple[float, float, float, float]] = None
        self.gg: Optional[tuple[float, float, float]] = None
        self.fitted_at: Optional[int] = None
        self.latest = 0  # latest event time observed (ms)
        self.fits = 0
        self.fitted_n = 0  # sample size at the last fit
        self.gap_days: Optional[float] = None  # median days between purchases of the sample's repeat buyers

    def observe(self, customer_id: str, first: int, last: int, orders: int, spend: float, now: int) -> None:
        if now > self.latest:
            self.latest = now
        if orders <= 0 or zlib.crc32(customer_id.encode()) >= self.threshold:
            return
        self.sample[customer_id] = (first, last, orders, spend)
        if len(self.sample) > self.capacity:
            self.threshold //= 2
            self.sample = {c: v for c, v in self.sample.items() if zlib.crc32(c.encode()) < self.threshold}

    def maybe_refit(self, now: int) -> bool:
        """Refit when due: ``refit_every`` of event time since the last fit, or the sample has grown
        by GROWTH since (a replay or a late timer can run event time ahead of the customers the
        sample has seen: the fit must not freeze on the first few). True when refitted."""
        if len(self.sample) < self.min_customers:
            return False
        grown = len(self.sample) >= GROWTH * getattr(self, "fitted_n", 0)  # (pickles from before the field)
        if self.fitted_at is not None and now - self.fitted_at < self.refit_every and not grown:
            return False
        self.fitted_at, self.fitted_n = now, len(self.sample)
        self.refit(max(now, self.latest))
        return True

    def refit(self, now: int) -> None:
        with one_blas_thread():
            self._refit(now)

    def _refit(self, now: int) -> None:
        stats = np.array(list(self.sample.values()), dtype=float)
        first, last, orders, spend = stats.T
        x = np.maximum(orders - 1, 0)
        t_x = np.maximum(last - first, 0) / DAY
        T = np.maximum(now - first, last - first) / DAY
        try:
            self.params = fit_bgnbd(x, t_x, T, self.params or BGNBD_START)
        except ValueError:
            pass  # keep the previous parameters (or none): a bad sample must not stop the stream
        repeat = x > 0
        if repeat.any():  # the shop's purchase rhythm, for churn scores on one common horizon
            self.gap_days = max(float(np.median(t_x[repeat] / x[repeat])), 1.0)
        buyers = spend > 0
        if buyers.sum() >= self.min_customers // 2:
            try:
                self.gg = fit_gamma_gamma(orders[buyers], spend[buyers] / orders[buyers], self.gg or GG_START)
            except ValueError:
                pass
        self.fits += 1
