"""A trigger rule declared in the settings file, no Python (``rules.declared``; the catalogue's flows).

One :class:`Declared` rule runs one :class:`config.settings.DeclaredRule`: per customer it keeps
*episodes*, one per key value (the customer, a product, an order, a conversation: a field of the
events). An ``open`` event passing its filter opens the episode for its key (or counts one more
occurrence of it); ``extend`` events of the same key move its last activity; ``cancel`` events end
it (same key, or ``any``: every episode of the customer). Once ``count`` opening events fell within
``window`` the episode *qualifies* and is due ``idle`` after its last activity, ``delay`` after it
qualified, or at the time a field of the qualifying event holds (``at`` plus ``after``). At its due
time it fires one candidate (type = the rule's name) and ends; with ``rearm = "cancel"`` it stays
as a marker that keeps new opening events out until a cancel event comes.

Bounded: at most ``rules.max_episodes`` episodes per customer and rule (the least recently active
goes first), episodes that never qualified go when their opening events fall out of ``window``,
fired markers and unqualified episodes after ``expire`` without activity, and an episode due more
than ``rules.max_wait`` after its event never opens. All times are event time, ms since the epoch
(UTC). Late events (older than the customer's frontier) cancel but never open or extend.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from config.settings import DeclaredRule, ms
from operators.events import EVENT_TYPES, PROFILE_TYPES, Invalid, event_time, format_ts
from operators.event_table import FAMILY_OF
from operators.ruleset import NEVER, Rule, Slice
from operators.messages import PRIORITIES, Candidate
from operators.units import DAY


class Episode:
    """One key's episode: first and last activity, due time (NEVER: not qualified or fired), opening
    events counted, their times while it waits for ``count`` (None once qualified or count is 1),
    payload fields picked so far, and whether it fired (a ``rearm = cancel`` marker)."""

    __slots__ = ("opened", "last", "due", "n", "hits", "fields", "fired")

    def __init__(self, ts: int) -> None:
        self.opened = self.last = ts
        self.due = NEVER
        self.n = 0
        self.hits: Optional[list[int]] = None
        self.fields: Optional[dict] = None
        self.fired = False

    def __getstate__(self) -> tuple:
        return self.opened, self.last, self.due, self.n, self.hits, self.fields, self.fired

    def __setstate__(self, s: tuple) -> None:
        self.opened, self.last, self.due, self.n, self.hits, self.fields, self.fired = s


class _None(dict):
    """The one empty mapping of every slice with no episode (most customers' for most rules): it
    refuses writes, so a path that forgot to make its own dict fails loudly."""

    __slots__ = ()

    def _refuse(self, *args, **kwargs):
        raise TypeError("the shared empty episodes mapping is read-only")

    __setitem__ = __delitem__ = setdefault = update = _refuse

    def __reduce__(self):
        return (_none, ())


NONE: dict = _None()


def _none() -> dict:
    return NONE


class Episodes(Slice):
    """A declared rule's per-customer state: key value -> :class:`Episode`, and the earliest due."""

    __slots__ = ("episodes", "due")

    def __init__(self) -> None:
        self.episodes: dict[str, Episode] = NONE
        self.due = NEVER

    def absorb(self, other: "Episodes") -> None:
        """Identity merge: the other's episodes join (for a key both hold, the earlier-opened one)."""
        for k, ep in other.episodes.items():
            mine = self.episodes.get(k)
            if mine is None or ep.opened < mine.opened:
                if self.episodes is NONE:
                    self.episodes = {}
                self.episodes[k] = ep
        self.due = min((e.due for e in self.episodes.values()), default=NEVER)


def _settle(s: Episodes) -> None:
    """After a change: the earliest due again, and the shared empty mapping when none is left."""
    if not s.episodes:
        s.episodes, s.due = NONE, NEVER
    else:
        s.due = min(e.due for e in s.episodes.values())


def getter(path: str) -> Callable[[Any], list]:
    """``path`` (``a``, ``a.b``, ``items[].product_id``) -> a function of an event giving the list
    of values found there (empty when absent or null)."""
    steps = [(p[:-2], True) if p.endswith("[]") else (p, False) for p in path.split(".")]

    def get(ev: Any) -> list:
        values = [ev.data]
        for name, many in steps:
            nxt = []
            for v in values:
                if isinstance(v, dict):
                    x = v.get(name)
                    if many:
                        if isinstance(x, list):
                            nxt.extend(x)
                    elif x is not None:
                        nxt.append(x)
            values = nxt
        return values

    if len(steps) == 1 and not steps[0][1]:  # the common case: one top-level field
        name = steps[0][0]
        return lambda ev: [] if (x := ev.data.get(name)) is None else [x]
    return get


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _test(op: str, operand: Any) -> Callable[[Any], bool]:
    if op in ("eq", "ne"):  # true is not 1 here, as in JSON
        same = lambda x: x == operand and (type(x) is bool) == (type(operand) is bool)  # noqa: E731
        return same if op == "eq" else (lambda x: not same(x))
    if op == "in":
        return lambda x: x in operand
    if op == "not_in":
        return lambda x: x not in operand
    cmp = {"gt": float.__gt__, "gte": float.__ge__, "lt": float.__lt__, "lte": float.__le__}[op]
    bound = float(operand)
    return lambda x: _number(x) and cmp(float(x), bound)


def predicate(where: dict[str, dict]) -> Optional[Callable[[Any], bool]]:
    """The filter of an event match: every field's every comparison holds (for a ``[]`` path, on
    some value); ``exists`` asks for a non-null value or its absence."""
    checks = []
    for path, cond in where.items():
        get = getter(path)
        tests = [_test(op, v) for op, v in cond.items() if op != "exists"]
        exists = cond.get("exists")
        checks.append((get, tests, exists))
    if not checks:
        return None

    def ok(ev: Any) -> bool:
        for get, tests, exists in checks:
            values = get(ev)
            if exists is not None and bool(values) is not exists:
                return False
            if tests and not any(all(t(v) for t in tests) for v in values):
                return False
        return True

    return ok


class Match:
    """A compiled ``open`` / ``extend`` / ``cancel`` entry: its filter and how it finds keys."""

    __slots__ = ("ok", "keys", "any")

    def __init__(self, where: dict, key: str) -> None:
        self.ok = predicate(where)
        self.any = key == "any"
        if key == "customer":
            self.keys = lambda ev: ("",)
        elif self.any:
            self.keys = lambda ev: ()
        else:
            get = getter(key)
            self.keys = lambda ev: [v if type(v) is str else str(v) for v in get(ev) if type(v) in (str, int)]


COMMON_FIELDS = frozenset({"event_id", "type", "customer_id", "ts"})  # every event's (CONTRACT.md section 1)


class DefinitionError(ValueError):
    """A declaration the engine cannot run (an unknown event type): one line naming rule and field."""


class Declared(Rule):
    """The rule a :class:`config.settings.DeclaredRule` describes (module docstring)."""

    timed = True

    def __init__(self, cfg: Any, d: DeclaredRule) -> None:
        self.d = d
        self.name = d.name
        self.policy_class = d.policy_class
        self.count = d.count
        self.window = ms(d.window) if d.window is not None else None
        self.idle = ms(d.due.idle) if d.due.idle is not None else None
        self.delay = ms(d.due.delay) if d.due.delay is not None else None
        self.at = getter(d.due.at) if d.due.at is not None else None
        self.after = ms(d.due.after) if d.due.after is not None else 0
        self.rearm_on_cancel = d.rearm == "cancel"
        self.expire = ms(d.expire)
        self.max_episodes = getattr(cfg, "max_episodes", 32)
        self.max_wait = getattr(cfg, "max_wait", 366 * DAY)
        self.reason = d.reason or d.name
        self.base = PRIORITIES.index(d.priority) if d.priority else None
        self.payload = [(name, src, None if src.startswith("$") else getter(src)) for name, src in d.payload.items()]
        self.picked = [(name, get) for name, _, get in self.payload if get is not None]
        self.warnings: list[str] = []  # fields outside the contract (operators.registry logs them)
        self.opens = self._compile("open", d.open)
        self.extends = self._compile("extend", d.extend)
        self.cancels = self._compile("cancel", d.cancel)
        self.types = frozenset(self.opens) | frozenset(self.extends) | frozenset(self.cancels)
        fields = COMMON_FIELDS | {f.name for t in self.types for f in FAMILY_OF[t].fields}
        for name, src, _get in self.payload:  # a payload field may come from any event of the rule
            head = src.split(".", 1)[0].removesuffix("[]")
            if not src.startswith("$") and head not in fields:
                self.warnings.append(f"rule {self.name!r}, field payload.{name}: {head!r} is a contract field of "
                                     f"none of its events (fine for a field of your own; the contract's: "
                                     f"{', '.join(sorted(fields))})")

    def _compile(self, field: str, matches: Iterable) -> dict[str, tuple[Match, ...]]:
        by_type: dict[str, list] = {}
        for i, m in enumerate(matches):
            for t in m.type:
                if t not in EVENT_TYPES:
                    raise DefinitionError(f"rule {self.name!r}, field {field}.{i}.type: unknown event type {t!r}")
                if t in PROFILE_TYPES:  # consent and erasure are policy's and privacy's, never a rule's
                    raise DefinitionError(f"rule {self.name!r}, field {field}.{i}.type: {t!r} never reaches rules")
                by_type.setdefault(t, []).append(Match(m.where, m.key or self.d.key))
            key = m.key or self.d.key
            paths = [(f"{field}.{i}.where.{p}", p) for p in m.where]
            paths += [(f"{field}.{i}.key", key)] if key not in ("customer", "any") else []
            for where, path in paths:
                self._check_field(where, path, m.type)
        return {t: tuple(ms_) for t, ms_ in by_type.items()}

    def _check_field(self, where: str, path: str, types: Iterable[str]) -> None:
        """A path whose first field the contract does not give a type it reads goes to
        :attr:`warnings` (a shop's own extra field is fine; a misspelt one would match nothing)."""
        head = path.split(".", 1)[0].removesuffix("[]")
        for t in types:
            known = COMMON_FIELDS | {f.name for f in FAMILY_OF[t].fields}
            if head not in known:
                self.warnings.append(f"rule {self.name!r}, field {where}: {head!r} is not a contract field of {t} "
                                     f"(fine for a field of your own; the contract's: {', '.join(sorted(known))})")

    def new_slice(self) -> Episodes:
        return Episodes()

    # ------------------------------------------------------------------ events

    def on_event(self, ctx: Any, s: Episodes, ev: Any, late: bool, cfg: Any, out: list) -> None:
        t, changed = ev.type, False
        for m in self.cancels.get(t, ()):
            if s.episodes and (m.ok is None or m.ok(ev)):
                ts = ev.ts  # (a late cancel ends only the episodes it came after, in event time)
                for k in list(s.episodes) if m.any else m.keys(ev):
                    ep = s.episodes.get(k)
                    if ep is not None and ep.opened <= ts:
                        del s.episodes[k]
                        changed = True
        if not late:
            for m in self.opens.get(t, ()):
                if m.ok is None or m.ok(ev):
                    for k in m.keys(ev):
                        self._open(s, k, ev)
                        changed = True
            for m in self.extends.get(t, ()):
                if m.ok is None or m.ok(ev):
                    for k in m.keys(ev):
                        ep = s.episodes.get(k)
                        if ep is not None and not ep.fired:
                            self._touch(ep, ev)
                            changed = True
        if changed:
            _settle(s)

    def _open(self, s: Episodes, k: str, ev: Any) -> None:
        ts = ev.ts
        ep = s.episodes.get(k)
        if ep is None:
            if s.episodes is NONE:
                s.episodes = {}
            self._prune(s, ts)
            ep = s.episodes[k] = Episode(ts)
        elif ep.fired:
            return  # rearm = cancel: one per episode until a cancel event
        ep.n += 1
        self._touch(ep, ev)
        if ep.due < NEVER:
            return  # qualified already (an idle timer moved with the activity)
        if self.count > 1:
            hits = [h for h in (ep.hits or ()) if h > ts - self.window]
            hits.append(ts)
            if len(hits) < self.count:
                ep.hits = hits
                return
            ep.hits = None
        due = self._due(ep, ev)
        if due is None or due - ts > self.max_wait:
            del s.episodes[k]  # no time in the field, or further than max_wait: never opens
            return
        ep.due = due

    def _due(self, ep: Episode, ev: Any) -> Optional[int]:
        if self.idle is not None:
            return ep.last + self.idle
        if self.delay is not None:
            return ev.ts + self.delay
        values = self.at(ev)
        try:  # an ISO-8601 timestamp or epoch number, as the contract takes ``ts``
            return event_time(values[0], "due") + self.after if values else None
        except Invalid:
            return None

    def _touch(self, ep: Episode, ev: Any) -> None:
        if ev.ts > ep.last:
            ep.last = ev.ts
            if self.idle is not None and ep.due < NEVER:
                ep.due = ep.last + self.idle
        for name, get in self.picked:  # the latest value an event of the episode carried
            values = get(ev)
            if values:
                if ep.fields is None:
                    ep.fields = {}
                ep.fields[name] = values[0] if len(values) == 1 else values

    def _prune(self, s: Episodes, ts: int) -> None:
        """Before a new episode: drop the stale, then the least recently active beyond the cap."""
        eps = s.episodes
        if not eps:
            return
        stale = [k for k, e in eps.items() if e.due >= NEVER and (
            e.last < ts - self.expire or (e.hits is not None and e.hits[-1] <= ts - self.window))]
        for k in stale:
            del eps[k]
        while len(eps) >= self.max_episodes:
            del eps[min(eps, key=lambda k: (eps[k].last, k))]

    # ------------------------------------------------------------------ timers

    def next_due(self, ctx: Any, s: Optional[Episodes], cfg: Any) -> int:
        return NEVER if s is None else s.due

    def on_timer(self, ctx: Any, s: Episodes, due: int, cfg: Any, out: list) -> None:
        k = min((k for k, e in s.episodes.items() if e.due == due), default=None)
        if k is not None:
            ep = s.episodes[k]
            out.append(self.candidate(ctx, k, ep, due, cfg))
            if self.rearm_on_cancel:
                ep.fired, ep.due, ep.last = True, NEVER, due
            else:
                del s.episodes[k]
        _settle(s)

    def candidate(self, ctx: Any, k: str, ep: Episode, due: int, cfg: Any) -> Candidate:
        known = {"$key": k or ctx.customer_id, "$count": ep.n, "$opened": format_ts(ep.opened),
                 "$last": format_ts(ep.last), "$due": format_ts(due)}
        fields = ep.fields or {}
        payload = {name: known[src] if get is None else fields.get(name) for name, src, get in self.payload}
        cand = Candidate(self.name, ctx.customer_id, due, [self.reason], payload, key=f"{k}|{ep.opened}" if k else str(ep.opened),
                         tier=ctx.tier(cfg), policy_class=self.policy_class, base=self.base)
        return cand

    def quiet(self, ctx: Any, s: Optional[Episodes]) -> bool:
        """Nothing pending: no episode (compaction may drop the slice)."""
        return s is None or not s.episodes


def declared_rules(cfg: Any) -> dict[str, Callable[[Any], Rule]]:
    """Name -> a factory of the :class:`Declared` rule, for every definition in ``cfg.definitions``."""
    return {name: (lambda c, d=d: Declared(c, d)) for name, d in getattr(cfg, "definitions", {}).items()}
