"""The input watermark (connectors.watermark) and how the profile step obeys it, without Bytewax:
a partition's clock, a worker's frontier, and ProfileLogic holding events and timers."""

from __future__ import annotations

import pickle

from helpers import at, ev, ms_at

from connectors.metrics import Telemetry
from connectors.routing import worker_keys, worker_of
from connectors.watermark import DONE, IDLE, TICK, UNKNOWN, Frontier, PartitionClock, Watermark, Watermarks
from flows.dataflow import ProfileLogic
from operators.customer import CustomerState
from operators.rules import RuleConfig
from operators.messages import Candidate, ScoreRequest

CLICK, ORDERS, CHAT = "crm.clickstream/0/", "crm.orders/0/", "crm.chat/0/"
PARTS = ("0-crm.clickstream", "0-crm.orders", "0-crm.chat")


# --------------------------------------------------------------------------- one partition


def test_a_partition_reports_the_greatest_event_time_read_and_only_changes():
    clock = PartitionClock("p", 3, idle_after_s=5, now=0.0)
    assert clock.polled(0, 0.1).ts == UNKNOWN  # nothing read yet: holds everything back
    assert clock.polled(0, 0.2) is None  # unchanged: nothing to send
    clock.observe(2000)
    clock.observe(1000)  # an older event does not move it back
    wm = clock.polled(2, 0.3)
    assert (wm.part, wm.ts, wm.parts) == ("p", 2000, 3)
    assert clock.polled(1, 0.4) is None


def test_a_quiet_partition_turns_idle_and_back():
    clock = PartitionClock("p", 1, idle_after_s=5, max_ts=7000, now=0.0)
    assert clock.polled(0, 1.0).ts == 7000  # known from the snapshot at once
    assert clock.polled(0, 4.9) is None
    assert clock.polled(0, 5.0).ts == IDLE  # quiet for idle_after: holds nothing back
    clock.observe(8000)
    assert clock.polled(1, 9.0).ts == 8000  # delivers again: holds again
    assert clock.finish().ts == DONE


def test_an_empty_partition_at_the_start_holds_until_idle_after():
    """A topic still empty at the start may be one whose producer is late: no shortcut."""
    clock = PartitionClock("p", 1, idle_after_s=30, now=0.0)
    assert clock.polled(0, 29.0).ts == UNKNOWN
    assert clock.polled(0, 30.0).ts == IDLE


# --------------------------------------------------------------------------- a worker's frontier


def test_the_frontier_is_the_minimum_once_every_partition_reported():
    f = Frontier()
    f.observe(Watermark("a", 5000, 3))
    f.observe(Watermark("b", 3000, 3))
    assert f.value == UNKNOWN  # "c" has not reported
    f.observe(Watermark("c", 9000, 3))
    assert f.value == 3000
    f.observe(Watermark("b", IDLE, 3))  # idle: left out
    assert f.value == 5000
    f.observe(Watermark("b", 4000, 3))  # back, behind the others: the frontier goes back too
    assert f.value == 4000


def test_waiting_customers_are_ready_once_the_frontier_passes_their_time():
    f = Frontier()
    f.observe(Watermark("a", 1000, 1))
    f.wait("c1", 2000)
    f.wait("c2", 5000)
    f.wait("c3", 3000)
    f.wait("c3", 1500)  # moved: the old entry is skipped when it surfaces
    assert f.ready() == [] and not f.has_ready()
    f.observe(Watermark("a", 3000, 1))
    assert f.has_ready()
    assert sorted(f.ready()) == ["c1", "c3"]
    f.wait("c2", None)  # no longer waits
    f.observe(Watermark("a", DONE, 1))
    assert f.ready() == [] and f.finished()


def test_each_worker_thread_has_its_own_frontier():
    import threading

    wm = Watermarks()
    seen = []
    t = threading.Thread(target=lambda: seen.append(wm.here()))
    t.start()
    t.join()
    assert wm.here() is wm.here() and seen[0] is not wm.here()


def test_one_inbox_key_per_worker_for_any_worker_count():
    for workers in (1, 2, 3, 8, 12):
        keys = worker_keys(" watermarks/", workers)
        assert [worker_of(k, workers) for k in keys] == list(range(workers))
        assert all(k < "0" for k in keys)  # sorted before any customer id Bytewax runs in the same batch


# --------------------------------------------------------------------------- the profile step


