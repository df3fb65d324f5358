"""The Bytewax shell: decode -> profile -> models -> policy -> sinks.

Each stateful step adapts a plain class from ``operators``/``models``; nothing here decides
anything about customers. ``run``, ``replay``, the benchmark and the tests all call
:func:`build_flow` with different :class:`Edges`.
"""

from __future__ import annotations

import heapq
import logging
import pickle
import time
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from config.jsonsafe import clean_str
from config.settings import Settings, ms
from connectors.files import ReplayEnd
from connectors.kafka import ConsumerError
from connectors.metrics import Telemetry, telemetry
from connectors.routing import balanced_key, worker_keys, worker_of
from connectors.watermark import Tick, Watermark, Watermarks
from flows import state_codec
from models.metrics import publish
from models.recs import ShardRecs
from models.shard import ModelShard, shard_index
from operators.clock import FutureGuard, ahead_of_wall, future_dead_letter
from operators.cold import clock_of, compact, expand, next_deadline as cold_deadline
from operators.contact import ContactConfig, ContactTracker
from operators.customer import NEVER, CustomerState
from operators.events import CATALOG_TYPES, DeadLetter, Event, decode, format_ts
from operators.identity import Identify, Merge, identify_keys, merge_into, rekey, route_out
from operators.outcomes import uplift
from operators.policy import PolicyConfig, PolicyState, Tally
from operators.privacy import ERASURE, Erasure, Tombstones, audit_record, state_inventory
from operators.rules import RuleConfig
from operators.recs import ProductNeighbours, observe_blocks
from operators.messages import (Candidate, Label, PairMsg, ProfileUpdate, RecsEval, RecsUpdate, ScoreRequest,
                               RecsTop, Suppressed)
from operators.watch import WatchConfig

log = logging.getLogger("crm.flow")
BROWSING = frozenset({"page_view", "product_view", "search", "help_view"})
PROFILE_REFRESH_S = 30.0
NEAR_S = 60.0  # live with a frontier: a timer further ahead waits in the frontier's alarms, not in Bytewax
LAZY = "lazy"  # a snapshot's tag: (LAZY, silence, customer_id, clock, due, the state pickled) (ProfileLogic)
SESSION_END = "decision_session_end"  # the churn decision point a session end raises (operators.customer)
Encoder = Callable[[tuple[str, dict]], Any]


@dataclass
class Edges:
    """Where the flow reads and writes. Each output is a list of (sink, encoder) pairs; an encoder
    turns a ``(key, record)`` pair into what its sink takes (``None``: pass it as is)."""

    source: Source
    triggers: list[tuple[Sink, Optional[Encoder]]] = field(default_factory=list)
    deadletters: list[tuple[Sink, Optional[Encoder]]] = field(default_factory=list)
    profiles: list[tuple[Sink, Optional[Encoder]]] = field(default_factory=list)
    suppressed: list[tuple[Sink, Optional[Encoder]]] = field(default_factory=list)
    recs: list[tuple[Sink, Optional[Encoder]]] = field(default_factory=list)  # (product_id, [(b, score)])
    live: bool = False
    end: Optional[ReplayEnd] = None  # replay: at end of input, fire timers due by the latest event time
    recovery: bool = True  # False: state is never snapshotted (nothing resumes from it)
    # live: the input's event-time watermarks (connectors.watermark) hold timers for lagging inputs;
    # ``ticks`` wakes the customers they held, ``workers`` (in the whole cluster) gets each watermark
    watermarks: Optional[Watermarks] = None
    ticks: Optional[Source] = None
    workers: int = 1
    audit: list[tuple[Sink, Optional[Encoder]]] = field(default_factory=list)  # (customer_id, erasure_completed)
    tombstones: Optional[Tombstones] = None  # erased customers known at start (None: none)


def utc_now_iso() -> str:
    return format_ts(int(time.time() * 1000))


# --------------------------------------------------------------------------- decode


def _source_label(source: str) -> str:
    topic = source.split("/", 1)[0]
    return topic.rsplit(".", 1)[-1] if "/" in source else "file"


def make_decoder(settings: Settings, t: Telemetry) -> Callable[[Any], Any]:
    """Raw input (bytes with where they came from, or an already decoded replay item) -> typed item."""
    max_bytes = settings.time.max_event_bytes
    skew = ms(settings.time.max_future_skew)
    lag = t.event_lag.observe

    def decode_item(item: Any) -> Any:
        if type(item) is tuple:  # (value bytes, source, offset) from a live connector
            value, source, pos = item
            item = decode(value, source, max_bytes)
            if type(item) is Event:
                now = time.time()
                if ahead_of_wall(item.ts, int(now * 1000), skew):  # a wrong clock must not move the customer's
                    item = future_dead_letter(value, item, int(now * 1000))
                else:
                    item.pos = pos
                    lag(max(0.0, now - item.ts / 1000.0))  # live only: a replay's lag means nothing
        if type(item) is Event:
            t.read(_source_label(item.source), item.type)
        elif type(item) is Watermark:
            return item
        elif type(item) is ConsumerError:  # not an input: a dead letter without bytes, not a read
            t.dead_letter("consumer_error")
            return DeadLetter(b"", item.source, "consumer_error", item.detail)
        else:
            t.read(_source_label(item.source), "invalid")
            t.dead_letter(item.reason)
        return item

    return decode_item


def make_batch_decoder(settings: Settings, t: Telemetry) -> Callable[[list], list]:
    """:func:`make_decoder` over a batch: the same items, but a replayed event (decoded at the
    source) is counted once per batch and (source, type), not once each: a labelled counter's
    increment costs more than the rest of this step."""
    decode_item = make_decoder(settings, t)

    def decode_batch(items: list) -> list:
        out = []
        counts: dict[tuple[str, str], int] = {}
        for item in items:
            if type(item) is Event:
                key = (_source_label(item.source), item.type)
                counts[key] = counts.get(key, 0) + 1
                out.append(item)
            else:
                out.append(decode_item(item))
        for (label, kind), n in counts.items():
            t.read(label, kind, n)
        return out

    return decode_batch


def future_guard(settings: Settings) -> Callable[[], FutureGuard]:
    """Per replayed file: events too far ahead of the log around them are ``future_ts`` dead letters."""
    skew = ms(settings.time.max_future_skew)
    return lambda: FutureGuard(skew)


def live_decoder(settings: Settings) -> Callable[[bytes, str], Any]:
    """Decode where a Kafka partition is read; an event further than ``max_future_skew`` ahead of
    the wall clock is a ``future_ts`` dead letter there, so it moves neither a customer's clock nor
    its partition's watermark."""
    max_bytes = settings.time.max_event_bytes
    skew = ms(settings.time.max_future_skew)

    def decode_live(raw: bytes, source: str) -> Any:
        item = decode(raw, source, max_bytes)
        if type(item) is Event:
            now = int(time.time() * 1000)
            if ahead_of_wall(item.ts, now, skew):
                return future_dead_letter(raw, item, now)
        return item

    return decode_live


