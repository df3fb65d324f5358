"""One customer's state machine: the functional core behind the ``profile`` step.

``process(event)`` takes an event and returns what it caused; ``advance(now)`` moves the
customer's event-time frontier to ``now - lateness``; ``flush(now)`` applies everything still
held and fires the timers due at or before ``now`` (end of input); ``next_deadline()`` says at
which ``now`` advance has work. No Bytewax, Kafka or Redis here: the shell adapts these verbs.

Arrival order within ``lateness`` does not matter (CONTRACT.md, Time): an event goes into a
per-customer reorder buffer and is applied once the customer's clock (the latest event time seen)
is ``lateness`` past it, in ``(ts, event_id)`` order. Timers fire when that frontier has passed
their due time, interleaved with the buffered events in event time: timers due strictly before an
event's ``ts`` fire first (an activity exactly at the due time still counts as "within"). The
service fast path (``cfg.fast_service``) sends an escalation asked for in words, and a carrier's
delay apology, at arrival instead; the exact path then only confirms it.

The triggers are rules (``operators/ruleset.py``, the contract's in ``operators/contract_rules.py``):
an event first updates the shared facts kept here, then goes to the rules listening to its type;
the timer scan asks the timed rules first (in ``rules.enabled`` order), then the models' own
timers. State is pickled with :data:`STATE_VERSION`; older versions are upgraded on load.
"""

from __future__ import annotations

import json
import logging
from array import array
from bisect import insort
from sys import intern
from typing import Any, Optional

import orjson

from operators.dedup import SeenIds
from operators.events import (CART_ACTIVITY, CHAT_TYPES, CLICKSTREAM_TYPES, ORDER_TYPES, PROFILE_TYPES, DeadLetter,
                              Event,
                              format_ts, parse_ts)
from operators.features import History, churn_features, churn_horizon, message_features, support_context
from operators.rules import RuleConfig
from operators.ruleset import NEVER
from operators.messages import Label, Notice, PairMsg, pair_messages, ProfileUpdate, RecsEval, ScoreRequest
from operators import pending
from operators.pending import Names, _names, pack_features, unpack_features  # noqa: F401 (older pickles name _names here)
from operators.recs import DEFAULT as RECS_DEFAULT, RecentItems, RecsConfig
from operators.text import cut
from operators.units import DAY, HOUR

STATE_VERSION = 2  # 1: a positional tuple of the slots below as they were before rules (V1_SLOTS)

OK, LATE, DUPLICATE = "ok", "late", "duplicate"
FAST_REASONS = frozenset({"human_requested", "carrier_reported"})  # what the service fast path sends
_FAST_TYPES = frozenset({"chat_message", "order_delayed"})  # the only types the fast path reads
log = logging.getLogger("crm.customer")
MAX_MONEY = 1e30  # a bound on sums of money: past any bounded amount x quantity, far from overflow


class _Empty(dict):
    """The one empty mapping customers start with: most never fill their conversations, and many
    have no open order or cart, while an empty dict costs 64 bytes each. It refuses writes (a
    code path that forgot to make its own dict fails loudly instead of sharing state)."""

    __slots__ = ()

    def _refuse(self, *args, **kwargs):
        raise TypeError("the shared empty mapping is read-only: assign a new dict first")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):
        return (_empty, ())


EMPTY: dict = _Empty()
EMPTY_HEAP = ()  # the empty reorder buffer of every customer (a list is made for the first event held)


def _empty() -> dict:
    return EMPTY


class Order:
    """An open order. Split shipments: ``parcels`` maps ``shipment_id`` -> delivered; ``ordered`` and
    ``delivered_qty`` count item quantities when events list items (None: not known)."""

    __slots__ = ("order_id", "placed_ts", "promised", "total", "status", "apologized", "parcels", "ordered",
                 "delivered_qty")

    def __init__(self, order_id: str, placed_ts: Optional[int], promised: Optional[int], total: Optional[float]):
        self.order_id = order_id
        self.placed_ts = placed_ts
        self.promised = promised
        self.total = total
        self.status = "placed"
        self.apologized = False
        self.parcels: dict[str, bool] = EMPTY
        self.ordered: Optional[int] = None
        self.delivered_qty = 0

    def __getstate__(self):
        return (self.order_id, self.placed_ts, self.promised, self.total, self.status, self.apologized,
                self.parcels, self.ordered, self.delivered_qty)

    def __setstate__(self, s):
        (self.order_id, self.placed_ts, self.promised, self.total, self.status, self.apologized,
         self.parcels, self.ordered, self.delivered_qty) = s

    def deliver(self, shipment_id: Optional[str], quantity: Optional[int]) -> bool:
        """Record a delivery; True when the whole order has arrived (a delivery without
        ``shipment_id`` is the whole order; with one, every parcel known and every item ordered)."""
        if shipment_id is None:
            return True
        if self.parcels is EMPTY:
            self.parcels = {}
        self.parcels[shipment_id] = True
        if quantity is not None:
            self.delivered_qty += quantity
        if self.ordered is not None and quantity is not None:
            return self.delivered_qty >= self.ordered and all(self.parcels.values())
        return all(self.parcels.values())

    def ship(self, shipment_id: Optional[str]) -> None:
        if shipment_id is not None and shipment_id not in self.parcels:
            if self.parcels is EMPTY:
                self.parcels = {}
            self.parcels[shipment_id] = False


