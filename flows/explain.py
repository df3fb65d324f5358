"""``crm-stream explain`` and ``crm-stream backtest``: why a customer did or did not get a message,
and what changed rules or policy settings would have sent on past logs.

* :func:`timeline` feeds one customer's events (read from the logs as a replay merges them)
  through the functional core (``CustomerState`` and ``PolicyState``, no models) and records per
  event what it changed for the rules: cart, open orders and conversations, the next timer,
  the candidates and the policy's decisions.
* :func:`explain` adds what the full replay (models included) actually sent and held back for
  that customer, and for a type that did not fire, why not.
* :func:`backtest` replays the same logs under two settings and compares, per trigger type,
  what was sent and suppressed (by reason), with a few examples of added and removed triggers.

Times are ISO-8601 UTC strings in every output (``format_ts`` of epoch ms).
"""

from __future__ import annotations

import heapq
import tempfile
from datetime import timedelta
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import orjson

from config.settings import Settings, format_duration, rule_definitions
from connectors.files import read_merged
from operators.customer import CustomerState
from operators.declared import Declared
from operators.ruleset import NEVER
from operators.events import Event, decode, format_ts, parse_ts
from operators.contact import ContactTracker
from operators.policy import PolicyConfig, PolicyState, Tally
from operators.rules import RuleConfig
from operators.messages import Candidate, Notice, ScoreRequest, Suppressed

WATCHED = ("cart", "open_orders", "open_conversations", "tier", "order_count")
# the event types each contract trigger's rule listens to (what "why not" looks for)
LISTENS = {
    "abandoned_cart": ("add_to_cart", "remove_from_cart", "checkout_started", "order_placed"),
    "delay_apology": ("order_placed", "order_delayed", "order_shipped", "order_delivered", "order_cancelled"),
    "escalation": ("chat_message", "chat_closed"),
    "proactive_outreach": ("search", "help_view", "page_view", "product_view", "order_placed"),
}


def customer_events(settings: Settings, logs: list[Path], customer_id: str) -> tuple[list[Event], Optional[int]]:
    """The customer's valid events in replay order (merged by ``ts``, duplicates by ``event_id``
    dropped) and the latest ``ts`` of the whole input (where a replay's end fires timers)."""
    events, seen = [], set()
    end = None
    for item in read_merged(logs, lambda raw, src: decode(raw, src, settings.time.max_event_bytes)):
        if type(item) is not Event:
            continue
        end = item.ts if end is None else max(end, item.ts)
        if item.customer_id == customer_id and item.event_id not in seen:
            seen.add(item.event_id)
            events.append(item)
    return events, end


def timeline(settings: Settings, events: list[Event], end: Optional[int]) -> list[dict[str, Any]]:
    """One row per event in ts order (and one for the end of input): ``{"ts", "event", "event_id",
    "changed", "timer", "candidates", "decisions"}``, each event's effect at its own ``ts``; before
    it, a row of its own (``event`` ``timer``, or ``quiet hours end`` for what they held) for each
    time a timer fell due between two events, with the candidates and decisions of that time.
    Model-driven candidates carry their threshold: the core has no model, so whether a score
    confirmed them comes from the replay (:func:`explain`)."""
    # each event's effect at its own ts: the input is in ts order, so the reorder buffer would only
    # apply the same effects later in processing (the replay's own outputs stay the truth)
    exact = settings.model_copy(update={"time": settings.time.model_copy(update={"lateness": timedelta(0)})})
    cfg, pcfg = RuleConfig(exact), PolicyConfig(exact)
    events = sorted(events, key=lambda e: e.ts)
    if not events:
        return []
    state, policy = CustomerState(events[0].customer_id), PolicyState()
    tracker = ContactTracker()  # consent, zones and quiet-hours clock for policy, as the profile step sends them
    before: dict = {}
    timer = None
    rows = []
    steps = [(e, lambda e=e: state.process(e, cfg)[0]) for e in events]
    steps.append((None, lambda: state.flush(end, cfg)))
    for ev, step in steps:
        items: list = []  # what policy sees, in the profile step's order (flows.dataflow ProfileLogic._contact)
        if ev is not None:
            tracker.observe(ev, pcfg.contact, items)
        outs = step()
        frontier = ev.ts if ev is not None else (end if end is not None else state.clock or 0)
        for o in outs:
            c = o.candidate if type(o) is ScoreRequest else o
            if type(c) is Candidate:
                tracker.due(state.customer_id, min(c.event_ts, frontier), False, items)
                tracker.register(c, pcfg.contact)
                items.append(c)
            elif type(o) is Notice:
                items.append(o)
        tracker.due(state.customer_id, frontier, ev is None, items)
        after = _watched(state, cfg)
        due = state.next_deadline(cfg)
        row = {"ts": format_ts(ev.ts) if ev else (format_ts(end) if end is not None else None),
               "event": ev.type if ev else "end of input", "event_id": ev.event_id if ev else None,
               "changed": {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v},
               "timer": None if due == timer else {"was": _ts(timer), "now": _ts(due)},
               "candidates": [], "decisions": []}
        earlier: dict[int, dict] = {}  # what fell due before this event, by its time
        for item in items:
            at = _item_ts(item)
            into = row if at >= frontier else earlier.setdefault(at, _due_row(at))
            if type(item) is Candidate:
                into["candidates"].append(_describe(item))
                if item.threshold is not None:
                    continue  # the model decides: the replay's outputs say whether it went on
            _decisions(into, item, policy.decide(item, pcfg))
        for at in sorted(earlier):
            due_row = earlier[at]
            if due_row["candidates"] or due_row["decisions"]:  # a clock note that released nothing: no row
                due_row["event"] = "timer" if due_row["candidates"] else "quiet hours end"
                rows.append(due_row)
        before, timer = after, due
        rows.append(row)
    return rows


