"""One customer's state machine: the functional core behind the ``profile`` step.

``process(event)`` applies an event and returns what it caused; ``advance(now)`` fires every
event-time timer due at or before ``now``; ``next_deadline()`` says when the next one is due.
No Bytewax, Kafka or Redis here: the shell adapts these three verbs.

Order of work for an event at ``ts``: timers due strictly before ``ts`` fire first (an activity
exactly at the due time still counts as "within"), then the event applies, then timers due at or
before the new clock fire.
"""

from __future__ import annotations

from sys import intern
from typing import Any, Optional

from operators.dedup import SeenIds
from operators.events import CART_ACTIVITY, CLICKSTREAM_TYPES, Event, format_ts, parse_ts
from operators.features import History, churn_features, message_features, support_context
from operators.rules import RuleConfig
from operators.scoring import Label, RecsEval, ScoreRequest, pair_messages
from operators.recs import DEFAULT as RECS_DEFAULT, RecentItems, RecsConfig
from operators.text import cut
from operators.triggers import Candidate, Notice, ProfileUpdate

OK, LATE, DUPLICATE = "ok", "late", "duplicate"
NEVER = 1 << 62


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


def _empty() -> dict:
    return EMPTY


class Order:
    __slots__ = ("order_id", "placed_ts", "promised", "total", "status", "apologized")

    def __init__(self, order_id: str, placed_ts: Optional[int], promised: Optional[int], total: Optional[float]):
        self.order_id = order_id
        self.placed_ts = placed_ts
        self.promised = promised
        self.total = total
        self.status = "placed"
        self.apologized = False

    def __getstate__(self):
        return (self.order_id, self.placed_ts, self.promised, self.total, self.status, self.apologized)

    def __setstate__(self, s):
        self.order_id, self.placed_ts, self.promised, self.total, self.status, self.apologized = s


class Conversation:
    __slots__ = ("conversation_id", "started", "last_msg", "last_reply", "run", "messages", "escalated",
                 "pending")

    def __init__(self, conversation_id: str, ts: int):
        self.conversation_id = conversation_id
        self.started = ts
        self.last_msg = ts
        self.last_reply: Optional[int] = None
        self.run: list[int] = []  # ts of customer messages since the last agent/bot reply
        self.messages: list[tuple[str, str, int]] = []  # last few (sender, text, ts)
        self.escalated = False
        self.pending: list[tuple[str, int, dict]] = []  # frustration decisions awaiting the outcome

    def __getstate__(self):
        return (self.conversation_id, self.started, self.last_msg, self.last_reply, self.run, self.messages,
                self.escalated, self.pending)

    def __setstate__(self, s):
        (self.conversation_id, self.started, self.last_msg, self.last_reply, self.run, self.messages,
         self.escalated, self.pending) = s


