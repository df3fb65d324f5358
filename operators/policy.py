"""Policy: the only step that decides what goes out. The customer is not spammed.

Per customer, in event time, after the rules: marketing triggers (``abandoned_cart``,
``proactive_outreach`` and every candidate of policy class ``marketing``) are suppressed while an escalated conversation is open, within the quiet
period after a ``delay_apology`` or after a purchase, within their own type's cooldown, or when
the marketing cap is reached (a type's cooldown: ``policy.cooldown``, else its declared rule's
``cooldown``); live, also when it would go out more than ``max_trigger_age``
after it was due (``stale``). Service triggers (``delay_apology``, ``escalation``) always go out.

Every clause compares event times, never arrival order: a candidate is judged against what went
out before *and after* it in event time (a cooldown holds in both directions), so a candidate
that reaches policy after a later one gets the same answer as in ts order.

Contact policy (issue 15): marketing needs a consented channel at its event time (``no_consent``);
marketing due in the customer's local quiet hours is held until they end and judged again then
(dropped as ``quiet_purchased`` / ``quiet_returned`` when its reason is gone); a keyed-hash share
of customers per type is held out (``holdout``) and the outcomes of both groups are tracked. The
customer step's :class:`~operators.contact.PolicyNote` s bring consent, zones and event time.
"""

from __future__ import annotations

from typing import Optional

from config.settings import Settings, ms, rule_definitions
from operators.consent import ConsentBook
from operators.contact import ContactConfig, PolicyNote, ZoneBook
from operators.events import format_ts
from operators.outcomes import Exposure, in_holdout
from operators.triggers import Candidate, Notice, ProfileUpdate, Suppressed


class Tally:
    """A count for telemetry (never output): ``held`` / ``released`` (quiet hours), ``exposed`` and
    ``outcome`` (``converted`` set) of a holdout comparison."""

    __slots__ = ("kind", "type", "group", "converted")

    def __init__(self, kind: str, type: str, group: str = "", converted: bool = False):
        self.kind, self.type, self.group, self.converted = kind, type, group, converted

    def __repr__(self) -> str:
        return f"Tally({self.kind}, {self.type}, {self.group}, {self.converted})"


class PolicyConfig:
    def __init__(self, s: Settings | None = None):
        s = s or Settings()
        self.cap = s.policy.marketing_cap
        self.cap_window = ms(s.policy.cap_window)
        self.apology_quiet = ms(s.policy.apology_quiet)
        self.cooldown = {t: ms(d) for t, d in s.policy.cooldown.items()}
        defs = rule_definitions(s)  # an enabled declared rule's own cooldown, unless policy.cooldown names its type
        for name in s.rules.enabled:
            d = defs.get(name)
            if d is not None and d.cooldown is not None and name not in self.cooldown:
                self.cooldown[name] = ms(d.cooldown)
        self.purchase_quiet = {t: ms(d) for t, d in s.policy.purchase_quiet.items()}
        self.max_age = ms(s.policy.max_trigger_age)  # live only: see decide's ``now``
        self.memory = ms(s.labels.churn_horizon)
        # how long a sent trigger or a purchase can still matter to a clause
        self.horizon = max([self.cap_window, self.apology_quiet, *self.cooldown.values(),
                            *self.purchase_quiet.values(), 0])
        self.contact = ContactConfig(s)