def _item_ts(item: Any) -> int:
    """When a message to policy happened: a candidate's due time, a note's or notice's ts."""
    return item.event_ts if type(item) is Candidate else item.ts


def _due_row(at: int) -> dict:
    return {"ts": format_ts(at), "event": "timer", "event_id": None, "changed": {}, "timer": None,
            "candidates": [], "decisions": []}


def _decisions(row: dict, item: Any, results: list) -> None:
    for r in results:
        if type(r) is Candidate:
            row["decisions"].append({"type": r.type, "trigger_id": r.trigger_id, "decision": "sent"})
        elif type(r) is Suppressed:
            row["decisions"].append({"type": r.candidate.type, "trigger_id": r.candidate.trigger_id,
                                     "decision": "suppressed", "reason": r.reason})
        elif type(r) is Tally and r.kind == "held" and type(item) is Candidate:  # judged again when they end
            row["decisions"].append({"type": item.type, "trigger_id": item.trigger_id, "decision": "held",
                                     "reason": "quiet_hours"})


def _ts(ms: Optional[int]) -> Optional[str]:
    return None if ms is None else format_ts(ms)


def _watched(state: CustomerState, cfg: RuleConfig) -> dict:
    fields = state.profile(cfg).fields
    out = {k: fields.get(k) for k in WATCHED}
    for rule in cfg.rules:  # a declared rule's episodes: key -> due time, or why none yet
        if isinstance(rule, Declared):
            s = state.slices.get(rule.name)
            out[f"{rule.name} episodes"] = {k or "customer": "fired, waits for a cancel" if e.fired else
                                            _ts(e.due) if e.due < NEVER else f"{len(e.hits or ())} of {rule.count}"
                                            for k, e in sorted((s.episodes if s else {}).items())}
    return out


def _candidates(outs: list) -> list[Candidate]:
    found = []
    for o in outs:
        if type(o) is ScoreRequest and o.candidate is not None:
            found.append(o.candidate)
        elif type(o) is Candidate:
            found.append(o)
    return found


def _describe(c: Candidate) -> dict:
    return {"type": c.type, "trigger_id": c.trigger_id, "event_ts": format_ts(c.event_ts), "reasons": c.reasons,
            "waits_for_model": c.threshold is not None}


def explain(settings: Settings, logs: list[Path], customer_id: str, type: Optional[str] = None,
            replayed: Optional[Path] = None) -> dict[str, Any]:
    """The customer's timeline, what the replay sent (``sent``) and held back (``suppressed``, with
    the policy clause), and with ``type`` the answer to "why (not)": ``why``.

    ``replayed``: a directory with ``triggers.jsonl`` and ``suppressed.jsonl`` of a replay of the
    same logs (else one is run, with models, into a temporary directory)."""
    events, end = customer_events(settings, logs, customer_id)
    rows = timeline(settings, events, end)
    sent, held = _replayed(settings, logs, replayed, customer_id)
    result = {"customer_id": customer_id, "events": len(events), "timeline": rows, "sent": sent, "suppressed": held}
    if type is not None:
        result["why"] = why(type, events, rows, sent, held, settings)
    return result