def replay_decoder(settings: Settings) -> Callable[[bytes, str], Any]:
    max_bytes = settings.time.max_event_bytes
    return lambda raw, source: decode(raw, source, max_bytes)


# --------------------------------------------------------------------------- profile


class ProfileLogic(StatefulBatchLogic):
    """Adapts :class:`CustomerState`: events in, candidates / scoring requests / labels out.

    Live, a timer fires when the customer's clock, advanced by wall-clock time since its latest
    event, passes the due time; in replay only later events and the end of input move it.

    With a ``watermarks`` frontier (live Kafka input) nothing runs ahead of the inputs that could
    still carry an earlier event of the customer (CONTRACT.md, time across topics): the timer's
    ``now`` is also capped by the frontier (the minimum event time over all input partitions), and
    an event waits in ``held`` while it is more than ``lateness`` ahead of the frontier, or while
    applying it would fire a timer the frontier has not passed. The frontier's ticks wake the
    customer when it moves. The key a worker's watermarks arrive on gets the same class (Bytewax
    builds every key's logic alike): it feeds the worker's frontier and keeps no state.

    ``profiles``: when the profile view is emitted: after every batch that changed it (live),
    once at the end of a replay (``"end"``), or never (a replay without a profiles output: building
    the view costs more than most events).
    """

    # one per customer key: slots spare each a ~21-entry __dict__ (README, Performance)
    __slots__ = ("recovery", "tombs", "erased_at", "alias", "cfg", "live", "end", "profiles", "t", "state", "cold",
                 "wall_at_clock", "timer_counted", "profile_wall", "material", "pos_floor", "frontier", "held",
                 "held_last", "seq", "contact", "tracker", "frozen")

    def __init__(self, cfg: RuleConfig, live: bool, t: Telemetry, resume: Optional[bytes],
                 end: Optional[ReplayEnd] = None, profiles: str = "batch", recovery: bool = True,
                 watermarks: Optional[Watermarks] = None, tombstones: Optional[Tombstones] = None):
        self.recovery = recovery
        self.tombs = tombstones
        self.erased_at: Optional[int] = None  # this customer's latest erasure (ms): earlier events are dropped
        self.alias: Optional[str] = None  # identified: this key's events go to the merged step's key alias
        self.cfg = cfg
        self.live = live
        self.end = end
        self.profiles = profiles
        self.t = t
        self.state: Optional[CustomerState] = None
        self.cold: Optional[tuple[str, bytes]] = None  # live: (customer_id, record) of a quiet customer (operators.cold)
        self.wall_at_clock = time.time()
        self.timer_counted = False  # this customer counts in crm_pending_timers
        self.profile_wall = 0.0  # when the profile view was last emitted (live)
        self.material = False  # something beyond browsing changed since
        self.pos_floor = 0  # the highest input position this customer's outputs were tagged with
        self.frontier = watermarks.here() if watermarks is not None else None  # this worker's
        self.held: list = []  # heap of (key, seq, event) waiting for the frontier (see _hold)
        self.held_last: dict[str, int] = {}  # input partition -> key of its latest held event
        self.seq = 0
        self.contact: Optional[ContactConfig] = getattr(cfg, "contact", None)
        self.tracker: Optional[ContactTracker] = None  # made at the first need when ``contact`` is on (most never do)
        self.frozen: Optional[tuple] = None  # resumed, not woken yet: (customer_id, clock, due, the state's pickle)
        if resume is not None:
            saved = pickle.loads(resume)
            # the snapshot keeps the customer's silence so far (<= 0 s; older ones a wall time): the
            # time the engine was down is not silence, so a restart fires no timer a replay would not
            silence = saved[1]
            self.wall_at_clock = time.time() + (silence if silence <= 0 else 0.0)
            if type(saved[0]) is str:  # LAZY: unpickled at the first event or timer (resume stays O(keys))
                _, _, cid, clock, due, blob = saved
                self.frozen = (cid, clock, due, blob)
                if tombstones is not None:
                    self.erased_at = tombstones.erased_at(cid)
            else:
                self._restore(saved)

    def _restore(self, saved: tuple) -> None:
        """The snapshot's state, held events, contact tracker and alias back in place."""
        t = self.t
        if len(saved) > 5 and saved[5] is not None and self.contact is not None:
            self.tracker = saved[5]
        self.state = saved[0]
        if type(self.state) is tuple:  # a quiet customer's record stays packed until its next event
            self.cold, self.state = self.state, None
        if len(saved) > 2:
            self.held, self.held_last, self.seq = saved[2], saved[3], saved[4]
            t.held.inc(len(self.held))
        if self.tombs is not None and (self.state is not None or self.cold is not None):
            self.erased_at = self.tombs.erased_at(self.cold[0] if self.state is None else self.state.customer_id)
        if len(saved) > 6:
            self.alias = saved[6]

    def _unfreeze(self) -> None:
        """A lazily resumed customer's state, unpickled (see :meth:`snapshot`)."""
        blob, self.frozen = self.frozen[3], None
        self._restore((state_codec.loads(blob), 0.0))

    def on_batch(self, items: list) -> tuple[list, bool]:
        frontier = self.frontier
        if frontier is not None and type(items[0]) is Watermark:  # this key is the worker's watermark inbox
            for wm in items:
                frontier.observe(wm)
            return [], StatefulBatchLogic.DISCARD
        if self.frozen is not None:
            self._unfreeze()
        if self.alias is not None:
            return self._forward(items), StatefulBatchLogic.RETAIN
        if self.cold is not None:
            self._thaw()
        out: list = []
        if self.tombs is None:
            woken = self._apply_batch(items, out)
        else:  # in arrival order: what came before an erasure request, the erasure, what came after
            self._lookup(items)
            woken, start, carry = False, 0, []
            for i, item in enumerate(items):
                if type(item) is Event and item.type == ERASURE:
                    woken |= self._apply_batch(self._drop_erased(carry + items[start:i]), out)
                    carry = self._erase(item, out)  # what the customer held that is later than it
                    start = i + 1
            woken |= self._apply_batch(self._drop_erased(carry + items[start:]), out)
        if self.alias is not None:  # identified in this batch: nothing of the state is left here
            return out, StatefulBatchLogic.RETAIN
        if woken:
            return self.on_notify(out)
        return self._emit(out)

    def _apply_batch(self, items: list, out: list) -> bool:
        """Events into the customer's state (created by the first); True if a tick was among them."""
        if self.alias is not None:  # identified earlier in this batch: the rest follows the state
            out.extend(self._forward(items))
            return False
        frontier = self.frontier
        woken = False
        events = []
        rest = None
        for item in items:
            kind = type(item)
            if kind is not Event:
                if kind is Tick:
                    woken = True
                    continue
                if kind is Merge:  # the merged step (operators.identity)
                    self._merge(item, out)
                    continue
                if kind is Identify:
                    rest = items[items.index(item):]
                    break
            if self.state is None:
                self.state = CustomerState(item.customer_id, self.cfg.recs)
                self.t.customers.inc()
                if self.profiles == "batch":
                    out.append(self.state.profile_defaults())
            events.append(item)
        if frontier is None:
            for item in events:
                self._process(item, out)
        elif len(events) == 1 and not self.held and self._admit(events[0], out):
            self._process(events[0], out)  # the common case: nothing waits, nothing to merge
        elif events or self.held:  # merged with what waits (by event time across partitions), then as far as admitted
            for item in events:
                self._hold(item)
            self._release(out)
        if rest is not None:  # the state leaves for the merged step; what follows goes after it
            self._identify(rest[0], out)
            out.extend(self._forward(rest[1:]))
        return woken

    def _lookup(self, items: list) -> None:
        """A key new to this logic: was the customer erased before (the tombstones)?"""
        if self.state is None and self.erased_at is None:
            first = next((i for i in items if type(i) is Event), None)
            if first is not None:
                self.erased_at = self.tombs.erased_at(first.customer_id)

    def _drop_erased(self, items: list) -> list:
        """Without the customer's events at or before its latest erasure (counted ``events_erased``)."""
        at = self.erased_at
        if at is None or not items:
            return items
        kept = [i for i in items if type(i) is not Event or i.ts > at]
        if len(kept) < len(items):
            self.t.erased(len(items) - len(kept))
        return kept

    def _erase(self, req: Any, out: list) -> list:
        """Forget the customer: its state, its reorder buffers, its timers; keep a tombstone. An
        :class:`Erasure` goes on to the models and policy steps. Returns the events it held that are
        later than the erasure (by ts): they go on as a returning customer's."""
        held = [h[2] for h in self.held] + ([h[2] for h in self.state.held] if self.state is not None else [])
        removed, decisions = state_inventory(self.state, len(self.held))
        h, at = self.tombs.add(req.customer_id, req.ts)
        if self.state is not None:
            self.t.customers.dec()
        if self.timer_counted:
            self.t.timers.dec()
            self.timer_counted = False
        self.t.held.dec(len(self.held))
        self.state, self.held, self.held_last, self.erased_at, self.material = None, [], {}, at, False
        if self.contact is not None:  # the customer's zone, night visits and contact deadlines go too
            tr = self.tracker
            removed = {**removed, "contact": tr is not None and _holds(tr)}
            self.tracker = None
        # after everything this customer sent on before (the models step sorts by position)
        out.append(Erasure(req.customer_id, at, req.event_id, h, removed, decisions, max(req.pos, self.pos_floor)))
        return sorted((e for e in held if e.ts > at), key=lambda e: e.ts)

    def _identify(self, idf: Identify, out: list) -> None:
        """This key's state leaves for the merged step and its later events follow it: the guest's
        to be absorbed, the customer's to be adopted there (operators.identity). The guest's timers
        due before it was identified still fire here, for the guest."""
        ev = idf.event
        while self.held:  # the frontier's reorder buffer: what waits is applied, then leaves with the state
            self._process(heapq.heappop(self.held)[2], out)
            self.t.held.dec()
        st = self.state
        if st is not None:
            if idf.guest:
                if st.clock is None or ev.ts > st.clock:
                    st.clock = ev.ts
                cap = self.frontier.value if self.frontier is not None else ev.ts
                res = st.advance(min(ev.ts, cap), self.cfg)
                self._count_failures(res)
                out.extend(self._tag(ev.pos, res))
                if self.profiles != "none":  # the guest's profile view: empty, pointing at the customer
                    out.append(ProfileUpdate(st.customer_id, {"merged_into": idf.target, "cart": [], "cart_value": None,
                                                              "open_orders": [], "open_conversations": []}))
            out.append(Merge(idf.target, st, not idf.guest, ev.ts, ev.pos))
            if self.timer_counted:
                self.timer_counted = False
                self.t.timers.dec()
        self.state = None
        self.alias = idf.target

    def _forward(self, items: list) -> list:
        """An identified key: events re-keyed to the customer; a second identify naming another
        customer is an ``identify_conflict`` dead letter (the first one holds)."""
        out: list = []
        alias = self.alias
        for item in items:
            kind = type(item)
            if kind is Event:
                out.append(rekey(item, alias))
            elif kind is Identify and item.target != alias:  # a repeat, or another guest of ours: fine
                self.t.dead_letter("identify_conflict")
                out.append(DeadLetter.of_event(item.event, "identify_conflict", "this id was already merged"))
        return out

    def _merge(self, msg: Merge, out: list) -> None:
        """The merged step: a guest's or the customer's own state arrives (operators.identity)."""
        if self.state is None and not msg.adopt:
            self.state = CustomerState(msg.customer_id, self.cfg.recs)
            if self.profiles == "batch":
                out.append(self.state.profile_defaults())
        self.state = merge_into(self.state, msg, self.cfg)
        self.material = True

    def _process(self, item: Any, out: list) -> None:
        try:
            cap = self.frontier.value if self.frontier is not None else None
            res, status = self.state.process(item, self.cfg, cap)
            if self.contact is not None and (self.tracker is not None or res
                                             or not ContactTracker.ignores(item, self.contact)):
                # consent, zones, night clicks: the contact policy's view (operators.contact); with no
                # tracker, nothing to register and nothing to note, the tracker would be made and dropped
                tracker = self.tracker
                if tracker is None:
                    tracker = self.tracker = ContactTracker()
                notes: list = []
                if status != "duplicate":
                    tracker.observe(item, self.contact, notes)
                clock = self.state.clock if cap is None or self.state.clock < cap else cap
                res = notes + self._contact(res, clock - self.cfg.lateness, False)  # (drops an empty tracker)
        except Exception as exc:  # a bug must cost one event, not the flow: dead-letter it, loudly
            log.error("processing %s failed: %s", clean_str(item.source), type(exc).__name__)
            log.debug("processing %s failed", clean_str(item.source), exc_info=True)  # may quote customer text
            self.t.dead_letter("processing_error")
            out.append(DeadLetter.of_event(item, "processing_error", f"{type(exc).__name__}: {exc}"[:200]))
            return
        if status != "ok":
            self.t.status(status)
        if res or item.type not in BROWSING:
            self.material = True
        self._count_failures(res)
        out.extend(self._tag(item.pos, res))
        self.wall_at_clock = time.time()

    def _admit(self, ev: Any, out: list) -> bool:
        """May ``ev`` be applied now? Yes when the frontier has passed all that ``process`` would
        do (up to ``ev.ts`` or the clock, in ``advance``'s units) or it has nothing to do there.
        Else, first the part the frontier allows: timers due before ``ev`` that every input has
        passed fire, as the frontier's ``now`` would fire them (also when ``ev`` itself waits)."""
        w = self.frontier.value
        ts = ev.ts
        st = self.state
        limit = ts if st.clock is None or ts > st.clock else st.clock
        due = st.next_deadline(self.cfg)
        near = ts <= w + self.cfg.lateness  # farther, it would make an input's coming events late
        if near and (due is None or due > limit or w >= limit):
            return True
        if due is not None and due <= w and due < ts:
            fired = st.advance(min(w, ts - 1), self.cfg)
            if self.contact is not None:
                fired = self._contact(fired, min(w, ts - 1) - self.cfg.lateness, False)
            if fired:
                self._count_failures(fired)
                out.extend(self._tag(ev.pos, fired))
            due = st.next_deadline(self.cfg)
        return near and (due is None or due > limit)

    def _hold(self, ev: Any) -> None:
        """Queue ``ev``: held events leave merged by event time across input partitions and in
        arrival order within one (its running maximum ts is its key), as a replay merges its logs."""
        part = ev.source.rpartition("/")[0]
        if not self.held:
            self.held_last = {}
        key = self.held_last.get(part, ev.ts)
        if ev.ts > key:
            key = ev.ts
        self.held_last[part] = key
        heapq.heappush(self.held, (key, self.seq, ev))
        self.seq += 1
        self.t.held.inc()

    def _release(self, out: list) -> None:
        """Apply, in that order, the held events the frontier now admits."""
        held = self.held
        while held and self._admit(held[0][2], out):
            self._process(heapq.heappop(held)[2], out)
            self.t.held.dec()

    def on_eof(self) -> tuple[list, bool]:
        """End of a replay: fire every timer due by the latest event time (all of them with drain).
        End of a live run that stops at the topics' current end: apply what the reorder buffer holds; timers
        stay on the wall clock."""
        if self.frozen is not None:
            self._unfreeze()
        if self.cold is not None:
            self._thaw()
        if self.state is None:
            return [], StatefulBatchLogic.RETAIN
        if self.end is None:
            out: list = []
            while self.held:  # the input is over: nothing earlier can come
                self._process(heapq.heappop(self.held)[2], out)
                self.t.held.dec()
            res = self.state.flush(None, self.cfg)
            if self.contact is not None and self.state.clock is not None:
                res = self._contact(res, self.state.clock - self.cfg.lateness, False)
            res = out + res
            self._count_failures(res)
            return self._emit(self._tag(1 << 61, res))
        now = NEVER - 1 if self.end.drain else self.end.read()
        res = self.state.flush(now, self.cfg)
        if self.contact is not None:
            res = self._contact(res, now, True)
        self._count_failures(res)
        out = self._tag(1 << 61, res)
        if self.profiles == "end":
            end = self.end.read()  # the profile's churn score describes the customer at the end of input
            if self.state.last_seen is not None and end >= self.state.last_seen:
                out += self._tag(1 << 61, [self.state.churn_refresh(end, self.cfg)])
            out += [self.state.profile_defaults(), self.state.profile(self.cfg)]
        return self._emit(out)

    def _contact(self, res: list, frontier: int, inclusive: bool) -> list:
        """Register the rules' candidates with the tracker and put its clock notes in event-time
        order among them: a note due before a candidate reaches policy before that candidate."""
        tracker, cfg, cid = self.tracker, self.contact, self.state.customer_id
        if tracker is None:
            tracker = self.tracker = ContactTracker()
        out: list = []
        for o in res:
            kind = type(o)
            c = o if kind is Candidate else (o.candidate if kind is ScoreRequest else None)
            if c is not None:
                tracker.due(cid, min(c.event_ts, frontier), False, out)
                out.append(o)
                tracker.register(c, cfg)
            else:
                out.append(o)
        tracker.due(cid, frontier, inclusive, out)
        if not _holds(tracker):  # most customers: nothing to remember, so no tracker to keep
            self.tracker = None
        return out

    def _tag(self, pos: int, outputs: list) -> list:
        """Tag outputs with their input position, never below this customer's earlier ones: the
        models step sorts a batch by position, and offsets of different topics do not compare (a
        purchase's notice must reach policy before the reminder it quiets)."""
        if self.frontier is None:  # one input (replay) or topics read apart: positions as they come
            return _at(pos, outputs)
        if pos < self.pos_floor:
            pos = self.pos_floor
        self.pos_floor = pos
        return _at(pos, outputs)

    def _count_failures(self, res: list) -> None:
        for o in res:
            if type(o) is DeadLetter:  # a held event the core could not apply (its safety net)
                self.t.dead_letter(o.reason)

    def _emit(self, out: list) -> tuple[list, bool]:
        if self.state is None:
            return out, StatefulBatchLogic.DISCARD if self.alias is None else StatefulBatchLogic.RETAIN
        if self.state.dirty and self.profiles == "batch":
            now = time.time()
            # Browsing only moves last_seen: write that at most every PROFILE_REFRESH_S per customer.
            if self.material or out or now - self.profile_wall >= PROFILE_REFRESH_S:
                out.append(self.state.profile(self.cfg))
                self.profile_wall, self.material = now, False
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> Optional[datetime]:
        if not self.live or (self.state is None and self.cold is None and self.frozen is None):
            return None
        if self.frozen is not None:  # resumed lazily: the snapshot's header has what the timer needs
            cid, clock, due = self.frozen[:3]
        elif self.cold is not None:  # read from the record's header: no unpacking
            cid, clock, due = self.cold[0], clock_of(self.cold[1]), cold_deadline(self.cold[1])
        else:
            cid, clock, due = self.state.customer_id, self.state.clock, self.state.next_deadline(self.cfg)
        if self.tracker is not None and clock is not None:
            note = self.tracker.next_deadline()  # in advance()'s units: passed once now - lateness is beyond it
            if note is not None and (due is None or note + self.cfg.lateness + 1 < due):
                due = note + self.cfg.lateness + 1
        if (due is not None) != self.timer_counted:
            self.timer_counted = due is not None
            self.t.timers.inc() if self.timer_counted else self.t.timers.dec()
        wall = None if due is None else self.wall_at_clock + (due - clock) / 1000.0
        if self.frontier is not None:
            w = self.frontier.value
            # the frontier, not the wall clock, holds the timer: wait for a tick instead
            now = time.time()
            held_by_frontier = due is not None and due > w and wall <= now
            self.frontier.wait(cid, self._wake_at(w, due if held_by_frontier else None))
            far = not held_by_frontier and wall is not None and wall > now + NEAR_S
            self.frontier.alarm(cid, wall if far else None)  # woken by a tick (connectors.watermark)
            if held_by_frontier or far:
                return None
        if wall is None:
            return None
        return _wall_datetime(wall)

    def _wake_at(self, w: int, due: Optional[int]) -> Optional[int]:
        """The least frontier at which this customer can make progress (None: nothing waits for it;
        ``w``: it can now, as when its inbox key raised the frontier after its batch ran)."""
        wake = due
        if self.held:
            ts, st = self.held[0][2].ts, self.state
            limit = ts if st.clock is None or ts > st.clock else st.clock
            steps = (st.next_deadline(self.cfg), ts - self.cfg.lateness, limit)  # see _admit
            need = [t for t in steps if t is not None and t > w]
            first = min(need) if need else w
            wake = first if wake is None else min(wake, first)
        return wake

    def on_notify(self, out: Optional[list] = None) -> tuple[list, bool]:
        out = [] if out is None else out
        if self.frozen is not None:
            self._unfreeze()
        if self.cold is not None:
            self._thaw()
        if self.state is None:
            return self._emit(out)
        if self.held:
            self._release(out)
        if self.state.clock is not None:
            now = self.state.clock + int((time.time() - self.wall_at_clock) * 1000)
            if self.frontier is not None and self.frontier.value < now:
                now = self.frontier.value
            res = self.state.advance(now, self.cfg)
            if self.contact is not None:
                res = self._contact(res, now - self.cfg.lateness, False)
            self._count_failures(res)
            if res:  # after the batch's events; with a frontier at this customer's latest position, which
                # a wake-up that fired nothing must not raise (later inputs would sort after everyone's)
                out.extend(self._tag(1 << 62 if self.frontier is None else self.pos_floor, res))
        emitted = self._emit(out)
        if self.live and self.alias is None and not self.held:  # the timers that fired may have left it quiet
            record = compact(self.state, self.cfg)
            if record is not None:
                self.cold, self.state = (self.state.customer_id, record), None
        return emitted

    def _thaw(self) -> None:
        """A packed quiet customer (``cold``) back to its full state, before its next event or timer."""
        cid, record = self.cold
        self.state, self.cold = expand(record, cid, self.cfg), None

    def snapshot(self) -> Optional[bytes]:
        if not self.recovery:  # nothing will ever resume from it: skip the pickling
            return None
        silence = min(0.0, self.wall_at_clock - time.time())
        tracker = self.tracker
        if self.frozen is not None:  # not woken since the resume: the same state, the silence grown
            return pickle.dumps((LAZY, silence, *self.frozen), protocol=pickle.HIGHEST_PROTOCOL)
        if self.alias is not None:  # identified: only the forwarding address is left
            saved = (None, silence, [], {}, 0, None, self.alias)
        elif tracker is not None and _holds(tracker):
            saved = (self.state if self.cold is None else self.cold, silence, self.held, self.held_last, self.seq,
                     tracker)
        elif self.held or self.state is None:
            state = self.state if self.cold is None else self.cold
            saved = (state, silence) if not self.held else (state, silence, self.held, self.held_last, self.seq)
        else:  # the common case: resumable lazily, its timer read from a header
            st = self.state
            blob = state_codec.dumps(st)  # a third of the pickle: what a resumed customer holds until woken
            saved = (LAZY, silence, st.customer_id, st.clock, st.next_deadline(self.cfg), blob)
        return pickle.dumps(saved, protocol=pickle.HIGHEST_PROTOCOL)


