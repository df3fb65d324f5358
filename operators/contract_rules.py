"""The contract's four triggers as rules (CONTRACT.md): abandoned cart, delay apology,
escalation and proactive outreach, moved out of the customer's state machine unchanged.

Escalation and the churn-risk part of proactive outreach are built at the models' decision
points (a customer message; a session end, an inactive day, a purchase), which the customer
step keeps: the models learn from them whether or not the trigger is enabled. The rule supplies
the candidate (:meth:`Escalation.candidate`, :meth:`ProactiveOutreach.candidate`).
"""

from __future__ import annotations

from typing import Any, Optional

from operators.events import CART_ACTIVITY, format_ts
from operators.features import churn_features
from operators.ruleset import MARKETING, NEVER, SERVICE, Rule, Slice
from operators.messages import Candidate, Notice, ScoreRequest


class CartEpisode(Slice):
    """An episode is running and has not triggered (the cart itself is the customer's fact)."""

    __slots__ = ("armed",)

    def __init__(self) -> None:
        self.armed = False


class AbandonedCart(Rule):
    """No cart activity for ``abandoned_cart.idle`` while the cart holds items; one per episode."""

    name = "abandoned_cart"
    types = CART_ACTIVITY | {"order_placed"}
    policy_class = MARKETING
    timed = True

    def new_slice(self) -> CartEpisode:
        return CartEpisode()

    def on_event(self, ctx, s: CartEpisode, ev, late: bool, cfg, out: list) -> None:
        if not ctx.cart:
            s.armed = False  # emptied or bought: the episode ends, the timer is cancelled
        elif not late and ev.type != "order_placed":
            s.armed = True  # a new episode after a trigger, or the running one goes on

    def next_due(self, ctx, s: Optional[CartEpisode], cfg) -> int:
        return ctx.cart_last + cfg.cart_idle if s is not None and s.armed else NEVER

    def quiet(self, ctx, s: Optional[CartEpisode]) -> bool:
        """:meth:`Rule.quiet` without making a fresh slice to compare with (it asks this at every
        session end): a fresh episode is unarmed."""
        if type(s) is CartEpisode and type(self).new_slice is AbandonedCart.new_slice:
            return s.armed == False  # noqa: E712 (the default compares field values: == False)
        return super().quiet(ctx, s)

    def on_timer(self, ctx, s: CartEpisode, due: int, cfg, out: list) -> None:
        s.armed = False
        ctx.history.carts_abandoned += 1
        payload: dict[str, Any] = {"items": ctx.cart_items(), "cart_value": ctx.cart_value(), "recommendations": []}
        if payload["cart_value"] is None:  # lines in several currencies: one total per currency
            payload["cart_values"] = ctx.cart_values()
        else:
            currency = next(iter(ctx.cart_currency.values()), None) or ctx.currency or cfg.currency
            if currency:
                payload["currency"] = currency
        cand = Candidate("abandoned_cart", ctx.customer_id, due, ["cart_idle"], payload, key=str(due),
                         tier=ctx.tier(cfg), policy_class=MARKETING)
        cand.recs = (tuple(ctx.cart), tuple(sorted(set(ctx.cart) | ctx.recent.recently_bought(due))))
        out.append(cand)


class DelayApology(Rule):
    """A carrier's delay, or a promise missed by ``delay_apology.grace``; one per order. Its state
    is each open order's ``apologized`` flag (the order is the customer's fact)."""

    name = "delay_apology"
    types = frozenset({"order_delayed"})
    policy_class = SERVICE
    timed = True

    def on_event(self, ctx, s, ev, late: bool, cfg, out: list) -> None:
        order = ctx.orders.get(ev.get("order_id"))
        if order is not None and not order.apologized and not late:
            self.apologize(ctx, order, ev.ts, "carrier_reported", cfg, out)

    def next_due(self, ctx, s, cfg) -> int:
        best = NEVER
        for order in ctx.orders.values():
            if not order.apologized and order.promised is not None and order.promised + cfg.grace < best:
                best = order.promised + cfg.grace
        return best

    def on_timer(self, ctx, s, due: int, cfg, out: list) -> None:
        order = min((o for o in ctx.orders.values() if not o.apologized and o.promised is not None),
                    key=lambda o: (o.promised, o.order_id))
        self.apologize(ctx, order, due, "promise_missed", cfg, out)

    def apologize(self, ctx, order, due: int, reason: str, cfg, out: list) -> None:
        order.apologized = True
        sent = ctx.fast.get(("delay_apology", order.order_id))
        if sent is not None:  # the fast path sent it: tell policy the exact time, send nothing
            out.append(Notice("service_exact", ctx.customer_id, min(due, sent), order.order_id))
            return
        out.append(self.candidate(ctx, order, due, reason, cfg, order.promised))

    def candidate(self, ctx, order, due: int, reason: str, cfg, promised: Optional[int]) -> Candidate:
        tier = ctx.tier(cfg)
        payload = {
            "order_id": order.order_id,
            "promised_delivery_ts": format_ts(promised) if promised is not None else None,
            "order_total": order.total,
            "suggested_credit": cfg.suggested_credit(order.total, tier),
        }
        return Candidate("delay_apology", ctx.customer_id, due, [reason], payload, key=order.order_id, tier=tier,
                         policy_class=SERVICE)


