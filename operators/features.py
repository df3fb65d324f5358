"""Feature functions for the online models (pure; computed at decision points only).

``History`` is the per-customer running summary the churn features read; the customer state
machine calls :meth:`History.observe` for every accepted event. It is Bytewax state, so it stays
compact: counters, a few decayed rates and short capped lists, never the event log.

Churn features follow BG/NBD thinking (Fader, Hardie & Lee 2005): recency and frequency carry
most of the signal, and risk rises while a customer stays away. Heavy-tailed counts and
durations are log-transformed so that a linear model sees them on a useful scale.
"""

from __future__ import annotations

import math
import re
from array import array
from typing import TYPE_CHECKING, Mapping, Optional, Protocol, Sequence

from operators.units import DAY, HOUR, MINUTE

SESSION_GAP = 30 * MINUTE  # the settings' default (proactive.session_gap): History's visits without a config
_CLICKS = frozenset({"add_to_cart", "remove_from_cart", "checkout_started", "help_view"})  # clickstream with a handler
HORIZONS = (7, 30, 90)  # days: windowed and decayed counts
ORDER_LOG = 12  # last orders kept (ts in minutes, total) for intervals and windowed counts
CONTACT_LOG = 6  # last conversation starts kept (ts in minutes) for repeat-contact counts
BAD_TAU = 30.0  # days: decay of the bad-experience score
# Gamma prior on a customer's visit rate (per day) for the NBD "no visit within 30 days" feature:
# shape 1, scale 1/3 (a mean of one session every three days), updated by the sessions seen.
PRIOR_R, PRIOR_A, CHURN_HORIZON_DAYS = 1.0, 3.0, 30.0
# The same for purchases: a prior mean of one order a month.
ORDER_PRIOR_R, ORDER_PRIOR_A = 1.0, 30.0

if TYPE_CHECKING:  # pragma: no cover
    from operators.events import Event

log1p = math.log1p
TEXT_KEY = "_text"  # message_features' text (a str among the numbers; models.text hashes it)