def _holds(tracker: ContactTracker) -> bool:
    """Does the tracker remember anything (an empty one is the same as none)?"""
    return bool(tracker.deadlines or tracker.zones.changes or tracker.nights)


_WALL_MIN, _WALL_MAX = 0.0, 253_402_214_400.0  # 1970-01-01 .. 9999-12-31 (datetime's end, minus a day)


def _wall_datetime(wall: float) -> datetime:
    """A wall-clock time for Bytewax's timer, clamped into datetime's range: a due time centuries away
    (validation keeps event times within 2000..2199, settings may stretch timers) waits, never raises."""
    if not _WALL_MIN <= wall <= _WALL_MAX:  # also NaN
        wall = _WALL_MIN if wall < _WALL_MIN else _WALL_MAX
    return datetime.fromtimestamp(wall, tz=timezone.utc)


def _pos(item: Any) -> int:
    return item.pos


def _at(pos: int, outputs: list) -> list:
    """Tag what an input caused with the input's position (see :class:`ModelLogic`)."""
    for o in outputs:
        if type(o) is not DeadLetter:  # dead letters leave the flow here: no order to keep
            o.pos = pos
    return outputs


# --------------------------------------------------------------------------- models


class ModelLogic(StatefulBatchLogic):
    """Adapts a :class:`ModelShard`; every item bound for policy passes here in order.

    The profile step groups a batch's events by customer, so items of different customers reach
    this step in an order that depends on how the input was cut into batches (file batches in
    replay, Kafka polls live, a restart from recovery). Models learn and predict in the order
    they are fed, so each batch is first put back in input order (stable: a customer's own items
    keep theirs): a replay and a live run over the same partition then score the same.
    """

    def __init__(self, settings: Settings, cfg: RuleConfig, t: Telemetry, resume: Optional[bytes],
                 warm: Optional[dict] = None, profiles: bool = True, recovery: bool = True,
                 write_recs: bool = True):
        self.recovery = recovery
        self.write_recs = write_recs  # a crm:recs:{id} output exists: emit the top lists for it
        self.cfg = cfg
        self.t = t
        self.profiles = profiles  # emit score updates for the profile view
        if resume is not None:
            self.shard, self.recs = pickle.loads(resume)
        else:
            self.shard, self.recs = ModelShard(settings, warm=warm), ShardRecs(cfg.recs, cfg.recs_in_payload)
        t.recs_parts[id(self)] = self.recs

    def on_batch(self, items: list) -> tuple[list, bool]:
        out: list = []
        items.sort(key=_pos)
        for item in items:
            kind = type(item)
            if kind is ScoreRequest:
                self._score(item, out)
            elif kind is Label:
                if self.shard.learn(item):
                    self.t.labels.labels(item.model).inc()
            elif kind is RecsUpdate:
                for update in item.updates:
                    self.recs.apply(update)
                    if item.write and self.write_recs:
                        out.append(RecsTop(update.product_id, self.recs.top(update.product_id)))
            elif kind is RecsEval:
                self.recs.evaluate(item)
            elif kind is Erasure:
                self._forget(item)
                out.append(item)
            else:
                if kind is Candidate and item.recs is not None:
                    item.payload["recommendations"] = self.recs.recommend(item.recs, item.event_ts)
                out.append(item)
        self._report_nonfinite()
        publish(self.t, self.shard)
        return out, StatefulBatchLogic.RETAIN

    def _forget(self, e: Erasure) -> None:
        """The customer's pending predictions and BG/NBD sample row go; what the models learned stays."""
        pending = 0
        for queue in self.shard.pending.values():
            for d in e.decisions:
                pending += queue.pop(d, None) is not None
        sample = self.shard.population.sample.pop(e.customer_id, None) is not None
        e.removed = {**e.removed, "pending_predictions": pending, "btyd_sample": sample}

    def _report_nonfinite(self) -> None:
        """Model calls the shard refused for a non-finite feature since the last batch -> telemetry."""
        counts = getattr(self.shard, "nonfinite", None)
        if not counts:
            return
        reported = self.__dict__.setdefault("_nonfinite_reported", {})
        for key, n in counts.items():
            if n != reported.get(key, 0):
                model, call = key.split(":", 1)
                self.t.nonfinite_features(model, call, n - reported.get(key, 0))
                reported[key] = n

    def on_eof(self) -> tuple[list, bool]:
        publish(self.t, self.shard, force=True)
        return [], StatefulBatchLogic.RETAIN

    def _score(self, req: ScoreRequest, out: list) -> None:
        p = self.shard.score(req)
        c = req.candidate
        # predicted_clv (pure) fills the profile and an outreach that goes on: not computed for the rest
        goes_on = c is not None and (c.threshold is None or (p is not None and p >= c.threshold))
        clv = self.shard.clv(req) if req.model == "churn" and (self.profiles or goes_on) else None
        if p is not None:
            self.t.predictions.labels(req.model).inc()
        if self.profiles and (p is not None or clv is not None):
            fields = {}
            if p is not None:
                fields["churn_probability" if req.model == "churn" else "frustration_probability"] = round(p, 4)
            if clv is not None:
                fields["predicted_clv"] = clv
            out.append(ProfileUpdate(req.customer_id, fields))
        if self.profiles and c is not None and c.recs is not None and req.features.get(SESSION_END):
            # a session ended: the profile's next-product list, from the outreach candidate's query
            out.append(ProfileUpdate(req.customer_id, {"recommendations": self.recs.for_customer(c.recs, req.ts)}))
        if c is None:
            return
        c.score = None if p is None else round(p, 4)
        if c.type == "escalation":
            c.payload["frustration"] = c.score
            if p is not None and p >= self.cfg.frustration_threshold and "frustration" not in c.reasons:
                c.reasons.append("frustration")
        elif c.type == "proactive_outreach":
            c.payload["churn_probability"] = c.score
            c.payload["predicted_clv"] = clv
            if clv is not None and self.cfg.vip_clv is not None and clv >= self.cfg.vip_clv:
                c.tier = "vip"  # priority as for a vip: their expected spend says so
        if goes_on:
            if c.recs is not None:  # only for candidates that go on: a recommendation costs ~100 us
                c.payload["recommendations"] = self.recs.recommend(c.recs, c.event_ts)
            out.append(c)

    def snapshot(self) -> Optional[bytes]:
        if not self.recovery:  # a shard pickles to megabytes: never without a reader
            return None
        return pickle.dumps((self.shard, self.recs), protocol=pickle.HIGHEST_PROTOCOL)



