"""One customer's life: habits, joining, sessions, experiences (parcels, searches, questions) that
lead to chats and problem sessions, and churn with a hazard that rises with bad experiences.

Events are ``(ts, seq, type, fields)`` tuples in ``Customer.ev`` (ms, not sorted)."""

from __future__ import annotations

import heapq
import math
import random
from typing import Any, Optional

from flows.generator.catalogue import Catalogue
from flows.generator.chats import ChatMixin
from flows.generator.consent import REMIND_COOLDOWN, SESSION_MIN_GAP, ConsentMixin
from flows.generator.market import Market, no_market
from flows.generator.orders import OrderMixin
from flows.generator.sessions import SessionMixin
from flows.generator.taste import TasteMixin
from flows.generator.texts import TOPIC
from flows.generator.timefmt import DAY, HOUR, MIN
from flows.generator.truth import CART_ACTIVITY

HISTORY_SHARE = 0.3  # customers existing at the start with an order before it
DORMANT_SHARE = 0.35  # of those: away 24-50 days after that order (win-back candidates)
# experience -> (bad, frustration, chat probability base, per help-seeking, problem-session probability)
_FEELINGS = {
    "late": (1.0, 0.35, 0.3, 0.5, 0.5),
    "lost": (1.8, 0.55, 0.55, 0.4, 0.7),
    "delay": (0.35, 0.15, 0.12, 0.3, 0.25),
    "return": (0.3, 0.1, 0.2, 0.4, 0.3),
    "refund": (0.2, 0.0, 0.0, 0.0, 0.0),
    "failed_search": (0.1, 0.05, 0.04, 0.2, 0.0),
}


