"""The contract's numbers and word lists, converted once to what the state machine uses (ms, matchers)."""

from __future__ import annotations

from config.settings import Settings, ms, rule_definitions
from operators.registry import load_rules
from operators.recs import RecsConfig
from operators.text import HumanRequest, WordMatcher


class RuleConfig:
    """Plain attributes read on the hot path; built from :class:`Settings` once per worker."""

    def __init__(self, s: Settings | None = None):
        s = s or Settings()
        self.lateness = ms(s.time.lateness)
        self.fast_service = s.time.service_fast_path
        self.dedup_window = ms(s.time.dedup_window)
        self.cart_idle = ms(s.abandoned_cart.idle)
        self.currency = s.abandoned_cart.currency
        self.grace = ms(s.delay_apology.grace)
        self.credit_rate = s.delay_apology.credit_rate
        self.credit_min = s.delay_apology.credit_min
        self.credit_max = s.delay_apology.credit_max
        self.credit_tier = dict(s.delay_apology.tier_multiplier)
        self.human = HumanRequest(s.escalation.human_words, s.escalation.human_negations,
                                  s.escalation.human_compounds)
        self.unanswered_count = s.escalation.unanswered_count
        self.unanswered_window = ms(s.escalation.unanswered_window)
        self.frustration_threshold = s.escalation.frustration_threshold
        self.text_max = s.escalation.text_max_chars
        self.last_messages = s.escalation.last_messages
        self.churn_threshold = s.proactive.churn_threshold
        self.session_gap = ms(s.proactive.session_gap)
        self.rescore_every = ms(s.proactive.rescore_every)
        self.help_views = s.proactive.help_views
        self.help_window = ms(s.proactive.help_window)
        self.exit_intent = WordMatcher(s.proactive.exit_words)
        self.regular_orders = s.tiers.regular_orders
        self.vip_orders = s.tiers.vip_orders
        self.vip_spend = s.tiers.vip_spend
        self.churn_horizon = ms(s.labels.churn_horizon)
        self.churn_horizon_min = ms(s.labels.churn_horizon_min)
        self.churn_horizon_gaps = s.labels.churn_horizon_gaps
        self.churn_refresh = None  # live only (flows.dataflow sets it): refresh an away customer's score
        self.refresh_every = ms(s.proactive.refresh_every)
        self.vip_clv = s.tiers.vip_clv
        self.conversation_abandoned = ms(s.labels.conversation_abandoned)
        self.frustrated_csat = s.labels.frustrated_csat
        self.max_pending = s.labels.max_pending
        # closed order/conversation ids are remembered as long as before cadence-relative horizons
        self.closed_memory = max(30 * 86_400_000, self.dedup_window)
        self.recs = RecsConfig(half_life=ms(s.recs.half_life), neighbours=s.recs.neighbours,
                               capacity=s.recs.capacity, top_k=s.recs.top_k, normalisation=s.recs.normalisation,
                               sequence_weight=s.recs.sequence_weight, recency=s.recs.recency,
                               repeat_weight=s.recs.repeat_weight)
        self.recs_in_payload = s.recs.in_payload
        # the trigger rules (operators.ruleset), last: they may read the numbers above
        self.max_episodes = s.rules.max_episodes
        self.max_wait = ms(s.rules.max_wait)
        self.definitions = rule_definitions(s)  # declared rules (the catalogue's and the shop's) by name
        self.declared_names = frozenset(d.name for d in s.rules.declared)
        self.rules = load_rules(s.rules.enabled, self)
        self.named = {r.name: r for r in self.rules}
        self.timed_rules = tuple(r for r in self.rules if r.timed)
        listeners: dict[str, list] = {}
        for r in self.rules:
            for t in r.types:
                listeners.setdefault(t, []).append(r)
        self.listeners = {t: tuple(rs) for t, rs in listeners.items()}

    def tier(self, order_count: int, spend: float) -> str:
        if order_count >= self.vip_orders or (order_count and spend >= self.vip_spend):
            return "vip"
        if order_count >= self.regular_orders:
            return "regular"
        return "new"

    def suggested_credit(self, total: float | None, tier: str) -> float:
        raw = (total or 0.0) * self.credit_rate * self.credit_tier.get(tier, 1.0)
        return round(min(self.credit_max, max(self.credit_min, raw)), 2)