PRODUCT_SHARDS = 8  # product-state keys: each lands on worker j % w for any w <= 8 (connectors.routing)


@lru_cache(maxsize=1 << 16)
def product_shard(product_id: str) -> int:
    return shard_index(product_id, PRODUCT_SHARDS)


def bundle_pairs(keys: list[str]) -> Callable[[list], list]:
    """A batch of :class:`PairMsg` -> one ``(shard key, (pos, blocks))`` item per product shard.

    Co-occurrences are the busiest traffic between workers (about 2.7 pairs per event). As one
    Bytewax item each they cost a routing decision and, half of them, a pickle across processes;
    bundled per batch they cost a few items (measured: with two workers, the recommendation path
    was a third of each worker's time, most of it that per-item overhead). A block whose products
    live on several shards is split by its ``products``; each part keeps all the ``others``."""

    def bundle(msgs: list) -> list:
        out: dict[int, list] = {}
        pos = 0
        for m in msgs:
            for block in m.blocks:
                products = block[0]
                j = product_shard(products[0])
                if len(products) > 1:
                    parts: dict[int, list] = {}
                    for p in products:
                        parts.setdefault(product_shard(p), []).append(p)
                    if len(parts) > 1:
                        for j, mine in parts.items():
                            out.setdefault(j, []).append((tuple(mine), block[1], block[2], block[3]))
                        continue
                out.setdefault(j, []).append(block)
            if m.pos > pos:
                pos = m.pos
        return [(keys[j], (pos, blocks)) for j, blocks in out.items()]

    return bundle


