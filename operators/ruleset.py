"""The rule interface: a trigger rule is a small unit of the functional core (issue 14).

A rule has a ``name`` (its state slice is pickled under it), the event ``types`` it listens to,
a ``policy_class`` (``service`` or ``marketing``: which policy clauses its candidates pass) and
up to four verbs, all pure and all in event time (ms since the epoch, UTC):

- ``new_slice()``: the rule's fresh per-customer state (``None``: it keeps none). A customer
  resumed from a snapshot written before the rule existed gets this fresh slice.
- ``on_event(ctx, s, ev, late, cfg, out)``: called after the customer's shared facts took ``ev``,
  only for events of ``types``; appends candidates (or score requests carrying one) to ``out``.
- ``next_due(ctx, s, cfg) -> int``: the rule's earliest timer (:data:`NEVER`: none); only rules
  with ``timed = True`` are asked. The customer keeps one earliest due time over all rules.
- ``on_timer(ctx, s, due, cfg, out)``: the timer at ``due`` fires.
- ``quiet(ctx, s) -> bool``: nothing of the rule's is pending for this customer, so the customer
  may be compacted (``operators.customer.compact``) and its slice dropped: it must then behave
  exactly as a fresh slice. The default: ``s`` is None or equal (field by field) to a fresh slice.

``ctx`` is the customer's state, read-only for rules (tier, cart, value, recent items, open
orders, history: what every rule would otherwise recompute); ``s`` is the rule's own slice.
Rules are built once per worker from the settings (``operators.registry``).
"""

from __future__ import annotations

from typing import Any, Optional

NEVER = 1 << 62
SERVICE, MARKETING = "service", "marketing"


class Slice:
    """A rule's per-customer state, pickled by field name (a field added later starts at its
    class default when an older snapshot lacks it)."""

    __slots__ = ()

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
        for k, v in state.items():
            if k in self.__slots__:
                setattr(self, k, v)


class Rule:
    """Base class of hand-written rules (see the module docstring for the verbs)."""

    name = ""
    types: frozenset = frozenset()
    policy_class = MARKETING
    timed = False

    def __init__(self, cfg: Any) -> None:
        """``cfg``: the worker's :class:`operators.rules.RuleConfig` (settings in engine units)."""

    def new_slice(self) -> Optional[Slice]:
        return None

    def on_event(self, ctx: Any, s: Optional[Slice], ev: Any, late: bool, cfg: Any, out: list) -> None:
        pass

    def next_due(self, ctx: Any, s: Optional[Slice], cfg: Any) -> int:
        return NEVER

    def on_timer(self, ctx: Any, s: Optional[Slice], due: int, cfg: Any, out: list) -> None:
        pass

    def quiet(self, ctx: Any, s: Optional[Slice]) -> bool:
        """True when ``s`` holds nothing a fresh slice lacks (cold compaction drops it then)."""
        if s is None:
            return True
        fresh = self.new_slice()
        return fresh is not None and type(fresh) is type(s) and _fields(fresh) == _fields(s)


def _fields(s: Any) -> Any:
    """A slice's state for comparison: its pickled fields (``Slice``), else its ``__dict__``."""
    return s.__getstate__() if isinstance(s, Slice) else getattr(s, "__dict__", s)
