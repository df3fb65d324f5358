"""Policy: the only step that decides what goes out. The customer is not spammed.

Per customer, in event time, after the rules: marketing triggers (``abandoned_cart``,
``proactive_outreach``) are suppressed while an escalated conversation is open, within the quiet
period after a ``delay_apology``, within their own type's cooldown, or when the marketing cap is
reached. Service triggers (``delay_apology``, ``escalation``) always go out.
"""

from __future__ import annotations

from typing import Optional

from config.settings import Settings, ms
from operators.events import format_ts
from operators.triggers import MARKETING, Candidate, Notice, ProfileUpdate, Suppressed


class PolicyConfig:
    def __init__(self, s: Settings | None = None):
        s = s or Settings()
        self.cap = s.policy.marketing_cap
        self.cap_window = ms(s.policy.cap_window)
        self.apology_quiet = ms(s.policy.apology_quiet)
        self.cooldown = {t: ms(d) for t, d in s.policy.cooldown.items()}
        self.memory = ms(s.labels.churn_horizon)


class PolicyState:
    """What policy remembers of one customer (picklable Bytewax state)."""

    __slots__ = ("last_by_type", "marketing", "last_apology", "escalated")

    def __init__(self) -> None:
        self.last_by_type: dict[str, int] = {}
        self.marketing: list[int] = []  # event times of marketing triggers that went out
        self.last_apology: Optional[int] = None
        self.escalated: dict[str, Optional[int]] = {}  # conversation id -> closed ts (None while open)

    def __getstate__(self):
        return (self.last_by_type, self.marketing, self.last_apology, self.escalated)

    def __setstate__(self, s):
        self.last_by_type, self.marketing, self.last_apology, self.escalated = s

    def decide(self, item: Candidate | Notice, cfg: PolicyConfig) -> list:
        """A candidate -> [the candidate, its profile update] or [Suppressed]; a notice -> []."""
        if isinstance(item, Notice):
            if item.kind == "conversation_closed" and item.key in self.escalated:
                self.escalated[item.key] = item.ts
            return []
        c = item
        if c.threshold is not None and (c.score is None or c.score < c.threshold):
            return []  # the model did not confirm it: never a trigger
        if c.type == "escalation":
            if c.key in self.escalated:
                return []  # at most one per conversation, whichever reason came first
            self.escalated[c.key] = None
        elif c.type in MARKETING:
            reason = self._suppression(c, cfg)
            if reason is not None:
                return [Suppressed(c, reason)]
            self.marketing = [t for t in self.marketing if t > c.event_ts - cfg.cap_window] + [c.event_ts]
        if c.type == "delay_apology":
            self.last_apology = max(self.last_apology or c.event_ts, c.event_ts)
        self.last_by_type[c.type] = max(self.last_by_type.get(c.type, c.event_ts), c.event_ts)
        self._forget(c.event_ts, cfg)
        update = ProfileUpdate(c.customer_id, {
            f"last_trigger.{c.type}": {"trigger_id": c.trigger_id, "event_ts": format_ts(c.event_ts)}
        })
        return [c, update]

    def _suppression(self, c: Candidate, cfg: PolicyConfig) -> Optional[str]:
        t = c.event_ts
        if any(closed is None for closed in self.escalated.values()):
            return "escalation_open"
        if self.last_apology is not None and 0 <= t - self.last_apology < cfg.apology_quiet:
            return "apology_quiet"
        last = self.last_by_type.get(c.type)
        if last is not None and 0 <= t - last < cfg.cooldown.get(c.type, 0):
            return "cooldown"
        if sum(1 for m in self.marketing if t - cfg.cap_window < m <= t) >= cfg.cap:
            return "marketing_cap"
        return None

    def _forget(self, now: int, cfg: PolicyConfig) -> None:
        if len(self.escalated) > 4:
            self.escalated = {k: v for k, v in self.escalated.items() if v is None or v > now - cfg.memory}