class ProductsLogic(StatefulBatchLogic):
    """Adapts the :class:`ProductNeighbours` of one product shard: co-occurrence blocks in, the
    neighbour lists that changed materially out (one list of updates per batch, broadcast to every
    model shard by the flow)."""

    def __init__(self, cfg: RuleConfig, resume: Optional[bytes], recovery: bool = True):
        self.products: dict[str, ProductNeighbours] = pickle.loads(resume) if resume is not None else {}
        self.cfg = cfg
        self.recovery = recovery

    def on_batch(self, items: list) -> tuple[list, bool]:
        products = self.products
        touched: dict[str, int] = {}  # product -> latest pair ts in this batch
        pos = 0
        for p, blocks in items:
            if p > pos:
                pos = p
            observe_blocks(products, blocks, self.cfg.recs, touched)
        updates = [u for u in (products[a].update(ts) for a, ts in touched.items()) if u is not None]
        return ([(updates, pos)] if updates else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> Optional[bytes]:
        return pickle.dumps(self.products, protocol=pickle.HIGHEST_PROTOCOL) if self.recovery else None


# --------------------------------------------------------------------------- policy


class PolicyLogic(StatefulBatchLogic):
    """Adapts :class:`PolicyState`. ``live``: marketing due more than ``max_trigger_age`` before the
    wall clock is suppressed as ``stale`` (a replay only counts them: see flows.replay)."""

    def __init__(self, cfg: PolicyConfig, t: Telemetry, resume: Optional[bytes], recovery: bool = True,
                 live: bool = False):
        self.recovery = recovery
        self.live = live
        self.cfg = cfg
        self.t = t
        self.state = pickle.loads(resume) if resume is not None else PolicyState()

    def on_batch(self, items: list) -> tuple[list, bool]:
        out: list = []
        now = int(time.time() * 1000) if self.live else None
        erased = False
        for item in items:
            if type(item) is Erasure:  # what policy remembers of the customer (caps, cooldowns) goes
                st = self.state
                item.removed = {**item.removed, "policy": bool(st.sent or st.marketing or st.apologies
                                                                or st.escalated or st.orders or st.held
                                                                or st.exposures or st.consent.changes
                                                                or st.zones.changes)}
                self.state, erased = PolicyState(), True
                self.t.erasure()
                out.append(item)
                continue
            erased = False
            for result in self.state.decide(item, self.cfg, now):
                kind = type(result)
                if kind is Candidate:
                    self.t.trigger(result.type)
                elif kind is Suppressed:
                    self.t.suppress(result.candidate.type, result.reason)
                elif kind is Tally:  # counts only
                    self.t.tally(result.kind, result.type, result.group, result.converted)
                    if result.kind == "outcome":
                        publish_uplift(self.t, result.type)
                    continue
                out.append(result)
        # nothing after the erasure: the key leaves the state (and the snapshot) altogether
        return out, StatefulBatchLogic.DISCARD if erased else StatefulBatchLogic.RETAIN

    def snapshot(self) -> Optional[bytes]:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL) if self.recovery else None