class Escalation(Rule):
    """A customer asks for a person, writes ``unanswered_count`` times unanswered, or the
    frustration model says so; one per conversation episode (policy keeps it so)."""

    name = "escalation"
    policy_class = SERVICE

    def candidate(self, ctx, conv, messages: list, ts: int, reasons: list, cfg) -> Candidate:
        tier = ctx.tier(cfg)
        payload = {
            "conversation_id": conv.conversation_id,
            "frustration": None,
            "last_messages": [{"sender": s, "text": m, "ts": format_ts(mts)} for s, m, mts in messages],
            "customer_tier": tier,
        }
        return Candidate("escalation", ctx.customer_id, ts, reasons, payload, key=conv.key, tier=tier,
                         threshold=None if reasons else cfg.frustration_threshold, policy_class=SERVICE)


class HelpViews(Slice):
    __slots__ = ("views",)

    def __init__(self) -> None:
        self.views: list[int] = []  # ts of help_view events within help_window


class ProactiveOutreach(Rule):
    """Help seeking (``help_views`` within ``help_window``) and exit intent (a search for the exit
    words) at once; churn risk at the churn model's decision points (:meth:`candidate`)."""

    name = "proactive_outreach"
    types = frozenset({"help_view", "search"})
    policy_class = MARKETING

    def new_slice(self) -> HelpViews:
        return HelpViews()

    def quiet(self, ctx, s: Optional[HelpViews]) -> bool:
        """:meth:`Rule.quiet` without making a fresh slice: a fresh one has no help views."""
        if type(s) is HelpViews and type(self).new_slice is ProactiveOutreach.new_slice:
            return s.views == []
        return super().quiet(ctx, s)

    def on_event(self, ctx, s: HelpViews, ev, late: bool, cfg, out: list) -> None:
        if late:
            return
        ts = ev.ts
        if ev.type == "help_view":
            s.views = [h for h in s.views if h > ts - cfg.help_window] + [ts]
            if len(s.views) >= cfg.help_views:
                s.views = []
                self.outreach(ctx, ts, "help_seeking", cfg, out)
        else:
            query = ev.get("query")
            if query and cfg.exit_intent(query):
                self.outreach(ctx, ts, "exit_intent", cfg, out)

    def outreach(self, ctx, ts: int, reason: str, cfg, out: list) -> None:
        """A rule-driven outreach: scored by the churn model for its payload, not a decision point."""
        feats = churn_features(ctx, ts)
        cand = self.candidate(ctx, ts, reason, cfg)
        out.append(ScoreRequest("churn", ctx.customer_id, f"{reason}|{ts}", ts, feats, cand, decision=False))

    def candidate(self, ctx, ts: int, reason: str, cfg, threshold: Optional[float] = None) -> Candidate:
        signals = [reason]
        h = ctx.history
        if h.late_orders or (ctx.orders and any(o.apologized for o in ctx.orders.values())):
            signals.append("late_delivery")
        if h.returns or h.refunds:
            signals.append("returns")
        if h.carts_abandoned:
            signals.append("abandoned_carts")
        tier = ctx.tier(cfg)
        offer = _OFFERS.get(tier, "free_shipping")
        payload = {"churn_probability": None, "signals": signals, "suggested_offer": offer, "recommendations": []}
        cand = Candidate("proactive_outreach", ctx.customer_id, ts, [reason], payload, key=f"{reason}|{ts}",
                         tier=tier, threshold=threshold, policy_class=MARKETING)
        cand.recs = (tuple(ctx.recent.interests(ts, 10)), tuple(sorted(ctx.recent.recently_bought(ts))))
        return cand


_OFFERS = {"vip": "personal_shopper_call", "regular": "discount_10_percent"}  # by tier (else free_shipping)
CONTRACT_RULES = (AbandonedCart, DelayApology, Escalation, ProactiveOutreach)
