"""Policy: the only step that decides what goes out. The customer is not spammed.

Per customer, in event time, after the rules: marketing triggers (``abandoned_cart``,
``proactive_outreach``) are suppressed while an escalated conversation is open, within the quiet
period after a ``delay_apology`` or after a purchase, within their own type's cooldown, or when
the marketing cap is reached; live, also when it would go out more than ``max_trigger_age``
after it was due (``stale``). Service triggers (``delay_apology``, ``escalation``) always go out.

Every clause compares event times, never arrival order: a candidate is judged against what went
out before *and after* it in event time (a cooldown holds in both directions), so a candidate
that reaches policy after a later one gets the same answer as in ts order.
"""

from __future__ import annotations

from typing import Optional

from config.settings import Settings, ms
from operators.events import format_ts
from operators.triggers import Candidate, Notice, ProfileUpdate, Suppressed


class PolicyConfig:
    def __init__(self, s: Settings | None = None):
        s = s or Settings()
        self.cap = s.policy.marketing_cap
        self.cap_window = ms(s.policy.cap_window)
        self.apology_quiet = ms(s.policy.apology_quiet)
        self.cooldown = {t: ms(d) for t, d in s.policy.cooldown.items()}
        self.purchase_quiet = {t: ms(d) for t, d in s.policy.purchase_quiet.items()}
        self.max_age = ms(s.policy.max_trigger_age)  # live only: see decide's ``now``
        self.memory = ms(s.labels.churn_horizon)
        # how long a sent trigger or a purchase can still matter to a clause
        self.horizon = max([self.cap_window, self.apology_quiet, *self.cooldown.values(),
                            *self.purchase_quiet.values(), 0])


class PolicyState:
    """What policy remembers of one customer (picklable Bytewax state)."""

    __slots__ = ("sent", "marketing", "apologies", "escalated", "orders")

    def __init__(self) -> None:
        self.sent: dict[str, list[int]] = {}  # marketing type -> event times that went out
        self.marketing: list[int] = []  # event times of marketing triggers that went out
        self.apologies: dict[str, int] = {}  # order id -> event time of its delay_apology
        self.escalated: dict[str, list] = {}  # conversation key -> [escalated ts, closed ts or None]
        self.orders: list[int] = []  # event times of recent purchases

    def __getstate__(self):
        return (self.sent, self.marketing, self.apologies, self.escalated, self.orders)

    def __setstate__(self, s):
        self.sent, self.marketing, self.apologies, self.escalated, self.orders = s

    def decide(self, item: Candidate | Notice, cfg: PolicyConfig, now: Optional[int] = None) -> list:
        """A candidate -> [the candidate, its profile update] or [Suppressed]; a notice -> [].
        ``now`` (ms, live only: the wall clock): a marketing trigger that would go out but was due
        more than ``max_trigger_age`` before it is suppressed as ``stale`` (and not counted as sent)."""
        if isinstance(item, Notice):
            self._notice(item, cfg)
            return []
        c = item
        if c.threshold is not None and (c.score is None or c.score < c.threshold):
            return []  # the model did not confirm it: never a trigger
        if c.type == "escalation":
            if c.key in self.escalated:
                return []  # at most one per conversation episode, whichever reason came first
            self.escalated[c.key] = [c.event_ts, None]
        elif c.policy_class == "marketing":
            reason = self._suppression(c, cfg)
            if reason is None and now is not None and now - c.event_ts > cfg.max_age:
                reason = "stale"  # catch-up after an outage, a first start over history
            if reason is not None:
                return [Suppressed(c, reason)]
            self.marketing.append(c.event_ts)
            self.sent.setdefault(c.type, []).append(c.event_ts)
        elif c.type == "delay_apology":
            self.apologies[c.key] = c.event_ts
        self._forget(c.event_ts, cfg)
        update = ProfileUpdate(c.customer_id, {
            f"last_trigger.{c.type}": {"trigger_id": c.trigger_id, "event_ts": format_ts(c.event_ts)}
        })
        return [c, update]

    def _notice(self, n: Notice, cfg: PolicyConfig) -> None:
        if n.kind == "conversation_closed":  # closes every escalation of the conversation open then
            cid = _conversation_of(n.key)
            for key, span in self.escalated.items():
                if span[1] is None and span[0] <= n.ts and _conversation_of(key) == cid:
                    span[1] = n.ts
        elif n.kind == "order_placed":
            self.orders.append(n.ts)
            self._forget(n.ts, cfg)
        elif n.kind == "service_exact":  # the fast path sent it at arrival; this is its event time
            if n.key in self.escalated:
                self.escalated[n.key][0] = min(self.escalated[n.key][0], n.ts)
            elif n.key in self.apologies:
                self.apologies[n.key] = min(self.apologies[n.key], n.ts)

    def _suppression(self, c: Candidate, cfg: PolicyConfig) -> Optional[str]:
        t = c.event_ts
        if any(esc <= t and (closed is None or t < closed) for esc, closed in self.escalated.values()):
            return "escalation_open"
        if any(0 <= t - a < cfg.apology_quiet for a in self.apologies.values()):
            return "apology_quiet"
        quiet = cfg.purchase_quiet.get(c.type)
        if quiet and any(0 <= t - o < quiet for o in self.orders):
            return "purchase_quiet"
        cooldown = cfg.cooldown.get(c.type, 0)
        if any(abs(t - s) < cooldown for s in self.sent.get(c.type, ())):
            return "cooldown"
        if cfg.cap <= 0 or _window_full(self.marketing, t, cfg.cap_window, cfg.cap):
            return "marketing_cap"
        return None

    def _forget(self, now: int, cfg: PolicyConfig) -> None:
        old = now - cfg.horizon - cfg.memory  # kept a while past the horizon: later ones may come first
        if self.marketing and self.marketing[0] < old:
            self.marketing = [m for m in self.marketing if m >= old]
            self.sent = {k: kept for k, v in self.sent.items() if (kept := [s for s in v if s >= old])}
        if self.orders and min(self.orders) < old:
            self.orders = [o for o in self.orders if o >= old]
        if len(self.apologies) > 4:
            self.apologies = {k: a for k, a in self.apologies.items() if a >= old}
        if len(self.escalated) > 4:
            self.escalated = {k: v for k, v in self.escalated.items() if v[1] is None or v[1] > now - cfg.memory}


def _conversation_of(key: str) -> str:
    """``conv`` for an escalation key ``conv`` or ``conv@{ms}`` (a reopened episode)."""
    head, _, tail = key.rpartition("@")
    return head if head and tail.isdigit() else key


def _window_full(sent: list[int], t: int, window: int, cap: int) -> bool:
    """Would one more at ``t`` put more than ``cap`` in some window of length ``window``? Checks
    every window that holds ``t``, so a candidate judged after later ones counts them too."""
    near = sorted(m for m in sent if t - window < m < t + window)
    for start in [m for m in near if m <= t] + [t]:
        if sum(1 for m in near if start <= m < start + window) + 1 > cap:
            return True
    return False