def publish_uplift(t: Telemetry, type: str) -> dict:
    """The holdout comparison of ``type`` from this process's counts -> the ``crm_holdout_uplift``
    gauges; returns the summary's entry (operators.outcomes.uplift)."""
    u = uplift(t.holdout_counts(type))
    for g in ("sent", "holdout"):
        if u[g]["rate"] is not None:
            t.uplift.labels(type, f"rate_{g}").set(u[g]["rate"])
    if u["ci95"] is not None:
        t.uplift.labels(type, "difference").set(u["difference"])
        t.uplift.labels(type, "ci95_low").set(u["ci95"][0])
        t.uplift.labels(type, "ci95_high").set(u["ci95"][1])
    return u


# --------------------------------------------------------------------------- the flow


# Bytewax's map, key_on and key_rm call a Python function per item from a generator (key_on
# also type-checks each key); one call per batch with a comprehension does the same for less.
def _map(step: str, stream, fn: Callable[[Any], Any]):
    """``op.map``, one Python call per batch."""
    return op.flat_map_batch(step, stream, lambda xs: [fn(x) for x in xs])


def _key_on(step: str, stream, key: Callable[[Any], str]):
    """``op.key_on``, one Python call per batch (the stateful step refuses a key that is not a str)."""
    return op.flat_map_batch(step, stream, lambda xs: [(key(x), x) for x in xs])