def _replayed(settings: Settings, logs: list[Path], where: Optional[Path], customer_id: str) -> tuple[list, list]:
    if where is None:
        where = Path(tempfile.mkdtemp(prefix="crm-explain-"))
        _replay(settings, logs, where)
    missing = [n for n in ("triggers.jsonl", "suppressed.jsonl") if not (where / n).is_file()]
    if missing:  # an empty answer would read as "nothing was sent"
        raise FileNotFoundError(f"--replayed {where}: no {' or '.join(missing)} there (a replay with "
                                f"--triggers-out {where}/triggers.jsonl --suppressed-out {where}/suppressed.jsonl)")
    pick = lambda name: [t for t in _read(where / name) if t.get("customer_id") == customer_id]  # noqa: E731
    return pick("triggers.jsonl"), pick("suppressed.jsonl")


def _replay(settings: Settings, logs: list[Path], where: Path) -> dict:
    from flows.replay import ReplayOutputs, replay

    out = ReplayOutputs(where / "triggers.jsonl", where / "dlq.jsonl", where / "summary.json",
                        suppressed=where / "suppressed.jsonl")
    return replay(settings, logs, out)


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def why(type: str, events: list[Event], rows: list[dict], sent: list, held: list,
        settings: Optional[Settings] = None) -> str:
    """One sentence: why a trigger of ``type`` went out, was held back, or never came up
    (``settings``: where a declared rule's events and whether it runs are read)."""
    mine = [t for t in sent if t["type"] == type]
    stopped = [s for s in held if s["type"] == type]
    by_reason = ", ".join(f"{r} x{n}" for r, n in Counter(s.get("suppressed") for s in stopped).items())
    if mine:
        text = f"sent {len(mine)}: " + "; ".join(f"{t['event_ts']} ({', '.join(t['reasons'])})" for t in mine)
        # the others policy held back, so the count adds up to every candidate
        return text + (f"; held back {by_reason}" if stopped else "")
    if stopped:
        return "every candidate was held back by policy: " + by_reason
    raised = [c for r in rows for c in r["candidates"] if c["type"] == type]
    if raised and all(c["waits_for_model"] for c in raised):
        return (f"{len(raised)} candidate(s) waited for a model score that did not reach the threshold "
                "(or the model was not ready yet: scores are null until it has learned both outcomes)")
    if raised:
        return f"{len(raised)} candidate(s) came up but none was sent in the replay"
    listens = LISTENS.get(type)
    if settings is not None and type not in settings.rules.enabled:
        return f"the {type} rule is not enabled (CRM_RULES__ENABLED, or the settings file given with --config)"
    declared = rule_definitions(settings).get(type) if settings is not None else None
    if listens is None and declared is not None:  # what opens its episodes
        listens = tuple(t for m in declared.open for t in m.type)
    if listens is None:
        return f"no rule raised a {type!r} candidate for this customer"
    relevant = [e for e in events if e.type in listens]
    if not relevant:
        return f"the {type} rule never started: none of its events ({', '.join(listens)}) for this customer"
    return (f"the {type} rule saw {len(relevant)} of its events but never came due "
            "(its episode was closed or cancelled before its timer; see the timeline's timer and changed columns)")


# --------------------------------------------------------------------------- the table


def render(result: dict, verbose: bool = False) -> Any:
    """``explain``'s result as a Rich table readable at 80 columns: when (UTC, ``MM-DD HH:MM:SS``;
    the dates in the title) and what happened, what it changed for the rules (the next timer
    relative to the row), each candidate with its decision; rows that only moved the session or
    exit-intent timer only with ``verbose``. Long values wrap within their column."""
    from rich import box
    from rich.table import Table

    rows = [r for r in result["timeline"] if verbose or r["changed"] or r["candidates"] or r["decisions"]]
    days = sorted({r["ts"][:10] for r in result["timeline"] if r["ts"]})
    span = f", {days[0]} .. {days[-1]}" if days else ""
    table = Table(title=f"crm-stream explain: {result['customer_id']}, {result['events']} events{span} (UTC)",
                  box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False, expand=False)
    table.add_column("when, event", min_width=14, max_width=22, overflow="fold")
    table.add_column("changed for the rules", ratio=1, min_width=16, overflow="fold")
    table.add_column("candidates: decision", ratio=1, min_width=16, overflow="fold")
    outcome = _replay_outcomes(result)
    for row in rows:
        when = f"{row['ts'][5:10]} {row['ts'][11:19]}" if row["ts"] else ""
        table.add_row(f"{when}\n{row['event']}", "\n".join(_changes(row)), "\n".join(_verdicts(row, outcome)))
    return table


