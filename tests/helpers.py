"""Small builders for unit tests of the functional core (no Bytewax, no I/O)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

from operators.customer import CustomerState
from operators.event_table import needs_customer, sample_fields
from operators.events import Event, validate
from operators.rules import RuleConfig
from operators.triggers import Candidate

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
_ids = itertools.count()


def at(minutes: float = 0, hours: float = 0, days: float = 0) -> str:
    return (T0 + timedelta(minutes=minutes, hours=hours, days=days)).isoformat().replace("+00:00", "Z")


def ms_at(minutes: float = 0, hours: float = 0, days: float = 0) -> int:
    return int((T0 + timedelta(minutes=minutes, hours=hours, days=days)).timestamp() * 1000)


def ev(type: str, ts: str, customer: str = "c1", **fields) -> Event:
    """A valid event of ``type``: the required fields at the events table's sample values
    (operators/event_table.py), ``fields`` on top; no customer for a catalogue event."""
    defaults = sample_fields(type)
    if type == "order_placed":
        defaults["promised_delivery_ts"] = at(days=3)
    who = {"customer_id": customer} if needs_customer(type) else {}
    obj = {"event_id": f"e{next(_ids)}", "type": type, **who, "ts": ts, **defaults, **fields}
    return validate(obj)


class Machine:
    """A customer state machine plus everything it emitted, for assertions."""

    def __init__(self, cfg: RuleConfig | None = None, customer: str = "c1", lateness_ms: int | None = 0):
        """``lateness_ms`` 0 (the default here): each event applies as it is fed, so a rule test
        reads as the rule; ``None`` keeps the settings' reorder buffer."""
        self.cfg = cfg or RuleConfig()
        if lateness_ms is not None:
            self.cfg.lateness = lateness_ms
        self.state = CustomerState(customer)
        self.out: list = []

    def feed(self, *events: Event) -> list[str]:
        statuses = []
        for e in events:
            res, status = self.state.process(e, self.cfg)
            self.out.extend(res)
            statuses.append(status)
        return statuses

    def advance(self, ts_ms: int) -> None:
        """Input is over up to ``ts_ms``: apply what is held, fire the timers due by then."""
        self.state.flush(ts_ms, self.cfg, self.out)

    def candidates(self, type: str | None = None) -> list[Candidate]:
        from operators.scoring import ScoreRequest

        found = []
        for o in self.out:
            c = o.candidate if isinstance(o, ScoreRequest) else o
            if isinstance(c, Candidate) and (type is None or c.type == type):
                found.append(c)
        return found


def with_closing_events(lines: list[bytes], ts: str = "2026-09-01T00:00:00Z") -> list[bytes]:
    """``lines`` plus one page view per customer at ``ts``, far after them: live has no end-of-input
    flush, so this makes every timer of the simulated period pass by an event, live and in replay.
    (In the past: live, an event ahead of the wall clock is a ``future_ts`` dead letter.)"""
    import orjson

    customers = set()
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("customer_id"), str):
            customers.add(obj["customer_id"])
    return lines + [orjson.dumps({"event_id": f"close-{c}", "type": "page_view", "customer_id": c, "ts": ts,
                                  "session_id": "closing"}) for c in sorted(customers)]