class Customer(TasteMixin, ConsentMixin, SessionMixin, OrderMixin, ChatMixin):
    """One customer's life. ``run()`` fills ``ev`` and ``convs`` ((conversation_id, frustrated))."""

    def __init__(self, idx: int, seed: int, cat: Catalogue, start: int, end: int, market: Optional[Market] = None,
                 history: bool = True):
        self.idx = idx
        self.cid = f"c{idx:06d}"
        self.r = random.Random(seed * 1_000_003 + idx * 7919 + 17)
        self.cat = cat
        self.market = market or no_market(cat)
        self.start, self.end = start, end
        self.ev: list[tuple[int, int, str, dict]] = []
        self.seq = 0
        self.convs: list[tuple[str, bool]] = []  # (conversation_id, frustrated)
        self._habits()
        self._latent_state()
        self.cat_seed = seed
        self.dormant_until: Optional[int] = None
        past = self._plan_history() if history else None
        self.first_seen = self.join if past is None else past[1] - 20 * MIN  # signed up (consent) then bought
        self._consent()
        if past is not None:
            self._history(*past)

    def _habits(self) -> None:
        """Visit rate, segment, cart abandonment, help seeking, temper, churn base hazard, joining."""
        r = self.r
        self.vip = r.random() < 0.012
        if self.vip:
            self.rate = r.uniform(1.0, 2.2)
            self.segment = 2
            self.abandon = r.uniform(0.08, 0.25)
            self.shop = r.uniform(0.6, 0.8)
        else:
            self.rate = min(2.0, max(0.02, math.exp(r.gauss(math.log(0.3), 0.8))))
            self.segment = r.choices((0, 1, 2), (0.35, 0.45, 0.2))[0]
            self.abandon = r.betavariate(2.0, 2.6)
            self.shop = r.uniform(0.2, 0.55)
        self.help = r.betavariate(1.3, 10.0)
        self.irritability = r.betavariate(2.0, 4.0)
        self.prefs = [self._pick_cat(), self._pick_cat()]
        self.h0 = 0.0055 * (0.3 / self.rate) ** 0.8 * r.lognormvariate(0.0, 0.35)
        if self.vip:
            self.h0 *= 0.15
        # joining: most customers already exist at the start, the others join over time
        if r.random() < 0.72:
            self.join = self.start
            self.new = False
        else:
            self.join = self.start + int(r.random() * max(DAY, self.end - self.start - DAY))
            self.new = True

    def _latent_state(self) -> None:
        r = self.r
        self.bad = 0.0
        self.sat = 0.0
        self.frus = 0.0
        self.t_state = self.join
        self.fade_end: Optional[int] = None
        self.cart: dict[int, list] = {}  # product -> [quantity, price]
        self.viewed: list[int] = []
        # (product, from_ts, until_ts): complements of bought items, consumables running out
        self.wish: list[tuple[int, int, int]] = []
        self.pending: list[tuple[int, int, str, Any]] = []  # experiences heap
        self.forced: list[int] = []  # forced session times (after problems)
        self.problem_flag = False
        self.n_orders = 0
        self.n_sessions = 0
        self.n_convs = 0
        self.late_count = 0
        # item-level taste: favourite brands (how loyal) and price tier inside any category
        self.brands = [self.cat.pick_brand(r), self.cat.pick_brand(r)]
        self.loyal = r.uniform(0.3, 0.85)
        self.tier = self.segment
        self.mission: Optional[list] = None  # [anchor product, until_ts]: what the customer is shopping for
        self.now = self.start
        self.cart_ts: Optional[int] = None  # the latest cart activity
        self.nudged = False  # the next session is a return for the reminded cart
        self.last_reminder = -REMIND_COOLDOWN

    def _plan_history(self) -> Optional[tuple[random.Random, int]]:
        """Own random stream: some customers who exist at the start bought before it (their last
        order up to 45 days back is in the log, as a shop's backfill). Returns (stream, order ts)."""
        rh = random.Random(self.idx * 7_368_787 + self.cat_seed * 3_000_017 + 5)
        if self.new or rh.random() >= HISTORY_SHARE:
            return None
        day = self.start - int(rh.uniform(1, 46)) * DAY
        return rh, day + int(rh.uniform(8, 21) * HOUR)

    def _history(self, rh: random.Random, t0: int) -> None:
        """The backfilled order; some of these customers stay away 24-50 days after it before
        they come back (or never do)."""
        p = self.cat.pick_in(rh, self.prefs[0])
        self.past_order(rh, t0, p)
        if rh.random() < DORMANT_SHARE:
            self.dormant_until = t0 + int(rh.uniform(24, 50) * DAY)

    def emit(self, ts: int, etype: str, fields: dict) -> None:
        self.ev.append((ts, self.seq, etype, fields))
        self.seq += 1
        if etype in CART_ACTIVITY:
            self.cart_ts = ts

    def _decay(self, ts: int) -> None:
        dt = (ts - self.t_state) / DAY
        if dt > 0:
            self.bad *= math.exp(-dt / 25.0)
            self.sat *= math.exp(-dt / 40.0)
            self.frus *= math.exp(-dt / 5.0)
            self.t_state = ts

    def hazard(self, ts: int) -> float:
        h = self.h0 * math.exp(0.7 * self.bad - 0.3 * min(self.sat, 3.0))
        if self.new and ts - self.join < 14 * DAY:
            h *= 1.6
        return h

    # ---------------------------------------------------------------- life
    def run(self) -> None:
        """Sessions until the end (no session starts in the last 3 h: abandoned carts stay
        decidable) or until the customer has faded away after deciding to churn."""
        r = self.r
        cutoff = self.end - 3 * HOUR
        t = self.join if self.new else self.start + int(r.expovariate(self.rate) * DAY * 0.7)
        if self.dormant_until is not None:
            t = max(t, self.dormant_until)
        last_end = self.start - DAY
        last_check = self.join
        while True:
            t = self._live_until(t, last_end)
            if self.forced and self.forced[0] <= t:
                self.forced.pop(0)
                problem = True
            else:
                problem = False
            last_check = self._churn_check(t, last_check)
            if t >= cutoff or (self.fade_end is not None and t >= self.fade_end):
                break
            last_end = self.session(t, problem)
            t = self._next_session(last_end)
        self._wrap_up()

    def _earlier_forced(self, t: int, last_end: int) -> int:
        """A forced session (after a problem) can come before the natural one at ``t``."""
        if self.forced:
            ft = max(self.forced[0], last_end + SESSION_MIN_GAP)
            if ft < t:
                t = ft
        return t

    def _live_until(self, t: int, last_end: int) -> int:
        """Experiences that happen before the session at ``t``; returns the session time (which a
        problem may bring forward)."""
        t = self._earlier_forced(t, last_end)
        while self.pending and self.pending[0][0] <= t:
            ets, _s, kind, data = heapq.heappop(self.pending)
            if self.fade_end is not None and ets > self.fade_end:
                continue
            self.experience(ets, kind, data)
            t = self._earlier_forced(t, last_end)
        return t

    def _churn_check(self, t: int, last_check: int) -> int:
        """Churn hazard between the last check and ``t``: a churner fades out over 5-18 days."""
        if self.fade_end is None and t > last_check:
            self._decay(t)
            dt = (t - last_check) / DAY
            if self.r.random() < 1.0 - math.exp(-self.hazard(t) * dt):
                decide = last_check + int(self.r.random() * (t - last_check))
                self.fade_end = decide + int(self.r.uniform(5.0, 18.0) * DAY)
            return t
        return last_check

    def _next_session(self, last_end: int) -> int:
        """The next natural session's start: sooner while something is wanted, rarely at night,
        earlier when a reminder brings the customer back for the cart."""
        r = self.r
        cart_after = bool(self.cart)
        rate = self.rate
        if self.fade_end is not None:
            rate *= 0.25
        if any(w[1] <= last_end for w in self.wish) and r.random() < 0.5:
            gap = int(r.uniform(0.3, 3.0) * DAY)
        else:
            gap = int(r.expovariate(rate) * DAY)
        t = last_end + max(SESSION_MIN_GAP, gap)
        hour = (t % DAY) / HOUR
        if hour < 7.0 and r.random() < 0.85:
            t += int((7.0 - hour + r.random() * 14.0) * HOUR)
        if cart_after:
            t = self._remind(last_end, t)
        return t

    def _wrap_up(self) -> None:
        if self.fade_end is not None:  # gone: they do not come back to revoke consent either
            self.ev = [e for e in self.ev if e[2] != "consent_updated" or e[0] <= self.fade_end]
        # remaining experiences still produce chats while the customer is around
        stop = self.end if self.fade_end is None else min(self.end, self.fade_end)
        while self.pending and self.pending[0][0] < stop:
            ets, _s, kind, data = heapq.heappop(self.pending)
            self.experience(ets, kind, data, sessions=False)

    # ---------------------------------------------------------------- experiences
    def push(self, ts: int, kind: str, data: Any = None) -> None:
        heapq.heappush(self.pending, (ts, self.seq, kind, data))
        self.seq += 1

    def experience(self, ts: int, kind: str, data: Any, sessions: bool = True) -> None:
        """Something happens to the customer at ``ts`` (a late or lost parcel, a delivery, a failed
        search, a question): mood changes, maybe a chat, maybe a problem session soon."""
        r = self.r
        self._decay(ts)
        chat_p, problem_p = self._feel(kind)
        if chat_p and r.random() < chat_p:
            ct = ts if kind == "question" else ts + int(r.uniform(2 * MIN, 5 * HOUR))
            hour = (ct % DAY) / HOUR
            if hour < 7.0 and r.random() < 0.8:
                ct += int((7.0 - hour + r.random() * 4.0) * HOUR)
            self.chat(ct, TOPIC[kind], data)
        if sessions and problem_p and r.random() < problem_p:
            self.problem_flag = True
            self.forced.append(ts + int(r.uniform(5 * MIN, 8 * HOUR)))
            self.forced.sort()

    def _feel(self, kind: str) -> tuple[float, float]:
        """Mood change of an experience; returns (chat probability, problem-session probability)."""
        if kind == "late":
            self.late_count += 1
        if kind == "delivered":
            self.bad = max(0.0, self.bad - 0.35)
            self.sat += 0.3
        elif kind == "question":
            self.frus = min(self.frus, 1.5)
            return 1.0, 0.0
        elif kind in _FEELINGS:
            bad, frus, chat0, chat_help, problem_p = _FEELINGS[kind]
            self.bad += bad
            self.frus += frus
            self.frus = min(self.frus, 1.5)
            return (chat0 + chat_help * self.help if chat0 else 0.0), problem_p
        self.frus = min(self.frus, 1.5)
        return 0.0, 0.0
