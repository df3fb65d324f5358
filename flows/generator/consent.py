"""Consent events of a customer and the abandoned-cart reminders the engine would send them.

The generator knows who gets a reminder (consent, not in the holdout group, the quiet hours over,
no reminder in the cooldown) so that a reminded customer sometimes comes back for the cart: a
replay then measures an uplift over the holdout group."""

from __future__ import annotations

import random

from config.settings import HoldoutSettings, QuietHoursSettings
from flows.generator.timefmt import DAY, HOUR, MIN, SEC
from flows.generator.truth import IDLE
from operators.contact import QuietHours
from operators.outcomes import in_holdout

SESSION_MIN_GAP = 40 * MIN  # sessions of one customer are at least this far apart
# Reminders: the engine's default holdout group and quiet hours (the generator knows who gets one)
_HOLDOUT = HoldoutSettings()
_HOLDOUT_SHARE = _HOLDOUT.share.get("abandoned_cart", 0.0)
_HOLDOUT_KEY = _HOLDOUT.key.encode()
_QUIET = QuietHoursSettings()
QUIET = QuietHours(_QUIET.start, _QUIET.end, _QUIET.default_timezone, _QUIET.enabled)
REMIND_RESPONSE = 0.3  # a reminded customer comes back for the cart within hours this often
REMIND_COOLDOWN = DAY  # the engine's abandoned_cart cooldown
_ZONES = ("Europe/London", "Europe/Berlin", "Europe/Lisbon", "Europe/Madrid")


class ConsentMixin:
    """Part of ``Customer``: consent events (``crm.profile``) and reminder responses."""

    def _consent(self) -> None:
        """Consent events (own random stream: the rest of the life is the same as without them):
        most grant marketing by email (some sms, push) when they join (or sign up before a
        backfilled order), some say no, some say
        nothing; a few revoke later. Half tell their time zone."""
        rc = self.rc = random.Random(self.idx * 104_729 + self.cat_seed * 2_000_029 + 3)
        self.zone = rc.choice(_ZONES) if rc.random() < 0.5 else None
        self.granted: list[tuple[int, bool]] = []  # (ts, email marketing allowed from then on)
        ts = self.first_seen + rc.randrange(10 * MIN)
        u = rc.random()
        extra = {"timezone": self.zone} if self.zone else {}
        if u < 0.82:
            self.emit(ts, "consent_updated", {"channel": "email", "purpose": "marketing", "granted": True, **extra})
            for ch, p in (("sms", 0.4), ("push", 0.3)):
                if rc.random() < p:
                    self.emit(ts + SEC, "consent_updated", {"channel": ch, "purpose": "marketing", "granted": True})
            self.granted.append((ts, True))
            if rc.random() < 0.08:
                rts = ts + int(rc.random() * max(DAY, self.end - ts))
                self.emit(rts, "consent_updated", {"channel": "all", "purpose": "marketing", "granted": False})
                self.granted.append((rts, False))
        elif u < 0.88:
            self.emit(ts, "consent_updated", {"channel": "all", "purpose": "marketing", "granted": False, **extra})

    def _may_email(self, ts: int) -> bool:
        ok = False
        for t, g in self.granted:
            if t <= ts:
                ok = g
        return ok

    def _remind(self, last_end: int, next_t: int) -> int:
        """A cart left at the end of the session: would the engine remind them (consent, not held
        out, the night over before they come back on their own, no reminder in the cooldown)? Then
        sometimes they come back for it; returns the next session's time."""
        if not self.cart or self.cart_ts is None or self.cart_ts < last_end - 2 * HOUR:
            return next_t
        due = self.cart_ts + IDLE
        send = QUIET.release(due, self.zone or QUIET.default_zone) or due
        if next_t <= send + 5 * MIN or due - self.last_reminder < REMIND_COOLDOWN or not self._may_email(send):
            return next_t
        self.last_reminder = due
        if in_holdout(self.cid, "abandoned_cart", _HOLDOUT_SHARE, _HOLDOUT_KEY):
            return next_t
        if self.rc.random() >= REMIND_RESPONSE:
            return next_t
        back = max(send + int(self.rc.uniform(10 * MIN, 6 * HOUR)), last_end + SESSION_MIN_GAP)
        if back < next_t:
            self.nudged = True
            return back
        return next_t
