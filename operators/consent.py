"""Consent: which channels a customer allows, for which purpose, over event time (pure).

``consent_updated`` (topic ``crm.profile``) sets one channel, or ``all``, for one purpose. Policy
asks :meth:`ConsentBook.channels` at a candidate's event time (and again when a held one is
released), so the answer does not depend on the order in which events and candidates arrive.
"""

from __future__ import annotations

from config.settings import CHANNELS

KEPT = 32  # consent changes kept per customer; older ones are folded into a base state


class ConsentBook:
    """``changes``: (ts, channel, purpose, granted) sorted by ts; ``base``: the state before them."""

    __slots__ = ("changes", "base")

    def __init__(self) -> None:
        self.changes: list[tuple] = []
        self.base: dict[tuple[str, str], bool] = {}

    def __getstate__(self):
        return (self.changes, self.base)

    def __setstate__(self, s):
        self.changes, self.base = s

    def add(self, ts: int, channel: str, purpose: str, granted: bool) -> None:
        i = len(self.changes)
        while i and self.changes[i - 1][0] > ts:
            i -= 1
        self.changes.insert(i, (ts, channel, purpose, granted))
        if len(self.changes) > KEPT:  # fold the oldest into the base state
            _apply(self.base, self.changes.pop(0))

    def state(self, ts: int) -> dict[tuple[str, str], bool]:
        """(channel, purpose) -> granted, for what is known at ``ts``."""
        st = dict(self.base)
        for change in self.changes:
            if change[0] > ts:
                break
            _apply(st, change)
        return st

    def channels(self, ts: int, purpose: str, default: bool) -> list[str]:
        """The channels allowed for ``purpose`` at ``ts``, in :data:`CHANNELS` order; a channel
        never mentioned is ``default`` (marketing: the ``opt_in``/``opt_out`` setting; service: allowed)."""
        st = self.state(ts)
        return [c for c in CHANNELS if st.get((c, purpose), default)]


def _apply(st: dict, change: tuple) -> None:
    _ts, channel, purpose, granted = change
    for c in (CHANNELS if channel == "all" else (channel,)):
        st[(c, purpose)] = granted