def _changes(row: dict) -> list[str]:
    out = [f"{k}: {_brief(a)} -> {_brief(b)}" if a is not None else f"{k}: {_brief(b)}"
           for k, (a, b) in row["changed"].items() if a is not None or b]  # the start: only what is there
    now = (row["timer"] or {}).get("now")
    if row["timer"] is not None and now is None:
        out.append("next timer: none")
    elif row["timer"] is not None:
        when = now[11:19] if row["ts"] and now[:10] == row["ts"][:10] else f"{now[5:10]} {now[11:19]}"
        if row["ts"]:  # whole seconds: a timer is due 1 ms after its wait ("strictly after")
            ahead = round((parse_ts(now) - parse_ts(row["ts"])) / 1000)
            when += f" (+{format_duration(timedelta(seconds=ahead))})"
        out.append(f"next timer: {when}")
    return out


def _brief(value: Any) -> str:
    """A watched value in a few words: ids (and status, a quantity above 1) of the cart, orders and
    conversations; ``key: value`` of a declared rule's episodes."""
    if isinstance(value, list):
        return ", ".join(map(_brief_item, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return str(value)


def _brief_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    ident = next((str(v) for k, v in item.items() if k.endswith("_id")), "?")
    extra = [str(item["status"])] if "status" in item else []
    if item.get("quantity", 1) != 1:
        extra.append(f"x{item['quantity']}")
    return ident + (f" ({', '.join(extra)})" if extra else "")


def _replay_outcomes(result: dict) -> dict[str, str]:
    """trigger_id -> what the full replay (models included) did with it."""
    out = {t["trigger_id"]: "sent" for t in result["sent"] if "trigger_id" in t}
    out.update((s["trigger_id"], f"held back: {s.get('suppressed')}") for s in result["suppressed"] if "trigger_id" in s)
    return out


def _verdicts(row: dict, replayed: dict[str, str]) -> list[str]:
    """One line per candidate with the policy's decision (a model-driven one: the replay's); then
    decisions on candidates of earlier rows (quiet hours let them go)."""
    decided = {}
    for d in row["decisions"]:
        decided.setdefault(d["trigger_id"], "sent" if d["decision"] == "sent" else
                           "held for quiet hours" if d["decision"] == "held" else f"held back: {d['reason']}")
    out = []
    for c in row["candidates"]:
        verdict = decided.pop(c["trigger_id"], None)
        if verdict is None and c["waits_for_model"]:
            verdict = f"{replayed.get(c['trigger_id'], 'not sent')} (model score)"
        out.append(f"{c['type']} ({', '.join(c['reasons']) or 'model'}): {verdict or 'no decision'}")
    out += [f"{d['type']}: {decided[d['trigger_id']]}" for d in row["decisions"] if d["trigger_id"] in decided]
    return out


# --------------------------------------------------------------------------- backtest


def backtest(current: Settings, proposed: Settings, logs: list[Path], examples: int = 3,
             work: Optional[Path] = None) -> dict[str, Any]:
    """Replay ``logs`` under both settings; per trigger type: sent and suppressed (by reason)
    under each, triggers added and removed (by ``trigger_id``), and up to ``examples`` of each."""
    work = Path(tempfile.mkdtemp(prefix="crm-backtest-")) if work is None else work
    runs = {}
    for name, settings in (("current", current), ("proposed", proposed)):
        where = work / name
        _replay(settings, logs, where)
        runs[name] = (_read(where / "triggers.jsonl"), _read(where / "suppressed.jsonl"))
    (cur_sent, cur_held), (new_sent, new_held) = runs["current"], runs["proposed"]
    by_id_cur = {t["trigger_id"]: t for t in cur_sent}
    by_id_new = {t["trigger_id"]: t for t in new_sent}
    types = sorted({t["type"] for t in cur_sent + new_sent + cur_held + new_held})
    report = {}
    for ty in types:
        added = [t for i, t in by_id_new.items() if i not in by_id_cur and t["type"] == ty]
        removed = [t for i, t in by_id_cur.items() if i not in by_id_new and t["type"] == ty]
        report[ty] = {
            "sent": {"current": sum(t["type"] == ty for t in cur_sent), "proposed": sum(t["type"] == ty for t in new_sent)},
            "suppressed": {"current": _reasons(cur_held, ty), "proposed": _reasons(new_held, ty)},
            "added": len(added), "removed": len(removed),
            "added_examples": [_example(t) for t in heapq.nsmallest(examples, added, key=lambda t: t["event_ts"])],
            "removed_examples": [_example(t) for t in heapq.nsmallest(examples, removed, key=lambda t: t["event_ts"])],
        }
    return {"types": report, "work": str(work)}


def _reasons(held: list, ty: str) -> dict[str, int]:
    return dict(sorted(Counter(s.get("suppressed") for s in held if s["type"] == ty).items()))


def _example(t: dict) -> dict:
    return {k: t.get(k) for k in ("trigger_id", "customer_id", "event_ts", "reasons")}