class CustomerState:
    """Everything the engine keeps about one customer (picklable: it is Bytewax state)."""

    __slots__ = (
        "customer_id", "clock", "first_seen", "last_seen", "seen", "prune_at",
        "cart", "cart_last", "cart_armed", "currency",
        "orders", "closed", "order_count", "spend",
        "convs", "session_last", "help_views",
        "churn_pending", "rescore_n", "history", "dirty", "due", "recent",
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
        self.cart_armed = False  # an episode is running and has not triggered
        self.currency: Optional[str] = None
        self.orders: dict[str, Order] = EMPTY
        self.closed: dict[str, int] = {}  # closed order/conversation ids -> close ts (no re-open)
        self.order_count = 0
        self.spend = 0.0
        self.convs: dict[str, Conversation] = EMPTY
        self.session_last: Optional[int] = None  # last clickstream ts of the open session
        self.help_views: list[int] = []
        # (decision_id, ts, features); tuples, as most customers have none pending (the empty tuple
        # is shared, an empty list costs 56 bytes each)
        self.churn_pending: tuple[tuple[str, int, dict], ...] = ()
        self.rescore_n = 0
        self.history = History()
        self.dirty = False
        self.due = NEVER  # the next timer's due time, kept by advance() (saves a scan per event)
        self.recent = RecentItems(cfg_recs)  # products of the open session and recent purchases

    def __getstate__(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state):
        for s, v in zip(self.__slots__, state):
            setattr(self, s, v)

    # ------------------------------------------------------------------ the three verbs

    def process(self, ev: Event, cfg: RuleConfig) -> tuple[list, str]:
        """Apply one event; return (outputs, status) with status ok / late / duplicate."""
        ts = ev.ts
        seen_key, seen_at, seen_ts = self.seen.lookup(ev.event_id)
        if seen_ts is not None and abs(ts - seen_ts) <= cfg.dedup_window:
            return [], DUPLICATE
        out: list = []
        if self.clock is None:
            self.clock = self.first_seen = self.last_seen = ts
        late = ts < self.clock - cfg.lateness
        if ts > self.clock and self.due < ts:
            self.advance(ts - 1, cfg, out)
        self.seen.put(seen_key, seen_at, ts)  # advance() above never touches seen ids
        self._apply(ev, late, cfg, out)
        if ts > self.clock:
            self.clock = ts
        self.advance(self.clock, cfg, out)
        if self.clock >= self.prune_at:
            self._prune(cfg)
        self.dirty = True
        return out, LATE if late else OK

    def next_deadline(self, cfg: RuleConfig) -> Optional[int]:
        return None if self.due >= NEVER else self.due

    def advance(self, now: int, cfg: RuleConfig, out: Optional[list] = None) -> list:
        """Fire, in due-time order, every timer due at or before ``now``."""
        out = [] if out is None else out
        while True:
            due, fire = self._next_timer(cfg)
            if due > now:
                self.due = due
                return out
            fire(due, cfg, out)
            self.dirty = True

    # ------------------------------------------------------------------ timers

    def _next_timer(self, cfg: RuleConfig):
        best, fire = NEVER, None
        if self.cart_armed:
            best, fire = self.cart_last + cfg.cart_idle, self._fire_cart
        for order in self.orders.values():
            if not order.apologized and order.promised is not None and order.promised + cfg.grace < best:
                best, fire = order.promised + cfg.grace, self._fire_promise
        if self.session_last is not None and self.session_last + cfg.session_gap < best:
            best, fire = self.session_last + cfg.session_gap, self._fire_session_end
        for conv in self.convs.values():
            if conv.last_msg + cfg.conversation_abandoned < best:
                best, fire = conv.last_msg + cfg.conversation_abandoned, self._fire_conversation_abandoned
        if self.churn_pending and self.churn_pending[0][1] + cfg.churn_horizon < best:
            best, fire = self.churn_pending[0][1] + cfg.churn_horizon, self._fire_churned
        rescore = self.last_seen + cfg.rescore_every * (self.rescore_n + 1) if self.last_seen is not None else NEVER
        if rescore < best and rescore - self.last_seen < cfg.churn_horizon:
            best, fire = rescore, self._fire_rescore
        return best, fire

    def _fire_cart(self, due: int, cfg: RuleConfig, out: list) -> None:
        self.cart_armed = False
        self.history.carts_abandoned += 1
        payload: dict[str, Any] = {"items": self.cart_items(), "cart_value": self.cart_value(), "recommendations": []}
        currency = self.currency or cfg.currency
        if currency:
            payload["currency"] = currency
        cand = Candidate("abandoned_cart", self.customer_id, due, ["cart_idle"], payload, key=str(due),
                         tier=self.tier(cfg))
        cand.recs = (tuple(self.cart), tuple(sorted(set(self.cart) | self.recent.recently_bought(due))))
        out.append(cand)

    def _fire_promise(self, due: int, cfg: RuleConfig, out: list) -> None:
        order = min((o for o in self.orders.values() if not o.apologized and o.promised is not None),
                    key=lambda o: (o.promised, o.order_id))
        self._apologize(order, due, "promise_missed", cfg, out)

    def _fire_session_end(self, due: int, cfg: RuleConfig, out: list) -> None:
        self.session_last = None
        self.history.sessions += 1
        out.extend(pair_messages(self.recent.flush()))  # the session's co-views for the product keys
        self._churn_decision(due, "session_end", cfg, out)

    def _fire_rescore(self, due: int, cfg: RuleConfig, out: list) -> None:
        self.rescore_n += 1
        self._churn_decision(due, "inactive", cfg, out)

    def _fire_churned(self, due: int, cfg: RuleConfig, out: list) -> None:
        while self.churn_pending and self.churn_pending[0][1] + cfg.churn_horizon <= due:
            decision_id, ts, feats = self.churn_pending[0]
            self.churn_pending = self.churn_pending[1:]
            out.append(Label("churn", self.customer_id, decision_id, due, feats, 1, ts))

    def _fire_conversation_abandoned(self, due: int, cfg: RuleConfig, out: list) -> None:
        conv = min((c for c in self.convs.values()), key=lambda c: (c.last_msg, c.conversation_id))
        self._close_conversation(conv, due, 1, out)

    # ------------------------------------------------------------------ applying events

    def _apply(self, ev: Event, late: bool, cfg: RuleConfig, out: list) -> None:
        t, ts = ev.type, ev.ts
        if ts > self.last_seen:
            self.last_seen = ts
            self.rescore_n = 0
        if ts < self.first_seen:
            self.first_seen = ts
        self.history.observe(ev)
        if self.churn_pending:
            self._churn_returned(ts, out)
        if t in CLICKSTREAM_TYPES:
            self._apply_click(ev, late, cfg, out)
        elif t.startswith("order_") or t in ("return_requested", "refund_issued"):
            self._apply_order(ev, late, cfg, out)
        else:
            self._apply_chat(ev, late, cfg, out)

    def _apply_click(self, ev: Event, late: bool, cfg: RuleConfig, out: list) -> None:
        t, ts = ev.type, ev.ts
        if not late and (self.session_last is None or ts > self.session_last):
            self.session_last = ts
        if t == "product_view" or t == "add_to_cart":
            blocks = self.recent.observe(t, (ev.get("product_id"),), ev.get("session_id"), ts)
            if blocks:
                out.extend(pair_messages(blocks))
        if t in CART_ACTIVITY:
            self._apply_cart(ev, late)
        elif t == "help_view" and not late:
            self.help_views = [h for h in self.help_views if h > ts - cfg.help_window] + [ts]
            if len(self.help_views) >= cfg.help_views:
                self.help_views = []
                self._outreach(ts, "help_seeking", cfg, out)
        elif t == "search" and not late:
            query = ev.get("query")
            if query and cfg.exit_intent(query):
                self._outreach(ts, "exit_intent", cfg, out)

    def _apply_cart(self, ev: Event, late: bool) -> None:
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
            if ev.get("currency") and isinstance(ev.get("currency"), str):
                self.currency = ev.get("currency")
        elif t == "remove_from_cart" and pid in self.cart:
            line = self.cart[pid]
            line[0] -= qty
            if line[0] <= 0:
                del self.cart[pid]
                if not self.cart:
                    self.cart = EMPTY
        if not self.cart:
            self.cart_armed = False  # emptied: the episode ends, the timer is cancelled
            self.cart_last = None
            return
        if self.cart_last is None or ts > self.cart_last:
            self.cart_last = ts
        if not late:
            self.cart_armed = True  # a new episode after a trigger, or the running one goes on

    def _apply_order(self, ev: Event, late: bool, cfg: RuleConfig, out: list) -> None:
        t, ts, oid = ev.type, ev.ts, ev.get("order_id")
        if "o:" + oid in self.closed and t not in ("return_requested", "refund_issued"):
            return
        order = self.orders.get(oid)
        promised = ev.get("promised_delivery_ts")
        promised_ms = _parse_optional_ts(promised)
        if t == "order_placed":
            bought = [i["product_id"] for i in ev.get("items") or ()] or list(self.cart)
            if order is None:
                out.append(self._recs_eval(bought, ts))  # scored before anything learns from it
                out.extend(pair_messages(self.recent.observe(t, bought, None, ts)))
            self.cart = EMPTY
            self.cart_armed = False
            self.cart_last = None
            total = float(ev.get("total"))
            if order is None:
                self.order_count += 1
                self.spend += total
                if self.orders is EMPTY:
                    self.orders = {}
                order = self.orders[oid] = Order(oid, ts, promised_ms, total)
            self._churn_decision(ts, "order_placed", cfg, out)
            return
        if t in ("return_requested", "refund_issued"):
            return
        if order is None:  # an order seen first through a later lifecycle event
            if self.orders is EMPTY:
                self.orders = {}
            order = self.orders[oid] = Order(oid, None, promised_ms, ev.get("total"))
        if promised_ms is not None and t in ("order_shipped", "order_delayed"):
            order.promised = promised_ms
        if t in ("order_delivered", "order_cancelled"):
            if order.apologized and t == "order_delivered":
                self.history.late_orders += 1
            self.closed["o:" + oid] = ts
            del self.orders[oid]
            if not self.orders:
                self.orders = EMPTY
            return
        order.status = "delayed" if t == "order_delayed" else "shipped"
        if t == "order_delayed" and not order.apologized and not late:
            self._apologize(order, ts, "carrier_reported", cfg, out)

    def _apply_chat(self, ev: Event, late: bool, cfg: RuleConfig, out: list) -> None:
        t, ts, cid = ev.type, ev.ts, ev.get("conversation_id")
        if "c:" + cid in self.closed:
            return
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
            conv = self.convs[cid] = Conversation(cid, ts)
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
        ctx = {
            "since_reply_s": (ts - conv.last_reply) / 1000 if conv.last_reply is not None else -1.0,
            "in_a_row": float(len(conv.run)),
            "conversation_age_s": (ts - conv.started) / 1000,
            "late_order_now": float(any(o.promised is not None and ts > o.promised for o in self.orders.values())),
        }
        ctx.update(support_context(self.history, ts))  # repeat contacts in 7 days, earlier bad chats
        feats = message_features(text, ctx)
        decision_id = f"{conv.conversation_id}|{ts}"
        if len(conv.pending) >= cfg.max_pending:
            conv.pending.pop(0)
        conv.pending.append((decision_id, ts, feats))
        candidate = None
        if not conv.escalated:
            payload = {
                "conversation_id": conv.conversation_id,
                "frustration": None,
                "last_messages": [{"sender": s, "text": m, "ts": format_ts(mts)} for s, m, mts in conv.messages],
                "customer_tier": self.tier(cfg),
            }
            candidate = Candidate("escalation", self.customer_id, ts, reasons, payload, key=conv.conversation_id,
                                  tier=self.tier(cfg), threshold=None if reasons else cfg.frustration_threshold)
            conv.escalated = bool(reasons)
        out.append(ScoreRequest("frustration", self.customer_id, decision_id, ts, feats, candidate))

    # ------------------------------------------------------------------ shared steps

    def _apologize(self, order: Order, due: int, reason: str, cfg: RuleConfig, out: list) -> None:
        order.apologized = True
        tier = self.tier(cfg)
        payload = {
            "order_id": order.order_id,
            "promised_delivery_ts": format_ts(order.promised) if order.promised is not None else None,
            "order_total": order.total,
            "suggested_credit": cfg.suggested_credit(order.total, tier),
        }
        out.append(Candidate("delay_apology", self.customer_id, due, [reason], payload, key=order.order_id,
                             tier=tier))

    def _outreach(self, ts: int, reason: str, cfg: RuleConfig, out: list) -> None:
        """A rule-driven outreach: scored by the churn model for its payload, not a decision point."""
        feats = churn_features(self, ts)
        cand = self._outreach_candidate(ts, reason, cfg)
        out.append(ScoreRequest("churn", self.customer_id, f"{reason}|{ts}", ts, feats, cand, decision=False))

    def _outreach_candidate(self, ts: int, reason: str, cfg: RuleConfig, threshold: Optional[float] = None):
        signals = [reason]
        if any(o.apologized for o in self.orders.values()) or self.history.late_orders:
            signals.append("late_delivery")
        if self.history.returns or self.history.refunds:
            signals.append("returns")
        if self.history.carts_abandoned:
            signals.append("abandoned_carts")
        tier = self.tier(cfg)
        offer = {"vip": "personal_shopper_call", "regular": "discount_10_percent"}.get(tier, "free_shipping")
        payload = {"churn_probability": None, "signals": signals, "suggested_offer": offer, "recommendations": []}
        cand = Candidate("proactive_outreach", self.customer_id, ts, [reason], payload, key=f"{reason}|{ts}",
                         tier=tier, threshold=threshold)
        cand.recs = (tuple(self.recent.interests(ts, 10)), tuple(sorted(self.recent.recently_bought(ts))))
        return cand

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
        self.churn_pending = (self.churn_pending + ((decision_id, ts, feats),))[-cfg.max_pending:]
        cand = self._outreach_candidate(ts, "churn_risk", cfg, threshold=cfg.churn_threshold)
        out.append(ScoreRequest("churn", self.customer_id, decision_id, ts, feats, cand))

    def _churn_returned(self, ts: int, out: list) -> None:
        """The customer came back: every decision point before ``ts`` is labelled 0."""
        keep = []
        for decision_id, dts, feats in self.churn_pending:
            if dts < ts:
                out.append(Label("churn", self.customer_id, decision_id, ts, feats, 0, dts))
            else:
                keep.append((decision_id, dts, feats))
        self.churn_pending = tuple(keep)

    def _close_conversation(self, conv: Conversation, ts: int, label: int, out: list) -> None:
        for decision_id, dts, feats in conv.pending:
            out.append(Label("frustration", self.customer_id, decision_id, ts, feats, label, dts))
        del self.convs[conv.conversation_id]
        if not self.convs:
            self.convs = EMPTY
        self.closed["c:" + conv.conversation_id] = ts
        out.append(Notice("conversation_closed", self.customer_id, ts, conv.conversation_id))

    def _prune(self, cfg: RuleConfig) -> None:
        horizon = self.clock - cfg.dedup_window
        self.seen.prune(horizon)
        closed_horizon = self.clock - cfg.closed_memory
        self.closed = {k: t for k, t in self.closed.items() if t >= closed_horizon}
        self.prune_at = self.clock + 3_600_000

    # ------------------------------------------------------------------ the agent's view

    def tier(self, cfg: RuleConfig) -> str:
        return cfg.tier(self.order_count, self.spend)

    def profile_defaults(self) -> ProfileUpdate:
        """Fields other steps own, null until they report (written only where absent)."""
        return ProfileUpdate(self.customer_id, {"churn_probability": None, "frustration_probability": None},
                             defaults=True)

    def cart_items(self) -> list[dict]:
        return [{"product_id": p, "quantity": q, "price": price} for p, (q, price) in self.cart.items()]

    def cart_value(self) -> float:
        return round(sum(q * (price or 0.0) for q, price in self.cart.values()), 2)

    def profile(self, cfg: RuleConfig) -> ProfileUpdate:
        fields = {
            "tier": self.tier(cfg),
            "lifetime_spend": round(self.spend, 2),
            "order_count": self.order_count,
            "first_seen": format_ts(self.first_seen),
            "last_seen": format_ts(self.last_seen),
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


def _parse_optional_ts(value: Any) -> Optional[int]:
    return None if value is None else parse_ts(value)