def _unkey(items: list) -> list:
    return [v for _, v in items]


def _key_rm(step: str, stream):
    """``op.key_rm``, one Python call per batch."""
    return op.flat_map_batch(step, stream, _unkey)


def _outputs(name: str, stream, sinks: list[tuple[Sink, Optional[Encoder]]]) -> None:
    for i, (sink, encoder) in enumerate(sinks):
        s = stream if encoder is None else _map(f"{name}_encode_{i}", stream, encoder)
        op.output(f"{name}_out_{i}", s, sink)


def _key_event(e: Event) -> list:
    """By customer; an ``identify`` to both of its ids (operators.identity); a catalogue event
    (keyed by product, no customer) to no customer: the watch step takes it (flows.watch_step)."""
    if e.type != "identify":
        return [(e.customer_id, e)] if e.type not in CATALOG_TYPES else []
    return identify_keys(e)


def _with_watermarks(flow: Dataflow, items, edges: Edges):
    """Events keyed by customer; every watermark to every worker's inbox key, on the same path as
    the events (so each worker sees a partition's watermark after the events it covers); plus the
    frontier's ticks."""
    # Bytewax runs a batch's keys in sorted order: the leading space puts the inbox before the
    # customers, so they already see the watermark that came with their events
    inboxes = worker_keys(" watermarks/", edges.workers)

    def key(xs: list) -> list:
        out: list = []
        for x in xs:
            if type(x) is Watermark:
                out.extend([(k, x) for k in inboxes])
            else:
                out.extend(_key_event(x))
        return out

    keyed = op.flat_map_batch("key_customer", items, key)
    return op.merge("profile_input", keyed, op.input("ticks", flow, edges.ticks))


@dataclass(frozen=True)
class ProfileOut:
    """The customer step's outputs, one stream per kind (as Bytewax's ``KafkaOpOut(oks, errs)``)."""

    pairs: Any  # PairMsg: a closed session's co-occurrence blocks, to the product step
    failed: Any  # DeadLetter: an event the core could not apply (its raw bytes and a reason)
    profiles: Any  # ProfileUpdate: fields of crm:customer:{id}
    to_models: Any  # ScoreRequest, Label, RecsEval, Candidate, Erasure: on to the model shards


@dataclass(frozen=True)
class ModelsOut:
    profiles: Any  # ProfileUpdate: scores and recommendations for the profile
    recs: Any  # RecsTop: a product's top list for crm:recs:{id}
    to_policy: Any  # Candidate (scored), Erasure, Notice: keyed by customer into policy


@dataclass(frozen=True)
class PolicyOut:
    triggers: Any  # Candidate: sent
    suppressed: Any  # Suppressed: held back, with the reason
    erasures: Any  # Erasure: completed; its audit record and profile delete
    profiles: Any  # ProfileUpdate (last_trigger per type)


def split_types(step: str, stream, *kinds: type, rest_first: bool = True) -> list:
    """``[stream of kinds[0], ..., stream of the rest]``: one branch per type, by exact type.

    Each branch calls its predicate on every item that reaches it. ``rest_first``: the first
    branch takes the kinds apart from the rest, so an item of none of them (most of what the
    customer and policy steps emit goes on as the rest) is looked at once, not once per kind;
    ``False`` when the kinds are the common case (the models step: mostly profile updates)."""
    out = []
    if rest_first and len(kinds) > 1:
        kindset = frozenset(kinds)
        first = op.branch(f"{step}_kinds", stream, lambda x: type(x) in kindset)
        stream, rest = first.trues, first.falses
        for kind in kinds[:-1]:
            b = op.branch(f"{step}_{kind.__name__}", stream, lambda x, k=kind: type(x) is k)
            out.append(b.trues)
            stream = b.falses
        return out + [stream, rest]  # only kinds[-1] is left in ``stream``
    for kind in kinds:
        b = op.branch(f"{step}_{kind.__name__}", stream, lambda x, k=kind: type(x) is k)
        out.append(b.trues)
        stream = b.falses
    return out + [stream]


def customer_step(flow: Dataflow, events, settings: Settings, rules: RuleConfig, edges: Edges, t: Telemetry,
                  tombs: Tombstones, profile_mode: str) -> ProfileOut:
    """decode's events -> the customer state machines (``profile``, keyed by customer; identified
    customers on to ``profile_merged``) -> typed outputs."""
    live = edges.live
    if edges.watermarks is None:
        by_customer = op.flat_map("key_customer", events, _key_event)
    else:
        by_customer = _with_watermarks(flow, events, edges)
    profiled = op.stateful_batch("profile", by_customer, lambda r: ProfileLogic(rules, live, t, r, edges.end,
                                                                          profile_mode, edges.recovery,
                                                                          edges.watermarks, tombs))
    profiled = op.key_rm("profile_unkey", profiled)
    # identified customers: their events and states go on to the merged step, keyed by customer
    to_merged = op.branch("split_identity", profiled, route_out)
    merged_in = op.key_on("key_merged", to_merged.trues, lambda x: x.customer_id)
    merged = op.stateful_batch("profile_merged", merged_in, lambda r: ProfileLogic(rules, live, t, r, edges.end,
                                                                                profile_mode, edges.recovery))
    profiled = op.merge("profiled_all", to_merged.falses, op.key_rm("merged_unkey", merged))
    return ProfileOut(*split_types("split", profiled, PairMsg, DeadLetter, ProfileUpdate))


def product_step(pairs, rules: RuleConfig, edges: Edges):
    """Co-occurrence blocks -> per product shard sketches -> ``(product, neighbour updates)``."""
    product_keys = [balanced_key("products/", j) for j in range(PRODUCT_SHARDS)]
    by_product = op.flat_map_batch("bundle_pairs", pairs, bundle_pairs(product_keys))
    return _key_rm("products_unkey", op.stateful_batch("product_shards", by_product,
                                                         lambda r: ProductsLogic(rules, r, edges.recovery)))