class Step:
    """The profile step of one worker: an inbox for watermarks and one logic per customer."""

    def __init__(self, **settings):
        from config.settings import load_settings

        self.cfg = RuleConfig(load_settings(**settings))
        self.t = Telemetry()
        self.watermarks = Watermarks()
        self.logics: dict[str, ProfileLogic] = {}
        self.out: list = []

    def logic(self, customer: str) -> ProfileLogic:
        if customer not in self.logics:
            self.logics[customer] = ProfileLogic(self.cfg, True, self.t, None, watermarks=self.watermarks)
        return self.logics[customer]

    def watermark(self, **parts: float) -> None:
        """Partitions by short name (click/orders/chat) -> event time in minutes after T0."""
        inbox = ProfileLogic(self.cfg, True, self.t, None, watermarks=self.watermarks)
        names = {"click": PARTS[0], "orders": PARTS[1], "chat": PARTS[2]}
        items = [Watermark(names[k], v if v in (IDLE, DONE) else ms_at(minutes=v), 3) for k, v in parts.items()]
        assert inbox.on_batch(items) == ([], ProfileLogic.DISCARD)

    def send(self, source: str, *events) -> None:
        for e in events:
            e.source = source + str(e.pos)
        out, _ = self.logic(events[0].customer_id).on_batch(list(events))
        self.out.extend(out)
        self.logic(events[0].customer_id).notify_at()  # Bytewax asks after every batch

    def tick(self) -> None:
        for customer in self.watermarks.here().ready():
            out, _ = self.logic(customer).on_batch([TICK])
            self.out.extend(out)
            self.logic(customer).notify_at()

    def triggers(self, type: str) -> list[Candidate]:
        found = [o.candidate if isinstance(o, ScoreRequest) else o for o in self.out]
        return [c for c in found if isinstance(c, Candidate) and c.type == type]


def test_a_lagging_orders_topic_holds_the_cart_timer_until_it_has_passed_the_due_time():
    """The issue's case: add to cart, order 2 min later on crm.orders, page view 2 h later on the
    clickstream, read before the order: no reminder for the item just bought."""
    step = Step()
    step.watermark(click=0, orders=-1, chat=DONE)
    step.send(CLICK, ev("add_to_cart", at(0)))
    step.watermark(click=120, orders=-1, chat=DONE)
    step.send(CLICK, ev("page_view", at(120)))  # would pass the cart's due time (30 min): held
    assert step.logic("c1").held and not step.triggers("abandoned_cart")
    step.send(ORDERS, ev("order_placed", at(2)))
    step.watermark(click=120, orders=2, chat=DONE)
    step.tick()
    assert step.logic("c1").held  # the page view still waits: the orders may yet carry something
    step.watermark(click=120, orders=IDLE, chat=DONE)
    step.tick()
    assert not step.logic("c1").held and not step.triggers("abandoned_cart")
    assert step.logic("c1").state.clock == ms_at(minutes=120)


def cart_then_view_with_no_orders_read() -> "Step":
    """A cart at 0 and a page view 2 h later, while the orders topic has delivered nothing yet."""
    step = Step()
    step.watermark(click=0, orders=-1, chat=DONE)
    step.send(CLICK, ev("add_to_cart", at(0)))
    step.watermark(click=120, orders=-1, chat=DONE)
    step.send(CLICK, ev("page_view", at(120)))
    return step


def test_without_the_order_the_reminder_fires_once_every_input_has_passed_the_due_time():
    step = cart_then_view_with_no_orders_read()
    # due at 30 min; the reorder buffer waits `lateness` (5 min) past it for events within it
    step.watermark(click=120, orders=35, chat=DONE)
    step.tick()
    assert not step.triggers("abandoned_cart")
    step.watermark(click=120, orders=36, chat=DONE)
    step.tick()
    [cart] = step.triggers("abandoned_cart")
    assert cart.event_ts == ms_at(minutes=30)  # the due time, not when it was let go
    assert step.logic("c1").held  # the page view itself still waits: 2 h ahead of the orders


def test_events_far_ahead_of_the_frontier_wait_and_leave_merged_by_event_time(monkeypatch):
    """More than `lateness` ahead of the slowest input, an event waits (applied now, it would make
    that input's coming events late); held events leave merged by event time across partitions,
    in arrival order within one."""
    step = Step()
    step.watermark(click=0, orders=0, chat=0)
    step.send(CLICK, ev("page_view", at(30)), ev("product_view", at(29)))  # 29 arrives after 30
    assert len(step.logic("c1").held) == 2
    step.send(CHAT, ev("chat_message", at(10)))
    assert len(step.logic("c1").held) == 3
    applied = []
    original = CustomerState.process

    def spy(state, e, cfg, *rest):
        applied.append(e.ts)
        return original(state, e, cfg, *rest)

    monkeypatch.setattr(CustomerState, "process", spy)
    step.watermark(click=60, orders=60, chat=60)
    step.tick()
    assert applied == [ms_at(minutes=10), ms_at(minutes=30), ms_at(minutes=29)]
    assert step.t.held._value.get() == 0


def test_an_event_within_lateness_of_the_frontier_is_applied_at_once():
    step = Step()
    step.watermark(click=0, orders=0, chat=0)
    step.send(CHAT, ev("chat_message", at(4), text="I want to speak to a supervisor"))
    assert not step.logic("c1").held and step.triggers("escalation")  # service triggers keep their speed