class Conversation:
    __slots__ = ("conversation_id", "started", "last_msg", "last_reply", "run", "messages", "escalated",
                 "pending", "key")

    def __init__(self, conversation_id: str, ts: int, key: Optional[str] = None):
        self.conversation_id = conversation_id
        self.key = key or conversation_id  # the episode: a conversation written to after its close reopens
        self.started = ts
        self.last_msg = ts
        self.last_reply: Optional[int] = None
        self.run: list[int] = []  # ts of customer messages since the last agent/bot reply
        self.messages: list[tuple[str, str, int]] = []  # last few (sender, text, ts)
        self.escalated = False
        self.pending: list[tuple[str, int, dict]] = []  # frustration decisions awaiting the outcome

    def __getstate__(self):
        return (self.conversation_id, self.started, self.last_msg, self.last_reply, self.run, self.messages,
                self.escalated, self.pending, self.key)

    def __setstate__(self, s):
        (self.conversation_id, self.started, self.last_msg, self.last_reply, self.run, self.messages,
         self.escalated, self.pending, self.key) = s


class CustomerState:
    """Everything the engine keeps about one customer (picklable: it is Bytewax state)."""

    __slots__ = (
        "customer_id", "clock", "first_seen", "last_seen", "seen", "prune_at",
        "cart", "cart_last", "currency",
        "orders", "closed", "order_count", "spend",
        "convs", "session_last",
        "churn_pending", "rescore_n", "history", "dirty", "due", "recent",
        "held", "fast", "last_order", "cart_currency", "slices",
    )

    def __init__(self, customer_id: str, cfg_recs: RecsConfig = RECS_DEFAULT):
        self.customer_id = customer_id
        self.clock: Optional[int] = None
        self.first_seen: Optional[int] = None
        self.last_seen: Optional[int] = None
        self.seen = SeenIds()  # event ids -> ts, for the 7-day duplicate window
        self.prune_at = 0
        self.cart: dict[str, list] = EMPTY  # product_id -> [quantity, price]
        self.cart_last: Optional[int] = None
        self.currency: Optional[str] = None
        self.orders: dict[str, Order] = EMPTY
        self.closed: dict[str, int] = {}  # closed order/conversation ids -> close ts (no re-open)
        self.order_count = 0
        self.spend = 0.0
        self.convs: dict[str, Conversation] = EMPTY
        self.session_last: Optional[int] = None  # last clickstream ts of the open session
        # decisions awaiting their label (operators.pending entries) in due order; a tuple, as most customers have
        # none pending (the empty tuple is shared, an empty list costs 56 bytes each)
        self.churn_pending: tuple[pending.Entry, ...] = ()
        self.rescore_n = 0
        self.history = History()
        self.dirty = False
        self.due = NEVER  # the next timer's due time, kept by advance() (saves a scan per event)
        self.recent = RecentItems(cfg_recs)  # products of the open session and recent purchases
        # reorder buffer: (ts, event_id, Event) not yet applied, sorted by (ts, event_id) (so also a heap, as
        # it was; ids are unique within the duplicate window, so the order is strict); shared when empty
        self.held: list = EMPTY_HEAP
        self.fast: dict = EMPTY  # (type, key) -> event ts of service triggers sent by the fast path
        self.last_order: Optional[int] = None  # ts of the latest order_placed (purchase quiet period)
        self.cart_currency: dict = EMPTY  # product_id -> currency code of its cart line, when known
        self.slices: dict = EMPTY  # rule name -> its state (operators.ruleset), made at the rule's first event

    def __getstate__(self):
        """(STATE_VERSION, the shared facts in slot order, {rule name: slice}): slices go by name,
        so a rule added or switched off later resumes with fresh state or is ignored."""
        facts = tuple(getattr(self, s) for s in self.__slots__[:-1])
        if self.churn_pending:  # (packed entries hold this worker's layout indexes: a snapshot carries the names)
            facts = facts[:_PENDING] + (pending.portable(self.churn_pending),) + facts[_PENDING + 1:]
        return STATE_VERSION, facts, self.slices

    def __setstate__(self, state):
        if type(state[0]) is not int:  # version 1 (before rules): the old slots, positional
            state = _upgrade_v1(state)
        _, facts, self.slices = state
        for s, v in zip(self.__slots__, facts):
            setattr(self, s, v)
        self.held = sorted(self.held, key=_held_order) if self.held else EMPTY_HEAP  # (older snapshots: a heap)
        if self.churn_pending:  # the worker's layout indexes (and entries packed, if the snapshot is older)
            self.churn_pending = pending.resume(self.churn_pending, self.customer_id)

    def slice(self, rule) -> Any:
        """``rule``'s state for this customer (made fresh the first time it is asked for)."""
        s = self.slices.get(rule.name)
        if s is None:
            s = rule.new_slice()
            if s is not None:
                if self.slices is EMPTY:
                    self.slices = {}
                self.slices[rule.name] = s
        return s

    def _drop_quiet_slices(self, cfg: RuleConfig) -> None:
        """Forget the slices their rule says are quiet (``Rule.quiet``: such a slice behaves as a
        fresh one, which :meth:`slice` makes when the rule next needs one): most customers' cart
        episode ends, and a dict and a slice cost some 300 bytes."""
        if not self.slices:
            return
        named = cfg.named
        if not any(k in named and named[k].quiet(self, s) for k, s in self.slices.items()):
            return  # (most calls: nothing to drop, the dict stays)
        keep = {k: s for k, s in self.slices.items() if k not in named or not named[k].quiet(self, s)}
        if len(keep) < len(self.slices):
            self.slices = keep or EMPTY

    # ------------------------------------------------------------------ the three verbs

    def process(self, ev: Event, cfg: RuleConfig, cap: Optional[int] = None) -> tuple[list, str]:
        """Take one event; return (outputs, status) with status ok / late / duplicate.

        A late event (older than ``clock - lateness``) is applied at once and never arms a
        trigger; any other is held until the frontier passes it (module docstring). ``cap`` (live,
        the input watermark: no input can still bring anything much older) bounds the clock the
        frontier follows, so an event a lagging input still brings is not late."""
        ts = ev.ts
        if not self.seen.admit(ev.event_id, ts, cfg.dedup_window):
            return [], DUPLICATE
        out: list = []
        clock = self.clock
        if clock is None:
            clock = self.clock = ts
        # an id reused 7+ days apart keeps its latest ts (admit): an older reuse must not make a repeat of the newer one new
        late = ts < (clock if cap is None or clock < cap else cap) - cfg.lateness
        if late:
            self._apply(ev, True, cfg, out)
            self.due = -NEVER  # it may have changed a timer: the next advance recomputes
        else:
            if ts > clock:
                clock = self.clock = ts
                now = ts if cap is None or ts < cap else cap
                if now >= self.due:  # what the new clock lets out comes before this event
                    self._release(now - cfg.lateness, False, cfg, out)
            if cfg.fast_service and ev.type in _FAST_TYPES:
                self._fast_service(ev, cfg, out)
            held, item = self.held, (ts, ev.event_id, ev)
            if not held:
                self.held = [item]
            elif held[-1][0] < ts or (held[-1][0] == ts and held[-1][1] < ev.event_id):
                held.append(item)  # the usual case: after everything held
            else:
                insort(held, item, key=_held_order)
            if ts + cfg.lateness < self.due:
                self.due = ts + cfg.lateness
        clock = self.clock
        now = clock if cap is None or clock < cap else cap
        if now >= self.due:  # (advance, inline: most events find nothing due)
            self._release(now - cfg.lateness, False, cfg, out)
        if clock >= self.prune_at:
            self._prune(cfg)
        self.dirty = True
        return out, LATE if late else OK

    def next_deadline(self, cfg: RuleConfig) -> Optional[int]:
        """The ``now`` at which :meth:`advance` has work (``None``: nothing held, no timer)."""
        return None if self.due >= NEVER else self.due

    def advance(self, now: int, cfg: RuleConfig, out: Optional[list] = None) -> list:
        """Move the frontier to ``now - lateness``: apply held events up to it and fire timers
        due strictly before it, in event-time order. ``due`` (the least ``now`` with work, kept
        by :meth:`_release` and :meth:`process`) spares the timer scan when nothing can happen."""
        out = [] if out is None else out
        if now >= self.due:
            self._release(now - cfg.lateness, False, cfg, out)
        return out

    def flush(self, now: Optional[int], cfg: RuleConfig, out: Optional[list] = None) -> list:
        """End of input: apply every held event (nothing earlier can come), then fire the timers
        due at or before ``now`` (at least the latest event time; ``None``: only those due before
        the last event applied)."""
        out = [] if out is None else out
        if self.held:
            self._release(max(h[0] for h in self.held), False, cfg, out)
        if now is not None:
            self._release(now, True, cfg, out)
        return out

    def _release(self, frontier: int, inclusive: bool, cfg: RuleConfig, out: list) -> None:
        held = self.held
        while True:
            due, fire = self._next_timer(cfg)
            if held and held[0][0] <= frontier and due >= held[0][0]:
                ev = held.pop(0)[2]  # (sorted: the heap's least, without the sift)
                try:  # (_apply_safely, inline: once per event)
                    self._apply(ev, False, cfg, out)
                except Exception as exc:
                    self._failed(ev, exc, out)
            elif due < frontier or (inclusive and due == frontier):
                if type(fire) is tuple:  # a rule's timer: (rule, its slice)
                    fire[0].on_timer(self, fire[1], due, cfg, out)
                    self._drop_quiet_slices(cfg)
                else:  # one of this class's _fire_* functions
                    fire(self, due, cfg, out)
            else:
                break
            self.dirty = True
        nxt = due + cfg.lateness + 1 if due < NEVER else NEVER
        if held and held[0][0] + cfg.lateness < nxt:
            nxt = held[0][0] + cfg.lateness
        elif not held:
            self.held = EMPTY_HEAP
        self.due = nxt

    def _apply_safely(self, ev: Event, cfg: RuleConfig, out: list) -> None:
        """A bug must cost one event, not the flow: the event becomes a ``processing_error`` dead
        letter (its source in the log line, never its content) and the customer goes on."""
        try:
            self._apply(ev, False, cfg, out)
        except Exception as exc:
            self._failed(ev, exc, out)

    @staticmethod
    def _failed(ev: Event, exc: Exception, out: list) -> None:
        log.exception("processing %s failed", ev.source)
        out.append(DeadLetter(_raw(ev), ev.source, "processing_error", f"{type(exc).__name__}: {exc}"[:200]))

    def absorb(self, other: "CustomerState", cfg: RuleConfig) -> None:
        """Identity (CONTRACT.md): take ``other``'s open state, a guest's identified as this customer.

        Cart lines add up (quantities; the price of the later cart), and the cart episode runs on
        if either ran; open orders, conversations, pending churn decisions, held events, recent
        products and purchases join; clocks and first/last seen widen; spend and order count add.
        ``other`` is spent afterwards (its dicts may now be shared). Pure: no outputs, no timers
        fire (the next :meth:`advance` fires what is due)."""
        if other.cart:
            later = other.cart_last is not None and (self.cart_last is None or other.cart_last >= self.cart_last)
            cart = self.cart = dict(self.cart)
            for pid, (qty, price) in other.cart.items():
                line = cart.get(pid)
                if line is None:
                    cart[pid] = [qty, price]
                else:
                    line[0] += qty
                    if later:
                        line[1] = price
            if other.cart_currency:
                self.cart_currency = {**other.cart_currency, **self.cart_currency}
            self.cart_last = _latest(self.cart_last, other.cart_last)
        self.currency = self.currency or other.currency
        for name in ("orders", "convs", "fast"):
            theirs = getattr(other, name)
            if theirs:
                setattr(self, name, {**theirs, **getattr(self, name)})
        self.closed = {**other.closed, **self.closed}
        self.order_count += other.order_count
        self.spend = _finite(self.spend + other.spend)
        self._absorb_slices(other)
        theirs = tuple(pending.rebase(e, other.customer_id, self.customer_id) for e in other.churn_pending)
        self.churn_pending = tuple(sorted(self.churn_pending + theirs, key=pending.key))
        if other.held:  # sorted is a heap; by (ts, event_id) only: Events do not compare
            self.held = sorted([*self.held, *other.held], key=_held_order)
        mine, theirs = self.recent, other.recent
        for pid, ts in sorted(zip(theirs.recent + mine.recent, list(theirs.recent_ts) + list(mine.recent_ts)),
                              key=lambda p: p[1]):
            mine._touch(pid, ts)
        if theirs.bought and not mine.bought:
            mine.bought, mine.bought_ts = [], array("q")
        for pid, ts in zip(theirs.bought, theirs.bought_ts):
            mine.bought.append(pid)
            mine.bought_ts.append(ts)
        self.clock = _latest(self.clock, other.clock)
        self.session_last = _latest(self.session_last, other.session_last)
        self.last_order = _latest(self.last_order, other.last_order)
        self.last_seen = _latest(self.last_seen, other.last_seen)
        if other.first_seen is not None and (self.first_seen is None or other.first_seen < self.first_seen):
            self.first_seen = other.first_seen
        self.dirty = True
        self._release(-NEVER, False, cfg, [])  # applies nothing, fires nothing: recomputes ``due``

    def _absorb_slices(self, other: "CustomerState") -> None:
        """The rules' state slices of ``other`` join this customer's: a slice only the guest has is
        taken over; the cart episode runs on if either ran; help views add up (by ts); a slice
        with an ``absorb`` method (declared rules' episodes) merges itself."""
        for name, theirs in other.slices.items():
            mine = self.slices.get(name)
            if mine is None:
                if self.slices is EMPTY:
                    self.slices = {}
                self.slices[name] = theirs
            elif hasattr(mine, "absorb"):
                mine.absorb(theirs)
            elif hasattr(mine, "armed"):
                mine.armed = mine.armed or theirs.armed
            elif hasattr(mine, "views"):
                mine.views = sorted(mine.views + theirs.views)

    # ------------------------------------------------------------------ timers

    def _next_timer(self, cfg: RuleConfig):
        """(the earliest due time over the rules' timers and the models' own, what fires it: a
        rule's ``(rule, slice)`` or one of the ``_fire_*`` functions); a tie goes to the rules (in
        ``rules.enabled`` order), then session end, conversation abandoned, churn label, rescore."""
        best, fire = NEVER, None
        slices = self.slices
        for rule in cfg.timed_rules:
            s = slices.get(rule.name)
            due = rule.next_due(self, s, cfg)
            if due < best:
                best, fire = due, (rule, s)
        t = self.session_last
        if t is not None and t + cfg.session_gap < best:
            best, fire = t + cfg.session_gap, CustomerState._fire_session_end
        if self.convs:
            for conv in self.convs.values():
                if conv.last_msg + cfg.conversation_abandoned < best:
                    best, fire = conv.last_msg + cfg.conversation_abandoned, CustomerState._fire_conversation_abandoned
        if self.churn_pending:
            t = pending.due(self.churn_pending[0])
            if t < best:
                best, fire = t, CustomerState._fire_churned
        # inactive: a decision point every rescore_every within the horizon; live, the profile's
        # score is also refreshed every refresh_every for as long as the customer stays away
        last = self.last_seen
        if last is not None:
            rescore = last + (cfg.churn_refresh or cfg.rescore_every) * (self.rescore_n + 1)
            if rescore < best and (cfg.churn_refresh or rescore - last < cfg.churn_horizon):
                best, fire = rescore, CustomerState._fire_rescore
        return best, fire

    def _fire_session_end(self, due: int, cfg: RuleConfig, out: list) -> None:
        self.session_last = None
        self.history.sessions += 1
        out.extend(pair_messages(self.recent.flush()))  # the session's co-views for the product keys
        self._churn_decision(due, "session_end", cfg, out)
        self._drop_quiet_slices(cfg)

    def _fire_rescore(self, due: int, cfg: RuleConfig, out: list) -> None:
        self.rescore_n += 1
        away = due - self.last_seen
        if away % cfg.rescore_every == 0 and away < cfg.churn_horizon:
            self._churn_decision(due, "inactive", cfg, out)
        elif self.clock <= due:  # (a refresh the customer's return has already overtaken is moot)
            out.append(self.churn_refresh(due, cfg))

    def churn_refresh(self, ts: int, cfg: RuleConfig) -> ScoreRequest:
        """A payload-only churn score at ``ts`` for the profile (no label, no trigger): live while
        the customer stays away, and at the end of a replay, so the profile describes them now."""
        feats = churn_features(self, ts)
        feats["_horizon_days"] = self._churn_horizon(ts, cfg) / DAY
        return ScoreRequest("churn", self.customer_id, f"refresh|{ts}", ts, feats, None, decision=False)

    def _churn_horizon(self, ts: int, cfg: RuleConfig) -> int:
        return churn_horizon(self.history, self.first_seen, ts, cfg.churn_horizon_min, cfg.churn_horizon,
                             cfg.churn_horizon_gaps)

    def _fire_churned(self, due: int, cfg: RuleConfig, out: list) -> None:
        while self.churn_pending and pending.due(self.churn_pending[0]) <= due:
            decision_id, ts, feats, _ = pending.unpack(self.churn_pending[0], self.customer_id)
            self.churn_pending = self.churn_pending[1:]
            out.append(Label("churn", self.customer_id, decision_id, due, feats, 1, ts))

    def _fire_conversation_abandoned(self, due: int, cfg: RuleConfig, out: list) -> None:
        conv = min((c for c in self.convs.values()), key=lambda c: (c.last_msg, c.conversation_id))
        self._close_conversation(conv, due, 1, out)

    # ------------------------------------------------------------------ applying events

    def _apply(self, ev: Event, late: bool, cfg: RuleConfig, out: list) -> None:
        t, ts = ev.type, ev.ts
        if t in PROFILE_TYPES:  # consent is for policy (operators.contact): not activity, no rule
            return
        if self.last_seen is None:
            self.first_seen = self.last_seen = ts
        if ts > self.last_seen:
            self.last_seen = ts
            self.rescore_n = 0
        if ts < self.first_seen:
            self.first_seen = ts
        self.history.observe(ev, cfg.session_gap)
        if self.churn_pending:
            self._churn_returned(ts, out)
        if t in CLICKSTREAM_TYPES:  # (most events: the click step inline)
            if not late and (self.session_last is None or ts > self.session_last):
                self.session_last = ts
            if t == "product_view" or t == "add_to_cart":
                data = ev.data
                blocks = self.recent.observe_one(t, data.get("product_id"), data.get("session_id"), ts)
                if blocks:
                    out.append(PairMsg(tuple(blocks)))  # (pair_messages of a non-empty list)
            if t in CART_ACTIVITY:
                self._apply_cart(ev)
        elif t in ORDER_TYPES:
            self._apply_order(ev, late, cfg, out)
        elif t in CHAT_TYPES:  # profile-topic types (erasure_requested) are the flow's; identify only moves the clock
            self._apply_chat(ev, late, cfg, out)
        rules = cfg.listeners.get(t)
        if rules is not None:  # the rules listening to this type, after the shared facts took it
            for rule in rules:
                rule.on_event(self, self.slice(rule), ev, late, cfg, out)

    def _apply_cart(self, ev: Event) -> None:
        t, ts = ev.type, ev.ts
        pid = ev.get("product_id")
        qty = ev.get("quantity", 1)
        if t == "add_to_cart":
            line = self.cart.get(pid)
            if line is None:
                if self.cart is EMPTY:
                    self.cart = {}
                self.cart[intern(pid)] = [qty, ev.get("price")]
            else:
                line[0] += qty
                line[1] = ev.get("price")
            currency = ev.get("currency")
            if currency and isinstance(currency, str):
                self.currency = currency
                if self.cart_currency is EMPTY:
                    self.cart_currency = {}
                self.cart_currency[pid] = currency
        elif t == "remove_from_cart" and pid in self.cart:
            line = self.cart[pid]
            line[0] -= qty
            if line[0] <= 0:
                self._drop_line(pid)
        if not self.cart:
            self.cart_last = None  # emptied (the abandoned_cart rule ends its episode)
            return
        if self.cart_last is None or ts > self.cart_last:
            self.cart_last = ts

    def _apply_order(self, ev: Event, late: bool, cfg: RuleConfig, out: list) -> None:
        t, oid = ev.type, ev.get("order_id")
        if t == "order_placed":
            self._place_order(ev, late, cfg, out)
            return
        if "o:" + oid in self.closed or t in ("return_requested", "refund_issued"):
            return
        order = self.orders.get(oid)
        promised_ms = _parse_optional_ts(ev.get("promised_delivery_ts"))
        if order is None:  # an order seen first through a later lifecycle event (placed comes late)
            if self.orders is EMPTY:
                self.orders = {}
            order = self.orders[oid] = Order(oid, None, promised_ms, ev.get("total"))
        if promised_ms is not None and t in ("order_shipped", "order_delayed"):
            order.promised = promised_ms
        shipment = ev.get("shipment_id")
        if t == "order_cancelled" or (t == "order_delivered" and order.deliver(shipment, _quantity(ev))):
            if order.apologized and t == "order_delivered":
                self.history.late_orders += 1
            self.closed["o:" + oid] = ev.ts
            del self.orders[oid]
            if not self.orders:
                self.orders = EMPTY
            return
        if t == "order_delivered":
            order.status = "partly_delivered"
            return
        order.ship(shipment if t == "order_shipped" else None)
        order.status = "delayed" if t == "order_delayed" else "shipped"

    def _place_order(self, ev: Event, late: bool, cfg: RuleConfig, out: list) -> None:
        """The purchase: counted once per ``order_id`` whenever it arrives (late, or after the
        order's lifecycle events); it empties the cart and is a churn decision point."""
        ts, oid = ev.ts, ev.get("order_id")
        order = self.orders.get(oid)
        items = ev.get("items") or ()
        bought = [i["product_id"] for i in items] or list(self.cart)
        if "p:" + oid not in self.closed:
            self.closed["p:" + oid] = ts
            out.append(self._recs_eval(bought, ts))  # scored before anything learns from it
            out.extend(pair_messages(self.recent.observe("order_placed", bought, None, ts)))
            total = _finite(ev.get("total"))
            self.order_count += 1
            self.spend = _finite(self.spend + total)
            if "o:" + oid not in self.closed:
                promised_ms = _parse_optional_ts(ev.get("promised_delivery_ts"))
                if order is None:
                    if self.orders is EMPTY:
                        self.orders = {}
                    order = self.orders[oid] = Order(oid, ts, promised_ms, total)
                else:  # lifecycle events came first: the purchase fills in what they lacked
                    order.placed_ts, order.total = ts, total
                    if order.promised is None:
                        order.promised = promised_ms
                if items:
                    order.ordered = sum(_quantity_of(i) for i in items)
        if late and items:  # a late purchase takes what it bought out of today's cart, no more
            for pid in bought:
                self._drop_line(pid)
        elif not late or self.cart_last is None or self.cart_last <= ts:
            self.cart, self.cart_currency = EMPTY, EMPTY
        if not self.cart:
            self.cart_last = None
        if self.last_order is None or ts > self.last_order:
            self.last_order = ts
        out.append(Notice("order_placed", self.customer_id, ts, oid))
        self._churn_decision(ts, "order_placed", cfg, out)

    def _drop_line(self, pid: str) -> None:
        if pid in self.cart:
            del self.cart[pid]
            if not self.cart:
                self.cart = EMPTY
        if pid in self.cart_currency:
            del self.cart_currency[pid]
            if not self.cart_currency:
                self.cart_currency = EMPTY

    def _apply_chat(self, ev: Event, late: bool, cfg: RuleConfig, out: list) -> None:
        t, ts, cid = ev.type, ev.ts, ev.get("conversation_id")
        closed_at = self.closed.get("c:" + cid)
        key = None
        if closed_at is not None:
            if t == "chat_closed" or ts <= closed_at or late:
                return  # part of the closed episode
            del self.closed["c:" + cid]  # the customer writes again: a new episode
            key = f"{cid}@{ts}"
        conv = self.convs.get(cid)
        if t == "chat_closed":
            if conv is not None:
                csat, escalated = ev.get("csat"), ev.get("escalated")
                bad = escalated is True or (csat is not None and csat <= cfg.frustrated_csat)
                self._close_conversation(conv, ts, int(bad), out)
            else:
                self.closed["c:" + cid] = ts
            return
        if conv is None:
            if late:
                return  # a late message never re-opens (or opens) a conversation
            if self.convs is EMPTY:
                self.convs = {}
            conv = self.convs[cid] = Conversation(cid, ts, key)
            self.history.chats += 1
        sender, text = ev.get("sender"), ev.get("text")
        conv.last_msg = max(conv.last_msg, ts)
        conv.messages = (conv.messages + [(sender, cut(text, cfg.text_max), ts)])[-cfg.last_messages:]
        if sender != "customer":
            conv.last_reply = ts
            conv.run = []
            return
        conv.run = [r for r in conv.run if r >= ts - cfg.unanswered_window] + [ts]
        if not late:
            self._customer_message(conv, text, ts, cfg, out)

    def _customer_message(self, conv: Conversation, text: str, ts: int, cfg: RuleConfig, out: list) -> None:
        reasons = []
        if cfg.human(text):
            reasons.append("human_requested")
        if len(conv.run) >= cfg.unanswered_count:
            reasons.append("unanswered")
        feats = message_features(text, self._message_context(conv, ts))
        decision_id = f"{conv.key}|{ts}"
        if len(conv.pending) >= cfg.max_pending:
            conv.pending.pop(0)
        conv.pending.append((decision_id, ts, feats))
        candidate = None
        if not conv.escalated:
            sent = self.fast.get(("escalation", conv.key))
            fast_key = self._fast_sent_in_episode(conv.conversation_id, conv.started, ts)
            if sent is not None:  # the fast path sent it: confirm the exact time to policy, send nothing
                conv.escalated = True
                out.append(Notice("service_exact", self.customer_id, min(ts, sent), conv.key))
            elif fast_key is not None:  # sent for a message of this episode, under the key it saw then
                conv.escalated = True
                out.append(Notice("service_exact", self.customer_id, ts, fast_key))
            elif "escalation" in cfg.named:
                candidate = cfg.named["escalation"].candidate(self, conv, conv.messages, ts, reasons, cfg)
                conv.escalated = bool(reasons)
        out.append(ScoreRequest("frustration", self.customer_id, decision_id, ts, feats, candidate))

    def _message_context(self, conv: Conversation, ts: int) -> dict:
        ctx = {
            "since_reply_s": (ts - conv.last_reply) / 1000 if conv.last_reply is not None else -1.0,
            "in_a_row": float(len(conv.run)),
            "conversation_age_s": (ts - conv.started) / 1000,
            "late_order_now": float(any(o.promised is not None and ts > o.promised for o in self.orders.values())),
            "earlier_lines": [m for s, m, _ in conv.messages[:-1] if s == "customer"],  # the text model reads them
        }
        ctx.update(support_context(self.history, ts))  # repeat contacts in 7 days, earlier bad chats
        return ctx

    # ------------------------------------------------------------------ the service fast path

    def _fast_service(self, ev: Event, cfg: RuleConfig, out: list) -> None:
        """At arrival, before the reorder buffer: a customer message is scored for escalation, and
        a carrier's delay answered, from what has arrived so far (applied or held). The exact path,
        ``lateness`` later, sends nothing for a key sent here and tells policy the exact time
        (``service_exact``); policy keeps one escalation per episode whichever path sends it."""
        t = ev.type
        if t == "chat_message":
            if ev.get("sender") == "customer" and "escalation" in cfg.named:
                self._fast_escalation(ev, ev.get("text"), cfg, out)
        elif t == "order_delayed" and "delay_apology" in cfg.named:
            oid = ev.get("order_id")
            order = self.orders.get(oid)
            if order is None or order.placed_ts is None or order.apologized or ("delay_apology", oid) in self.fast:
                return  # unknown order: the exact path has the total and promise once it is placed
            if order.promised is not None and order.promised + cfg.grace < ev.ts:
                return  # the promise timer comes first in event time
            promised = _parse_optional_ts(ev.get("promised_delivery_ts"))
            self._mark_fast("delay_apology", oid, ev.ts)
            out.append(cfg.named["delay_apology"].candidate(self, order, ev.ts, "carrier_reported", cfg,
                                                            order.promised if promised is None else promised))

    def _fast_escalation(self, ev: Event, text: str, cfg: RuleConfig, out: list) -> None:
        ts = ev.ts
        conv = self._conversation_so_far(ev.get("conversation_id"), ts, cfg)
        if conv is None or conv.escalated or ("escalation", conv.key) in self.fast \
                or self._fast_sent_in_episode(conv.conversation_id, conv.started, ts) is not None:
            return
        conv.run = [r for r in conv.run if r >= ts - cfg.unanswered_window] + [ts]
        conv.messages = (conv.messages + [("customer", cut(text, cfg.text_max), ts)])[-cfg.last_messages:]
        # "unanswered" alone rests on a missing agent reply, which a late reply can refute: exact path only
        reasons = ["human_requested"] if cfg.human(text) else []
        if reasons and len(conv.run) >= cfg.unanswered_count:
            reasons.append("unanswered")
        if reasons:
            self._mark_fast("escalation", conv.key, ts)
            self.fast[("message", f"{conv.conversation_id}|{ts}")] = conv.key
        # no reason: the model decides
        cand = cfg.named["escalation"].candidate(self, conv, conv.messages, ts, reasons, cfg)
        feats = message_features(text, self._message_context(conv, ts))
        out.append(ScoreRequest("frustration", self.customer_id, f"{conv.key}|{ts}|fast", ts, feats, cand,
                                decision=False))

    def _fast_sent_in_episode(self, cid: str, start: int, ts: int) -> Optional[str]:
        """The key of an escalation the fast path sent for a message of ``cid``'s episode that
        started at ``start`` (no close held between that message and ``ts``), if any."""
        for (kind, ref), key in self.fast.items():
            if kind != "message":
                continue
            c, t = ref.rsplit("|", 1)
            t = int(t)
            if c != cid or t < start:
                continue
            lo, hi = min(t, ts), max(t, ts)
            if not any(h.type == "chat_closed" and lo < hts < hi and h.get("conversation_id") == cid
                       for hts, _, h in self.held):
                return key
        return None

    def _conversation_so_far(self, cid: str, ts: int, cfg: RuleConfig) -> Optional[Conversation]:
        """A copy of conversation ``cid`` as the exact path will see it at ``ts``: the held events of
        it before ``ts`` applied by :meth:`_apply_chat`'s rules (None: ``ts`` is in a closed episode)."""
        conv, closed_at = self.convs.get(cid), self.closed.get("c:" + cid)
        if conv is not None:
            view = Conversation(cid, conv.started)
            view.__setstate__(conv.__getstate__())
            conv, view.run, view.messages = view, list(conv.run), list(conv.messages)
        for hts, _, h in sorted(self.held):
            if hts >= ts or h.get("conversation_id") != cid or h.type not in ("chat_message", "chat_closed"):
                continue
            reopen = None
            if closed_at is not None:
                if h.type == "chat_closed" or hts <= closed_at:
                    continue  # part of the closed episode
                reopen, closed_at = f"{cid}@{hts}", None
            if h.type == "chat_closed":
                conv, closed_at = None, hts
                continue
            if conv is None:
                conv = Conversation(cid, hts, reopen)
            line = (h.get("sender"), cut(h.get("text"), cfg.text_max), hts)
            conv.messages = (conv.messages + [line])[-cfg.last_messages:]
            if h.get("sender") == "customer":
                conv.run = [r for r in conv.run if r >= hts - cfg.unanswered_window] + [hts]
            else:
                conv.run, conv.last_reply = [], hts
        if conv is None:
            if closed_at is not None and ts <= closed_at:
                return None
            conv = Conversation(cid, ts, None if closed_at is None else f"{cid}@{ts}")
        return conv

    def _mark_fast(self, type: str, key: str, ts: int) -> None:
        if self.fast is EMPTY:
            self.fast = {}
        self.fast[(type, key)] = ts

    # ------------------------------------------------------------------ shared steps

    def _recs_eval(self, bought: list[str], ts: int) -> RecsEval:
        """What the recommender would have offered before this order, from the customer's earlier items."""
        items = [p for p in self.recent.interests(ts, 10 + len(bought)) if p not in bought][:10]
        exclude = self.recent.recently_bought(ts)
        return RecsEval(self.customer_id, ts, tuple(items), tuple(sorted(exclude)),
                        tuple(sorted(set(bought) - exclude)), tuple(dict.fromkeys(bought)))

    def _churn_decision(self, ts: int, why: str, cfg: RuleConfig, out: list) -> None:
        feats = churn_features(self, ts)
        feats["decision_" + why] = 1.0
        decision_id = f"{self.customer_id}|{ts}|{why}"
        horizon = self._churn_horizon(ts, cfg)
        feats["_horizon_days"] = horizon / DAY  # the label's horizon, for BG/NBD's P(a purchase within it)
        due = ts + horizon
        # kept in due order (horizons differ); beyond max_pending the oldest decision goes
        waiting = sorted(self.churn_pending + (pending.make(decision_id, ts, feats, due, self.customer_id),),
                         key=pending.key)
        if len(waiting) > cfg.max_pending:
            waiting.remove(min(waiting, key=pending.decided))
        self.churn_pending = tuple(waiting)
        outreach = cfg.named.get("proactive_outreach")  # off: the model still decides and learns
        cand = None if outreach is None else outreach.candidate(self, ts, "churn_risk", cfg,
                                                                 threshold=cfg.churn_threshold)
        out.append(ScoreRequest("churn", self.customer_id, decision_id, ts, feats, cand))

    def _churn_returned(self, ts: int, out: list) -> None:
        """The customer came back: every decision point before ``ts`` is labelled 0."""
        keep = []
        for entry in self.churn_pending:
            if pending.decided(entry) < ts:
                decision_id, dts, feats, _ = pending.unpack(entry, self.customer_id)
                out.append(Label("churn", self.customer_id, decision_id, ts, feats, 0, dts))
            else:
                keep.append(entry)
        self.churn_pending = tuple(keep)

    def _close_conversation(self, conv: Conversation, ts: int, label: int, out: list) -> None:
        for decision_id, dts, feats in conv.pending:
            out.append(Label("frustration", self.customer_id, decision_id, ts, feats, label, dts))
        del self.convs[conv.conversation_id]
        if not self.convs:
            self.convs = EMPTY
        self.closed["c:" + conv.conversation_id] = ts
        out.append(Notice("conversation_closed", self.customer_id, ts, conv.key))

    def _prune(self, cfg: RuleConfig) -> None:
        horizon = self.clock - cfg.dedup_window
        self.seen.prune(horizon)
        closed_horizon = self.clock - cfg.closed_memory
        if self.closed and min(self.closed.values()) < closed_horizon:  # (hourly: mostly nothing to drop)
            self.closed = {k: t for k, t in self.closed.items() if t >= closed_horizon}
        if self.fast:  # (type, key) -> ts, and ("message", "cid|ts") -> the key sent under
            self.fast = {k: v for k, v in self.fast.items()
                         if (v if k[0] != "message" else int(k[1].rsplit("|", 1)[1])) >= closed_horizon} or EMPTY
        self.prune_at = self.clock + HOUR
        self._drop_quiet_slices(cfg)

    # ------------------------------------------------------------------ the agent's view

    def tier(self, cfg: RuleConfig) -> str:
        return cfg.tier(self.order_count, self.spend)

    def profile_defaults(self) -> ProfileUpdate:
        """Fields other steps own, null until they report (written only where absent)."""
        return ProfileUpdate(self.customer_id, {"churn_probability": None, "frustration_probability": None,
                                                 "predicted_clv": None},
                             defaults=True)

    def cart_items(self) -> list[dict]:
        items = [{"product_id": p, "quantity": q, "price": price} for p, (q, price) in self.cart.items()]
        if len(set(self.cart_currency.values())) > 1:
            for item in items:
                item["currency"] = self.cart_currency.get(item["product_id"])
        return items

    def cart_value(self) -> Optional[float]:
        """The cart's total; ``None`` when its lines are priced in more than one currency
        (:meth:`cart_values` then has one total per currency, never a sum across them)."""
        if len(set(self.cart_currency.values())) > 1:
            return None
        return _finite(round(sum(q * (price or 0.0) for q, price in self.cart.values()), 2))

    def cart_values(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for p, (q, price) in self.cart.items():
            code = self.cart_currency.get(p) or self.currency or ""
            totals[code] = totals.get(code, 0.0) + q * (price or 0.0)
        return {k: _finite(round(v, 2)) for k, v in totals.items()}

    def profile(self, cfg: RuleConfig) -> ProfileUpdate:
        fields = {
            "tier": self.tier(cfg),
            "lifetime_spend": round(self.spend, 2),
            "order_count": self.order_count,
            "first_seen": None if self.first_seen is None else format_ts(self.first_seen),
            "last_seen": None if self.last_seen is None else format_ts(self.last_seen),
            "open_orders": [
                {"order_id": o.order_id, "status": o.status, "order_total": o.total,
                 "promised_delivery_ts": format_ts(o.promised) if o.promised is not None else None}
                for o in self.orders.values()
            ],
            "cart": self.cart_items(),
            "cart_value": self.cart_value(),
            "open_conversations": sorted(self.convs),
            "updated_at": format_ts(self.clock),
        }
        self.dirty = False
        return ProfileUpdate(self.customer_id, fields)


# version 1's slots, in its positional pickle's order
V1_SLOTS = ("customer_id", "clock", "first_seen", "last_seen", "seen", "prune_at", "cart", "cart_last", "cart_armed",
            "currency", "orders", "closed", "order_count", "spend", "convs", "session_last", "help_views",
            "churn_pending", "rescore_n", "history", "dirty", "due", "recent", "held", "fast", "last_order",
            "cart_currency")


def _upgrade_v1(state: tuple) -> tuple:
    """A version-1 pickle as version 2: the cart episode and help views become the abandoned_cart
    and proactive_outreach rules' slices (the only rule state version 1 kept outside orders and
    conversations)."""
    from operators.contract_rules import CartEpisode, HelpViews

    old = dict(zip(V1_SLOTS, state))
    slices: dict = {}
    if old["cart_armed"]:
        slices["abandoned_cart"] = episode = CartEpisode()
        episode.armed = True
    if old["help_views"]:
        slices["proactive_outreach"] = views = HelpViews()
        views.views = list(old["help_views"])
    facts = tuple(old[s] for s in CustomerState.__slots__[:-1])
    return 1, facts, slices or EMPTY


_PENDING = CustomerState.__slots__.index("churn_pending")


def _held_order(h: tuple) -> tuple:
    return h[0], h[1]


def _latest(a: Optional[int], b: Optional[int]) -> Optional[int]:
    return b if a is None or (b is not None and b > a) else a


def _capped(t: int, cap: Optional[int]) -> int:
    return t if cap is None or t < cap else cap


def _raw(ev: Event) -> bytes:
    try:
        return orjson.dumps(ev.data)
    except Exception:  # a value orjson refuses: the standard library writes what it can
        return json.dumps(ev.data, default=str).encode("utf-8", "backslashreplace")


def _parse_optional_ts(value: Any) -> Optional[int]:
    return None if value is None else parse_ts(value)


def _finite(x: Any) -> float:
    """Money sums stay finite (decode bounds each number; this bounds their sums)."""
    x = float(x or 0.0)
    return x if -MAX_MONEY <= x <= MAX_MONEY else (MAX_MONEY if x > 0 else -MAX_MONEY)


def _quantity_of(item: Any) -> int:
    q = item.get("quantity", 1) if isinstance(item, dict) else 1
    return q if type(q) is int and q > 0 else 1


def _quantity(ev: Event) -> Optional[int]:
    items = ev.get("items")
    return sum(_quantity_of(i) for i in items) if items else None