def model_shard_key(settings: Settings, shards: int) -> tuple[list[str], Callable[[str], str]]:
    """(the model shards' keys, customer id -> its shard's key); shard j runs on worker j % workers
    (connectors.routing)."""
    n_shards = settings.models.shards or shards
    shard_keys = [balanced_key("models/", i) for i in range(n_shards)]
    if settings.models.shards or n_shards == 1:
        def shard_key(customer_id: str) -> str:
            return shard_keys[shard_index(customer_id, n_shards)]
    else:  # one shard per worker: the shard on the worker that keeps the customer, so nothing crosses
        @lru_cache(maxsize=1 << 18)
        def shard_key(customer_id: str) -> str:
            return shard_keys[worker_of(customer_id, n_shards)]
    return shard_keys, shard_key


def models_step(customer: ProfileOut, updates, settings: Settings, rules: RuleConfig, edges: Edges,
                t: Telemetry, shards: int, warm: Optional[dict], profile_mode: str) -> ModelsOut:
    """Scoring requests and labels (by customer) and neighbour updates (to every shard) -> the
    model shards -> typed outputs."""
    shard_keys, shard_key = model_shard_key(settings, shards)
    broadcast = op.flat_map_batch("broadcast_recs", updates, lambda us: [
        RecsUpdate(u[0], key, i == 0, u[1]) for u in us for i, key in enumerate(shard_keys)])
    to_models = op.merge("to_models", customer.to_models, broadcast)
    by_shard = _key_on("key_shard", to_models,
                       lambda x: x.shard if type(x) is RecsUpdate else shard_key(x.customer_id))
    scored = _key_rm("models_unkey", op.stateful_batch("models", by_shard, lambda r: ModelLogic(
        settings, rules, t, r, warm, profile_mode != "none", edges.recovery, bool(edges.recs))))
    return ModelsOut(*split_types("split_models", scored, ProfileUpdate, RecsTop, rest_first=False))


def policy_step(to_policy, policy_cfg: PolicyConfig, edges: Edges, t: Telemetry) -> PolicyOut:
    """Candidates and erasures keyed by customer -> the contact policy -> typed outputs."""
    by_customer = op.key_on("key_customer_policy", to_policy, lambda x: x.customer_id)
    decided = op.key_rm("policy_unkey", op.stateful_batch("policy", by_customer, lambda r: PolicyLogic(
        policy_cfg, t, r, edges.recovery, edges.live)))
    return PolicyOut(*split_types("split_policy", decided, Candidate, Suppressed, Erasure))


def profile_rules(settings: Settings, policy_cfg: PolicyConfig, live: bool) -> RuleConfig:
    """The profile step's rules: with the contact policy's part (consent, zones and clock notes to
    policy, operators.contact) and, live, the daily churn refresh (live profiles are read at any
    time: an away customer's churn score stays fresh)."""
    rules = RuleConfig(settings)
    if live:
        rules.churn_refresh = rules.refresh_every
    rules.contact = policy_cfg.contact
    return rules


def build_flow(settings: Settings, edges: Edges, shards: int = 1, t: Optional[Telemetry] = None,
               flow_id: str = "crm_stream", warm: Optional[dict] = None) -> Dataflow:
    """The whole dataflow; ``warm`` holds trained models to start every shard from."""
    t = t or telemetry()
    policy_cfg = PolicyConfig(settings)
    live = edges.live
    rules = profile_rules(settings, policy_cfg, live)
    flow = Dataflow(flow_id)
    raw = op.input("input", flow, edges.source)
    decoded = op.flat_map_batch("decode", raw, make_batch_decoder(settings, t))
    split = op.branch("split_dead_letters", decoded, lambda x: type(x) is not DeadLetter)
    dead = _map("dead_letter_json", split.falses, lambda d: ("dlq", d.to_json()))
    _outputs("dead_letters", dead, edges.deadletters)

    profile_mode = "batch" if live else ("end" if edges.profiles else "none")
    tombs = edges.tombstones or Tombstones(settings.privacy.tombstone_key.get_secret_value().encode())
    customer = customer_step(flow, split.trues, settings, rules, edges, t, tombs, profile_mode)
    _outputs("failed_events", _map("failed_json", customer.failed, lambda d: ("dlq", d.to_json())),
             edges.deadletters)
    updates = product_step(customer.pairs, rules, edges)
    models = models_step(customer, updates, settings, rules, edges, t, shards, warm, profile_mode)
    if edges.recs:
        _outputs("recs", _map("recs_top", models.recs, lambda r: (r.product_id, r.top)), edges.recs)

    to_policy = models.to_policy
    watch_cfg = WatchConfig(settings, rules.lateness)
    if watch_cfg.on:  # price_drop / back_in_stock: the product-keyed watch lists (flows.watch_step)
        from flows.watch_step import watch_candidates

        found = watch_candidates(split.trues, watch_cfg, live, edges.recovery, edges.watermarks, tombs)
        to_policy = op.merge("to_policy", to_policy, found)
    policy = policy_step(to_policy, policy_cfg, edges, t)
    audit = _map("erasure_completed", policy.erasures,
                   lambda e: (e.customer_id, audit_record(e, utc_now_iso(), format_ts)))
    _outputs("audit", audit, edges.audit)
    triggers = _map("trigger_json", policy.triggers, lambda c: (c.customer_id, c.to_trigger(utc_now_iso())))
    _outputs("triggers", triggers, edges.triggers)
    if edges.suppressed:
        sup = _map("suppressed_json", policy.suppressed,
                     lambda s: (s.candidate.customer_id, {**s.candidate.to_trigger(""), "suppressed": s.reason}))
        _outputs("suppressed", sup, edges.suppressed)
    if edges.profiles:
        _profile_outputs(edges, [customer.profiles, models.profiles, policy.profiles], policy.suppressed, audit)
    return flow


def _profile_outputs(edges: Edges, updates: list, suppressed, audit) -> None:
    """Profile fields to crm:customer:{id}; the agent sees the last candidate of each type policy
    held back, and why; an erasure deletes the profile in the same sink, after the updates before it."""
    updates.append(_map("suppressed_profile", suppressed, lambda s: ProfileUpdate(
        s.candidate.customer_id, {f"last_suppressed.{s.candidate.type}": {
            "reason": s.reason, "event_ts": format_ts(s.candidate.event_ts)}})))
    deletes = _map("profile_deletes", audit, lambda a: (a[0], (a[0], None, a[1])))
    merged = op.merge("profile_updates", *updates)
    merged = op.merge("profile_updates_and_deletes", _map("profile_fields", merged, lambda u: (
        u.customer_id, (u.customer_id, u.fields, u.defaults))), deletes)
    _outputs("profiles", merged, edges.profiles)