class PolicyState:
    """What policy remembers of one customer (picklable Bytewax state)."""

    __slots__ = ("sent", "marketing", "apologies", "escalated", "orders", "consent", "zones", "held", "exposures")

    def __init__(self) -> None:
        self.sent: dict[str, list[int]] = {}  # marketing type -> event times that went out
        self.marketing: list[int] = []  # event times of marketing triggers that went out
        self.apologies: dict[str, int] = {}  # order id -> event time of its delay_apology
        self.escalated: dict[str, list] = {}  # conversation key -> [escalated ts, closed ts or None]
        self.orders: list[int] = []  # event times of recent purchases
        self.consent = ConsentBook()
        self.zones = ZoneBook()
        self.held: list[tuple[int, Candidate]] = []  # (release time, candidate) held by quiet hours
        self.exposures: list[Exposure] = []  # sent / held-out candidates whose attribution window is open

    def __getstate__(self):
        return (self.sent, self.marketing, self.apologies, self.escalated, self.orders,
                self.consent, self.zones, self.held, self.exposures)

    def __setstate__(self, s):
        self.sent, self.marketing, self.apologies, self.escalated, self.orders = s[:5]
        if len(s) > 5:
            self.consent, self.zones, self.held, self.exposures = s[5:]
        else:  # a snapshot from before the contact policy
            self.consent, self.zones, self.held, self.exposures = ConsentBook(), ZoneBook(), [], []

    def decide(self, item: Candidate | Notice | PolicyNote, cfg: PolicyConfig, now: Optional[int] = None) -> list:
        """A candidate -> [the candidate, its profile update] or [Suppressed] (or [] while quiet hours
        hold it); a notice -> [] or, for a clock note, what it releases; plus :class:`Tally` s.
        ``now`` (ms, live only: the wall clock): a marketing trigger that would go out but was due
        more than ``max_trigger_age`` before it is suppressed as ``stale`` (and not counted as sent);
        one quiet hours held goes out at its release, which is its age."""
        if isinstance(item, PolicyNote):
            return self._note(item, cfg)
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
            reason = self._contact(c, c.event_ts, cfg) or self._suppression(c, cfg)
            if reason is None and now is not None and now - c.event_ts > cfg.max_age:
                reason = "stale"  # catch-up after an outage, a first start over history
            if reason is not None:
                return [Suppressed(c, reason)]
            release = cfg.contact.quiet.release(c.event_ts, self.zones.at(c.event_ts, cfg.contact.quiet.default_zone))
            if release is not None:  # night where the customer is: judged again when it ends
                self.held.append((release, c))
                self.held.sort(key=_held_order)
                return [Tally("held", c.type)]
        elif c.type == "delay_apology":
            self.apologies[c.key] = c.event_ts
        return self._send(c, c.event_ts, cfg)

    def _send(self, c: Candidate, start: int, cfg: PolicyConfig) -> list:
        """Out it goes, unless the customer is in the type's holdout group (judged as if sent: the
        groups must meet the same clauses later). Either way an exposure starts at ``start``."""
        out: list = []
        if c.policy_class == "marketing":  # by class: a shop's own marketing types count too
            self.marketing.append(c.event_ts)
            self.sent.setdefault(c.type, []).append(c.event_ts)
            c.channels = self.consent.channels(start, "marketing", cfg.contact.opt_out)
        else:  # service never waits for marketing consent; a revoked service channel is left out
            c.channels = self.consent.channels(start, "service", True)
        self._forget(c.event_ts, cfg)
        held_out = in_holdout(c.customer_id, c.type, cfg.contact.shares.get(c.type, 0.0), cfg.contact.key)
        window = cfg.contact.windows.get(c.type)
        if window is not None:
            group = "holdout" if held_out else "sent"
            e = Exposure(c.type, group, start, start + window)
            e.converted = any(e.start <= o < e.end for o in self.orders)
            self.exposures.append(e)
            out.append(Tally("exposed", c.type, group))
        if held_out:
            return [Suppressed(c, "holdout"), *out]
        update = ProfileUpdate(c.customer_id, {
            f"last_trigger.{c.type}": {"trigger_id": c.trigger_id, "event_ts": format_ts(c.event_ts)}
        })
        return [c, update, *out]

    def _contact(self, c: Candidate, at: int, cfg: PolicyConfig) -> Optional[str]:
        if not self.consent.channels(at, "marketing", cfg.contact.opt_out):
            return "no_consent"
        return None

    def _note(self, n: PolicyNote, cfg: PolicyConfig, now: Optional[int] = None) -> list:
        if n.kind == "consent":
            self.consent.add(n.ts, *n.data)
            latest = self.consent.changes[-1][0] if self.consent.changes else n.ts  # a late change arrives
            return [ProfileUpdate(n.customer_id, {"consent": {  # what the API and the agent page show
                "marketing": self.consent.channels(latest, "marketing", cfg.contact.opt_out),
                "service": self.consent.channels(latest, "service", True)}})]
        if n.kind == "zone":
            self.zones.add(n.ts, n.data[0], n.data[1])
            return []
        out: list = []  # clock: the customer's frontier has passed n.ts
        while self.held and self.held[0][0] <= n.ts:
            release, c = self.held.pop(0)
            out.extend(self._release(c, release, n.data if release == n.ts else None, cfg, now))
        if self.exposures and any(e.end <= n.ts for e in self.exposures):
            keep = []
            for e in self.exposures:
                if e.end <= n.ts:
                    out.append(Tally("outcome", e.type, e.group, e.converted))
                else:
                    keep.append(e)
            self.exposures = keep
        return out

    def _release(self, c: Candidate, release: int, last_night_click: Optional[int], cfg: PolicyConfig,
                 now: Optional[int] = None) -> list:
        """The quiet hours that held ``c`` ended at ``release``: is its reason still there?"""
        t = c.event_ts
        judged = Tally("released", c.type)
        if any(t <= o < release for o in self.orders):
            return [judged, Suppressed(c, "quiet_purchased")]
        if last_night_click is not None and last_night_click > t and (
                c.type == "abandoned_cart" or last_night_click >= t + cfg.contact.session_gap):
            return [judged, Suppressed(c, "quiet_returned")]  # back on the site: the cart is in front of them
        reason = self._contact(c, release, cfg) or self._suppression(c, cfg)
        if reason is None and now is not None and now - release > cfg.max_age:
            reason = "stale"  # live: the morning it waited for is long past (an outage)
        if reason is not None:
            return [judged, Suppressed(c, reason)]
        c.released_at = release
        return [judged, *self._send(c, release, cfg)]

    def _notice(self, n: Notice, cfg: PolicyConfig) -> None:
        if n.kind == "conversation_closed":  # closes every escalation of the conversation open then
            cid = _conversation_of(n.key)
            for key, span in self.escalated.items():
                if span[1] is None and span[0] <= n.ts and _conversation_of(key) == cid:
                    span[1] = n.ts
        elif n.kind == "order_placed":
            self.orders.append(n.ts)
            for e in self.exposures:
                if e.start <= n.ts < e.end:
                    e.converted = True
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


def _held_order(h: tuple) -> tuple:
    return h[0], h[1].event_ts, h[1].trigger_id


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
