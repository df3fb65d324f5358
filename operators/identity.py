"""Identity: what moves between the two profile steps when a guest is identified (CONTRACT.md).

The flow keys events by their ``customer_id``. An ``identify`` (``anonymous_id`` -> ``customer_id``)
reaches both ids' keys as an :class:`Identify`; from then on both keys forward their events,
re-keyed to the customer (:func:`rekey`), to a second profile step keyed by customer, and send
their state there as a :class:`Merge`: the customer's whole state (``adopt``), the guest's to be
absorbed (:meth:`operators.customer.CustomerState.absorb`). A Bytewax dataflow has no cycles, so
the merged state cannot live in the first step; customers never identified never leave it.
"""

from __future__ import annotations

from typing import Any, Optional

from operators.events import Event


class Identify:
    """An ``identify`` event as one of its two ids' keys sees it: ``guest`` is True on the
    ``anonymous_id``'s key, False on the ``customer_id``'s."""

    __slots__ = ("event", "guest")

    def __init__(self, event: Event, guest: bool):
        self.event = event
        self.guest = guest

    @property
    def target(self) -> str:
        return self.event.customer_id

    @property
    def anonymous_id(self) -> str:
        return self.event.data["anonymous_id"]

    def __reduce__(self):
        return (Identify, (self.event, self.guest))


class Merge:
    """A state on its way to the customer's key in the merged step. ``adopt``: the customer's
    own state (it becomes the merged state); else a guest's (absorbed into it). ``ts``: the
    identify's event time; ``pos``: its input position."""

    __slots__ = ("customer_id", "state", "adopt", "ts", "pos")

    def __init__(self, customer_id: str, state: Any, adopt: bool, ts: int, pos: int = 0):
        self.customer_id = customer_id
        self.state = state
        self.adopt = adopt
        self.ts = ts
        self.pos = pos

    def __reduce__(self):
        return (Merge, (self.customer_id, self.state, self.adopt, self.ts, self.pos))


def identify_keys(ev: Event) -> list[tuple[str, Any]]:
    """Where an ``identify`` goes in the first profile step: the guest's key and the customer's
    (one key when both ids are the same: nothing to merge)."""
    anon = ev.data["anonymous_id"]
    if anon == ev.customer_id:  # nothing to merge
        return []
    return [(anon, Identify(ev, True)), (ev.customer_id, Identify(ev, False))]


def rekey(ev: Event, customer_id: str) -> Event:
    """``ev`` as the known customer's (the original id stays in ``ev.data``)."""
    if ev.customer_id == customer_id:
        return ev
    return Event(ev.event_id, ev.type, customer_id, ev.ts, ev.data, ev.source, ev.pos)


def route_out(x: Any) -> bool:
    """Outputs of the first profile step bound for the merged step."""
    t = type(x)
    return t is Event or t is Merge


def merge_into(mine: Optional[Any], msg: Merge, cfg: Any) -> Any:
    """The merged state after ``msg`` arrives at the customer's key (in any order with the other
    merges: an adopted state absorbs what came before it)."""
    if msg.adopt:
        if mine is not None:
            msg.state.absorb(mine, cfg)
        return msg.state
    mine.absorb(msg.state, cfg)
    return mine