def test_held_events_survive_a_snapshot():
    step = cart_then_view_with_no_orders_read()
    saved = step.logic("c1").snapshot()
    back = ProfileLogic(step.cfg, True, step.t, saved, watermarks=step.watermarks)
    assert [e.ts for _, _, e in back.held] == [ms_at(minutes=120)]
    assert pickle.loads(saved)[0].clock == ms_at(minutes=0)


def test_the_wall_clock_never_fires_a_timer_the_frontier_has_not_passed():
    """Live, `now` is the customer's clock advanced by wall-clock time, capped by the frontier."""
    step = Step()
    step.watermark(click=0, orders=-1, chat=DONE)
    step.send(CLICK, ev("add_to_cart", at(0)))
    logic = step.logic("c1")
    logic.wall_at_clock -= 3600  # an hour of wall-clock time has passed since
    assert logic.notify_at() is None  # held by the frontier: woken by a tick, not by the clock
    out, _ = logic.on_notify()
    assert not [o for o in out if isinstance(o, (Candidate, ScoreRequest))]
    step.watermark(click=60, orders=45, chat=DONE)
    step.tick()
    assert [c.event_ts for c in step.triggers("abandoned_cart")] == [ms_at(minutes=30)]


def test_the_time_the_engine_was_down_is_not_the_customers_silence(monkeypatch):
    """A restart resumes each customer's wall clock where the snapshot left it: the silence before
    the snapshot counts, the downtime does not (a replay would fire nothing there either)."""
    import flows.dataflow as dataflow

    step = Step()
    step.watermark(click=DONE, orders=DONE, chat=DONE)
    step.send(CLICK, ev("add_to_cart", at(0)))
    logic = step.logic("c1")
    logic.wall_at_clock -= 10 * 60  # ten minutes of silence before the snapshot
    saved = logic.snapshot()
    now = dataflow.time.time()
    monkeypatch.setattr(dataflow.time, "time", lambda: now + 3 * 3600)  # down for three hours
    back = ProfileLogic(step.cfg, True, step.t, saved, watermarks=step.watermarks)
    assert abs((now + 3 * 3600 - back.wall_at_clock) - 600) < 5
    out, _ = back.on_notify()
    assert not [o for o in out if isinstance(o, (Candidate, ScoreRequest))]
    monkeypatch.setattr(dataflow.time, "time", lambda: now + 3 * 3600 + 40 * 60)  # 50 min of silence in all
    out, _ = back.on_notify()
    assert [o.event_ts for o in out if isinstance(o, Candidate) and o.type == "abandoned_cart"] == [ms_at(30)]


# --------------------------------------------------------------------------- alarms


def test_frontier_alarms_fire_once_each_at_their_wall_time_and_a_new_one_replaces_the_old():
    f = Frontier()
    f.alarm("a", 100.0)
    f.alarm("b", 50.0)
    f.alarm("a", 200.0)  # replaces 100
    f.alarm("c", 10.0)
    f.alarm("c", None)  # cancelled
    assert f.ready(now=49.0) == [] and f.ready(now=150.0) == ["b"]
    assert f.ready(now=150.0) == [] and f.ready(now=1e9) == ["a"] and not f.alarms.at
    assert f.finished() is False  # alarms never count as input (finished() reads the partitions)


def test_a_timer_far_ahead_waits_in_the_frontier_not_in_bytewax_and_its_tick_fires_it_as_a_notify_would():
    """Live, Bytewax 0.21 scans every key's ``notify_at`` on each activation: an away customer's
    timer days ahead is the frontier's alarm instead, and the tick it raises runs the timer as
    Bytewax's notification would (the same outputs)."""
    import time

    def away_customer(step: Step) -> ProfileLogic:
        step.watermark(click=0, orders=DONE, chat=DONE)
        step.send(CLICK, ev("add_to_cart", at(0)))
        step.watermark(click=60, orders=DONE, chat=DONE)
        step.tick()
        logic = step.logic("c1")
        while True:  # the cart reminder and the session's end are near; then only the rescore, days ahead
            due = logic.state.next_deadline(step.cfg)
            wall = logic.wall_at_clock + (due - logic.state.clock) / 1000.0
            if wall > time.time() + 3600:
                return logic
            logic.wall_at_clock -= (wall - time.time()) + 1  # the wall clock moved on past it
            step.watermark(click=10 ** 9, orders=DONE, chat=DONE)
            step.out += logic.on_notify()[0]

    step, plain = Step(), Step()
    logic, other = away_customer(step), away_customer(plain)
    assert logic.notify_at() is None and "c1" in step.watermarks.here().alarms.at
    wall = step.watermarks.here().alarms.at["c1"]
    assert step.watermarks.here().ready(now=wall - 1) == []
    assert step.watermarks.here().ready(now=wall + 1) == ["c1"]
    for lg in (logic, other):
        lg.wall_at_clock -= wall - time.time() + 1  # as if the days had passed
    ticked = logic.on_batch([TICK])[0]
    notified = other.on_notify()[0]
    assert ticked and [type(o).__name__ for o in ticked] == [type(o).__name__ for o in notified]
    assert logic.state.clock == other.state.clock