class History:
    """Compact running counts of one customer's behaviour.

    ``sessions``, ``chats``, ``carts_abandoned`` and ``late_orders`` are counted by the state
    machine (it owns those timers); everything else here is updated by :meth:`observe`.
    """

    __slots__ = (
        "events", "sessions", "orders", "late_orders", "returns", "refunds", "chats", "help_views",
        "carts_abandoned", "last_order_ts",
        # sessions as History splits them (30 min gap), clicks and activity
        "visits", "visit_start", "click_last", "visit_ms", "clicks", "active_days", "last_day",
        "decay_ts", "ew_visits", "ew_events", "ew_bad",
        # orders
        "order_log", "cart_adds", "checkouts", "delays", "cancels", "delivered",
        # support
        "contacts", "last_conv", "messages", "csat_sum", "csat_n", "escalations", "bad_chats",
        "first_order_ts",  # BG/NBD's clock starts at the first purchase
    )

    def __init__(self) -> None:
        self.events = 0
        self.sessions = 0
        self.orders = 0
        self.late_orders = 0
        self.returns = 0
        self.refunds = 0
        self.chats = 0
        self.help_views = 0
        self.carts_abandoned = 0
        self.last_order_ts: Optional[int] = None
        self.visits = 0
        self.visit_start: Optional[int] = None
        self.click_last: Optional[int] = None
        self.visit_ms = 0  # summed length of visits (first to last click)
        self.clicks = 0
        self.active_days = 0
        self.last_day = -1
        self.decay_ts: Optional[int] = None
        self.ew_visits = array("d", (0.0, 0.0, 0.0))  # exponentially decayed counts, time constants HORIZONS
        self.ew_events = array("d", (0.0, 0.0, 0.0))  # (packed: a list of floats costs twice as much)
        self.ew_bad = 0.0
        self.order_log: Sequence[tuple[int, float]] = ()  # (ts in minutes, total), oldest first (shared when empty)
        self.cart_adds = 0
        self.checkouts = 0
        self.delays = 0
        self.cancels = 0
        self.delivered = 0
        self.contacts: tuple[int, ...] = ()  # conversation starts, ts in minutes, oldest first (shared when empty)
        self.last_conv: Optional[str] = None
        self.messages = 0  # customer chat messages
        self.csat_sum = 0
        self.csat_n = 0
        self.escalations = 0
        self.bad_chats = 0  # closed escalated or with csat <= 2
        self.first_order_ts: Optional[int] = None

    # ------------------------------------------------------------------ updates

    def observe(self, ev: "Event", session_gap: int = SESSION_GAP) -> None:
        """Every accepted event (duplicates excluded, late ones included), in arrival order;
        ``session_gap`` (ms, the settings' ``proactive.session_gap``) splits visits."""
        type, ts = ev.type, ev.ts
        self.events += 1
        if self.decay_ts is None or ts - self.decay_ts >= HOUR:  # (_decay_to's own test, inline: it mostly waits)
            self._decay_to(ts)
        ew = self.ew_events
        ew[0] += 1.0
        ew[1] += 1.0
        ew[2] += 1.0
        day = ts // DAY
        if day > self.last_day:
            self.active_days += 1
            self.last_day = day
        handler = _HANDLERS.get(type)
        if type in _CLICKS or (handler is None and "session_id" in ev.data):  # any clickstream event
            self._click(ts, session_gap)
        if handler is not None:
            handler(self, ev)

    def _decay_to(self, ts: int) -> None:
        if self.decay_ts is None:
            self.decay_ts = ts
            return
        if ts - self.decay_ts < HOUR:
            # Within the hour events count at the current decay time (<= 0.6 % off for a 7-day
            # horizon): most events come seconds apart and the exponentials cost more than the rest
            # of the event. Late events likewise count at the current decay time.
            return
        dt = (ts - self.decay_ts) / DAY
        f0, f1, f2 = math.exp(-dt / HORIZONS[0]), math.exp(-dt / HORIZONS[1]), math.exp(-dt / HORIZONS[2])
        v, e = self.ew_visits, self.ew_events  # (the same three factors for both)
        self.ew_visits = array("d", (v[0] * f0, v[1] * f1, v[2] * f2))
        self.ew_events = array("d", (e[0] * f0, e[1] * f1, e[2] * f2))
        self.ew_bad *= math.exp(-dt / BAD_TAU)
        self.decay_ts = ts

    def _click(self, ts: int, session_gap: int) -> None:
        self.clicks += 1
        last = self.click_last
        if last is None or ts - last > session_gap:
            self.visits += 1
            self.visit_start = ts
            ew = self.ew_visits
            ew[0] += 1.0
            ew[1] += 1.0
            ew[2] += 1.0
            self.click_last = ts
        elif ts > last:
            self.visit_ms += ts - last
            self.click_last = ts

    def _order_placed(self, ev: "Event") -> None:
        self.orders += 1
        if self.last_order_ts is None or ev.ts > self.last_order_ts:  # a late order is not the latest
            self.last_order_ts = ev.ts
        if self.first_order_ts is None or ev.ts < self.first_order_ts:
            self.first_order_ts = ev.ts
        try:
            total = float(ev.get("total") or 0.0)
        except (TypeError, ValueError):
            total = 0.0
        self.order_log = [*self.order_log, (ev.ts // MINUTE, total)][-ORDER_LOG:]

    def _order_event(self, ev: "Event") -> None:
        t = ev.type
        if t == "order_delayed":
            self.delays += 1
            self.ew_bad += 1.0
        elif t == "order_cancelled":
            self.cancels += 1
            self.ew_bad += 0.5
        elif t == "order_delivered":
            self.delivered += 1
        elif t == "return_requested":
            self.returns += 1
            self.ew_bad += 0.5
        elif t == "refund_issued":
            self.refunds += 1
            self.ew_bad += 0.3

    def _cart(self, ev: "Event") -> None:
        if ev.type == "add_to_cart":
            self.cart_adds += 1
        elif ev.type == "checkout_started":
            self.checkouts += 1

    def _help(self, ev: "Event") -> None:
        self.help_views += 1

    def _chat_message(self, ev: "Event") -> None:
        cid = ev.get("conversation_id")
        if cid != self.last_conv:
            self.last_conv = cid
            self.contacts = (self.contacts + (ev.ts // MINUTE,))[-CONTACT_LOG:]
        if ev.get("sender") == "customer":
            self.messages += 1

    def _chat_closed(self, ev: "Event") -> None:
        csat, escalated = ev.get("csat"), ev.get("escalated")
        if isinstance(csat, int):
            self.csat_sum += csat
            self.csat_n += 1
        if escalated is True:
            self.escalations += 1
        if escalated is True or (isinstance(csat, int) and csat <= 2):
            self.bad_chats += 1
            self.ew_bad += 1.0

    # ------------------------------------------------------------------ reads

    def contacts_within(self, now: int, window: int) -> int:
        """Conversations started in ``(now - window, now]`` (capped at CONTACT_LOG)."""
        lo = (now - window) // MINUTE
        return sum(1 for c in self.contacts if c > lo)

    def decayed(self, now: int) -> tuple[list[float], list[float], float]:
        """(visits, events, bad) decayed to ``now`` without changing the state."""
        if self.decay_ts is None:
            return [0.0] * 3, [0.0] * 3, 0.0
        dt = max(0.0, (now - self.decay_ts) / DAY)
        k = [math.exp(-dt / h) for h in HORIZONS]
        return ([v * f for v, f in zip(self.ew_visits, k)], [v * f for v, f in zip(self.ew_events, k)],
                self.ew_bad * math.exp(-dt / BAD_TAU))

    def __getstate__(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state):
        if len(state) < len(self.__slots__):  # a snapshot from before first_order_ts
            state = tuple(state) + (None,) * (len(self.__slots__) - len(state))
        for s, v in zip(self.__slots__, state):
            setattr(self, s, v)
        # at their exact size (unpickled, small arrays keep spare room); an empty order log shared
        self.ew_visits, self.ew_events = array("d", self.ew_visits), array("d", self.ew_events)
        self.order_log = self.order_log or ()


_HANDLERS = {
    "order_placed": History._order_placed,
    "order_shipped": History._order_event,
    "order_delayed": History._order_event,
    "order_delivered": History._order_event,
    "order_cancelled": History._order_event,
    "return_requested": History._order_event,
    "refund_issued": History._order_event,
    "add_to_cart": History._cart,
    "remove_from_cart": History._cart,
    "checkout_started": History._cart,
    "help_view": History._help,
    "chat_message": History._chat_message,
    "chat_closed": History._chat_closed,
}


# ---------------------------------------------------------------------------------- churn


# feature names made once (a decision point costs a few microseconds less without formatting them)
_ORDER_KEYS = tuple((h, f"orders_{h}d", f"log_spend_{h}d") for h in HORIZONS)
_DECAYED_KEYS = tuple((i, f"visits_{h}d_log", f"events_{h}d_log") for i, h in enumerate(HORIZONS))
_RATE_KEYS: dict[str, tuple[str, str, str, str]] = {}


def order_features(order_log: Sequence[tuple[int, float]], now: int) -> dict[str, float]:
    """Frequency and monetary value over 7/30/90 days, inter-purchase intervals (days)."""
    now_min = now // MINUTE
    feats: dict[str, float] = {}
    for h, orders_key, spend_key in _ORDER_KEYS:
        lo = now_min - h * 1440
        recent = [total for ts, total in order_log if ts > lo]
        feats[orders_key] = float(len(recent))
        feats[spend_key] = log1p(sum(recent))
    # orders can arrive out of order (late events): a negative gap is no gap
    gaps = [max(0.0, (b[0] - a[0]) / 1440) for a, b in zip(order_log, order_log[1:])]
    if gaps:
        mean = sum(gaps) / len(gaps)
        last = gaps[-1]
        since = (now_min - order_log[-1][0]) / 1440
        feats["ipi_mean_log"] = log1p(mean)
        feats["ipi_last_log"] = log1p(last)
        # > 0: purchases are slowing down (the last gap is longer than usual)
        feats["ipi_trend"] = log1p(last) - log1p(mean)
        # how overdue the next purchase is, in usual gaps
        feats["ipi_overdue"] = min(since / max(mean, 0.5), 20.0)
        feats["has_ipi"] = 1.0
    else:
        feats.update(ipi_mean_log=0.0, ipi_last_log=0.0, ipi_trend=0.0, ipi_overdue=0.0, has_ipi=0.0)
    return feats


def visit_rate_features(visits: int, tenure_days: float, recency_days: float, prefix: str = "visit",
                        prior: tuple[float, float] = (PRIOR_R, PRIOR_A)) -> dict[str, float]:
    """NBD view of visits (or orders): a gamma-Poisson posterior rate and the chance of 30 quiet days.

    ``visits`` counts the first one, so repeat visits are ``visits - 1`` over ``tenure_days``.
    """
    repeat = max(visits - 1, 0)
    shape, scale = prior[0] + repeat, prior[1] + tenure_days
    rate = shape / scale  # posterior mean visits per day
    # P(no visit in the next horizon | alive): negative binomial with zero counts
    log_p_quiet = shape * math.log(scale / (scale + CHURN_HORIZON_DAYS))
    keys = _RATE_KEYS.get(prefix)
    if keys is None:
        keys = _RATE_KEYS[prefix] = (f"{prefix}_rate_log", f"{prefix}_quiet30_logp", f"{prefix}_quiet30_p",
                                     f"{prefix}_missed_log")
    return {
        keys[0]: math.log(rate),
        keys[1]: log_p_quiet,
        keys[2]: math.exp(log_p_quiet),
        # visits the customer would have made during the current silence: risk rises with it
        keys[3]: log1p(rate * recency_days),
    }


def churn_horizon(h: History, first_seen: int, now: int, shortest: int, longest: int, gaps: float) -> int:
    """The churn label's horizon (ms) for a decision at ``now``: ``gaps`` of the customer's expected
    gaps between active days, within ``shortest`` .. ``longest``. The expected gap is
    1 / the gamma-Poisson posterior rate of active days (prior: one every PRIOR_A days), so a
    new customer gets the prior's rhythm and a long silence lengthens it."""
    tenure = max(0.0, (now - first_seen) / DAY)
    rate = (PRIOR_R + max(h.active_days - 1, 0)) / (PRIOR_A + tenure)
    return int(min(longest, max(shortest, gaps / rate * DAY)))


def purchase_stats(h: History, now: int, spend: float) -> dict[str, float]:
    """BG/NBD's sufficient statistics (Fader, Hardie & Lee 2005), for the model step to turn into
    P(alive) under its population parameters: repeat purchases x, t_x and T in days from the first
    purchase, and spend. ``_btyd_x`` is -1 for a customer who never bought."""
    first = h.first_order_ts
    if first is None or not h.orders:
        return {"_btyd_x": -1.0, "_btyd_tx": 0.0, "_btyd_T": 0.0, "_btyd_spend": 0.0}
    last = h.last_order_ts if h.last_order_ts is not None else first
    return {"_btyd_x": float(h.orders - 1), "_btyd_tx": max(0.0, (last - first) / DAY),
            "_btyd_T": max(0.0, (now - first) / DAY, (last - first) / DAY), "_btyd_spend": max(0.0, spend)}


class Facts(Protocol):
    """The facts about a customer the churn features read (``operators.customer.CustomerState``
    is one; this module does not import it: the customer step imports the features)."""

    history: "History"
    first_seen: int  # ms, event time
    last_seen: int  # ms, event time
    spend: float
    orders: Mapping  # open orders by id
    cart: Mapping  # product_id -> [quantity, price]


def churn_features(state: Facts, now: int) -> dict[str, float]:
    """The churn model's view of a customer at a decision point at event time ``now`` (and the raw
    purchase statistics ``_btyd_*`` the model step reads, see :func:`purchase_stats`). One dict
    written in place: the same keys, order and floating-point operations as :func:`order_features`,
    :func:`visit_rate_features`, :func:`purchase_stats` and :meth:`History.decayed` (a decision
    point is one event in eight, and building and merging their dicts cost as much as the values)."""
    h = state.history
    tenure = max(0.0, (now - state.first_seen) / DAY)
    recency = max(0.0, (now - state.last_seen) / DAY)
    since_order = (now - h.last_order_ts) / DAY if h.last_order_ts is not None else tenure
    orders = h.orders
    sessions_done = max(h.visits, 1)
    feats = _base_features(state, h, now, tenure, recency, since_order, orders, sessions_done)
    _add_decayed(feats, h, now)
    if h.order_log:
        feats.update(order_features(h.order_log, now))
    else:  # never bought in the log (most customers): order_features' values for an empty log
        feats.update(_NO_ORDERS)
    visits = max(h.visits, h.sessions, orders)  # a purchase-only log has orders and no clicks
    feats["visits_log"] = log1p(visits)
    _add_rate(feats, _VISIT_KEYS, visits, tenure, recency, PRIOR_R, PRIOR_A)
    _add_rate(feats, _ORDER_RATE_KEYS, orders, tenure, max(since_order, 0.0), ORDER_PRIOR_R, ORDER_PRIOR_A)
    first = h.first_order_ts
    if first is None or not orders:
        feats.update(_NO_PURCHASE)
    else:
        feats.update(purchase_stats(h, now, state.spend))
    return feats


def _base_features(state: Facts, h: History, now: int, tenure: float, recency: float, since_order: float,
                   orders: int, sessions_done: int) -> dict[str, float]:
    """The first 36 churn features (:func:`churn_features`), in their order."""
    spend = state.spend
    return {
        "recency_log": log1p(recency),
        "recency_hours_log": log1p(recency * 24),
        "tenure_log": log1p(tenure),
        "new_customer": 1.0 if tenure < 14 else 0.0,
        "since_order_log": log1p(max(since_order, 0.0)),
        "never_ordered": 0.0 if orders else 1.0,
        "orders_log": log1p(orders),
        "spend_log": log1p(spend),
        "aov_log": log1p(spend / orders) if orders else 0.0,
        "open_orders": float(len(state.orders)),
        "cart_open": 1.0 if state.cart else 0.0,
        "events_log": log1p(h.events),
        "sessions_log": log1p(h.sessions),
        "active_days_log": log1p(h.active_days),
        "active_day_share": h.active_days / max(tenure + 1.0, 1.0),
        "visit_minutes_log": log1p(h.visit_ms / MINUTE / sessions_done),
        "clicks_per_visit_log": log1p(h.clicks / sessions_done),
        "cart_adds_log": log1p(h.cart_adds),
        "checkouts_log": log1p(h.checkouts),
        "carts_abandoned_log": log1p(h.carts_abandoned),
        "abandon_share": h.carts_abandoned / (h.carts_abandoned + orders) if h.carts_abandoned + orders else 0.0,
        "returns_log": log1p(h.returns),
        "refunds_log": log1p(h.refunds),
        "cancels_log": log1p(h.cancels),
        "delays_log": log1p(h.delays),
        "late_orders_log": log1p(h.late_orders),
        "late_share": (h.late_orders + h.delays) / orders if orders else 0.0,
        "delivered_log": log1p(h.delivered),
        "chats_log": log1p(max(h.chats, len(h.contacts))),
        "contacts_30d": float(h.contacts_within(now, 30 * DAY)) if h.contacts else 0.0,
        "chat_messages_log": log1p(h.messages),
        "csat_mean": (h.csat_sum / h.csat_n - 3.0) if h.csat_n else 0.0,
        "escalations": float(h.escalations),
        "bad_chats": float(h.bad_chats),
        "help_views_log": log1p(h.help_views),
        "bad_recent": 0.0 if h.decay_ts is None else h.ew_bad * _exp(-max(0.0, (now - h.decay_ts) / DAY) / BAD_TAU),
    }


def _add_decayed(feats: dict, h: History, now: int) -> None:
    """The decayed visit and event counts (:meth:`History.decayed`) on log scales."""
    if h.decay_ts is None:
        feats.update(_NO_DECAY)
        return
    dt = max(0.0, (now - h.decay_ts) / DAY)
    visits, events = h.ew_visits, h.ew_events
    for i, visits_key, events_key in _DECAYED_KEYS:
        f = _exp(-dt / HORIZONS[i])
        feats[visits_key] = log1p(visits[i] * f)
        feats[events_key] = log1p(events[i] * f)


def _add_rate(feats: dict, keys: tuple, visits: int, tenure_days: float, recency_days: float, prior_r: float,
              prior_a: float) -> None:
    """:func:`visit_rate_features` written into ``feats`` (the same operations)."""
    repeat = max(visits - 1, 0)
    shape, scale = prior_r + repeat, prior_a + tenure_days
    rate = shape / scale
    log_p_quiet = shape * _log(scale / (scale + CHURN_HORIZON_DAYS))
    feats[keys[0]] = _log(rate)
    feats[keys[1]] = log_p_quiet
    feats[keys[2]] = _exp(log_p_quiet)
    feats[keys[3]] = log1p(rate * recency_days)


_exp, _log = math.exp, math.log
_NO_DECAY = {k: 0.0 for _, v, e in _DECAYED_KEYS for k in (v, e)}  # log1p(0.0), in their order
_NO_ORDERS = order_features((), 0)
_NO_PURCHASE = {"_btyd_x": -1.0, "_btyd_tx": 0.0, "_btyd_T": 0.0, "_btyd_spend": 0.0}
_VISIT_KEYS = tuple(visit_rate_features(1, 0.0, 0.0))
_ORDER_RATE_KEYS = tuple(visit_rate_features(1, 0.0, 0.0, "order"))


# ---------------------------------------------------------------------------------- frustration

# Small, general word lists (matched on lower-cased word tokens).
NEGATIVE_WORDS = frozenset("""
    useless ridiculous unacceptable terrible worst awful horrible pathetic joke nightmare disgusting
    scam never broken lost still again seriously unbelievable sick fed disappointed disappointing
    waste incompetent complaint complain lawyer review angry furious annoyed annoying frustrated
    frustrating hate nobody impossible rubbish garbage shame shameful liar lies lied ignored
    cancel refund money worse bad poor fail failed failure wrong
""".split())
PROFANE_WORDS = frozenset("""
    damn damned dammit hell crap crappy wtf bloody shit shitty bullshit fuck fucking fucked ass
    sucks suck stupid idiot idiots idiotic freaking pissed screw omg ffs
""".split())
# Asking for a person: the escalation rule's default words (a customer who wants out of the bot).
_ASKS_HUMAN = re.compile(r"\b(?:human|agent|representative|real person|supervisor|manager|someone real|live person"
                         r"|(?:talk|speak) to (?:a|someone|somebody))\b")
_WORD = re.compile(r"[a-z']+")
_EXCLAIM_RUN = re.compile(r"!+")
_QUESTION_RUN = re.compile(r"\?+")
_PUNCT_RUN = re.compile(r"[!?]{2,}")
_vader = None


def vader():
    """The one VADER analyzer of the process (building it reads the lexicon: slow, so lazily once)."""
    global _vader
    if _vader is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _vader = SentimentIntensityAnalyzer()
    return _vader


def sentiment(text: str) -> dict[str, float]:
    s = vader().polarity_scores(text)
    return {"vader_compound": s["compound"], "vader_neg": s["neg"], "vader_pos": s["pos"]}


def longest_run(pattern: re.Pattern, text: str) -> int:
    return max((len(m) for m in pattern.findall(text)), default=0)


def shape_features(text: str) -> dict[str, float]:
    """How a message is written: length, capitals, ``!``/``?`` density and runs."""
    letters = [c for c in text if c.isalpha()]
    caps = sum(1 for c in letters if c.isupper()) / len(letters) if letters else 0.0
    words = text.split()
    loud = sum(1 for w in words if len(w) >= 2 and w.isupper() and any(c.isalpha() for c in w))
    n = max(len(text), 1)
    return {
        "length_log": log1p(len(text)),
        "words_log": log1p(len(words)),
        "caps_share": caps,
        "caps_words": float(loud),
        "exclaim_density": text.count("!") / n,
        "question_density": text.count("?") / n,
        "exclaim_run": float(longest_run(_EXCLAIM_RUN, text)),
        "question_run": float(longest_run(_QUESTION_RUN, text)),
        "punct_runs": float(len(_PUNCT_RUN.findall(text))),
    }


def word_features(text: str) -> dict[str, float]:
    """Negative and profane word counts; whether the customer asks for a person."""
    lower = text.lower()
    tokens = _WORD.findall(lower)
    return {
        "negative_words": float(sum(1 for t in tokens if t in NEGATIVE_WORDS)),
        "profane_words": float(sum(1 for t in tokens if t in PROFANE_WORDS)),
        "asks_human": 1.0 if _ASKS_HUMAN.search(lower) else 0.0,
    }


def context_features(ctx: dict) -> dict[str, float]:
    """The conversation around the message (from the state machine), on log scales."""
    since_reply = ctx.get("since_reply_s", -1.0)
    return {
        "no_reply_yet": 1.0 if since_reply is None or since_reply < 0 else 0.0,
        "since_reply_log": log1p(max(since_reply or 0.0, 0.0) / 60.0),
        "in_a_row": float(ctx.get("in_a_row", 1.0)),
        "conversation_age_log": log1p(max(ctx.get("conversation_age_s", 0.0), 0.0) / 60.0),
        "late_order_now": float(ctx.get("late_order_now", 0.0)),
        "contacts_7d": float(ctx.get("contacts_7d", 0.0)),
        "prior_bad_chats": float(ctx.get("prior_bad_chats", 0.0)),
    }


def support_context(history: History, now: int) -> dict[str, float]:
    """What History knows that matters in a chat: repeat contacts in the last 7 days (this
    conversation included), earlier bad outcomes."""
    return {"contacts_7d": float(history.contacts_within(now, 7 * DAY)),
            "prior_bad_chats": float(history.bad_chats)}


def message_features(text: str, ctx: dict) -> dict:
    """The frustration model's view of one customer message in its conversation: numbers, and
    under ``TEXT_KEY`` the text for the model's hashed n-grams (the customer's earlier lines that
    the state still holds, ``ctx["earlier_lines"]``, then this one)."""
    feats: dict = dict(_text_features(text))
    feats.update(context_features(ctx))
    earlier = ctx.get("earlier_lines")
    feats[TEXT_KEY] = " ".join((*earlier, text)) if earlier else text
    return feats


_TEXTS: dict[str, tuple] = {}  # text -> its own features (_text_features), the latest few hundred texts
TEXTS_KEPT = 512


def _text_features(text: str) -> tuple:
    """``(name, value)`` pairs of :func:`sentiment`, :func:`shape_features` and :func:`word_features`
    of ``text``, in that order. They read the text alone, and a customer message is read twice (the
    service fast path at arrival, the exact path ``lateness`` later): VADER runs once."""
    found = _TEXTS.get(text)
    if found is None:
        feats = sentiment(text)
        feats.update(shape_features(text))
        feats.update(word_features(text))
        if len(_TEXTS) >= TEXTS_KEPT:
            _TEXTS.clear()
        found = _TEXTS[text] = tuple(feats.items())
    return found

