"""One wrong clock must not poison a customer (CONTRACT.md, Time: ``max_future_skew``)."""

from __future__ import annotations

import orjson
from helpers import at, ms_at
from test_replay import run, write_log

from operators.clock import FutureGuard, ahead_of_wall
from operators.events import DeadLetter, Event, validate

MIN = 60_000


def event(i: int, minutes: float, customer: str = "c1", type: str = "page_view", **kw) -> Event:
    return validate({"event_id": f"e{i}", "type": type, "customer_id": customer, "ts": at(minutes),
                     "session_id": "s", **kw})


def judge(events: list, skew_ms: int = 15 * MIN) -> list:
    guard = FutureGuard(skew_ms)
    out = []
    for e in events:
        out += [item for item, _ in guard.push(e, orjson.dumps(getattr(e, "data", {})))]
    return out + [item for item, _ in guard.finish()]


def verdicts(events: list) -> list[str]:
    return ["future" if isinstance(x, DeadLetter) else "ok" for x in judge(events)]


def test_a_day_fast_event_among_normal_ones_is_future():
    events = [event(i, i) for i in range(20)]
    events.insert(7, event(99, 7 + 24 * 60))
    v = verdicts(events)
    assert v[7] == "future" and v.count("future") == 1


def test_the_very_first_event_of_a_log_can_be_the_wrong_one():
    events = [event(0, 24 * 60)] + [event(i, i) for i in range(1, 12)]
    assert verdicts(events)[0] == "future" and verdicts(events)[1:] == ["ok"] * 11


def test_a_quiet_night_in_the_log_is_not_a_wrong_clock():
    events = [event(i, i) for i in range(10)] + [event(100 + i, 10 * 60 + i) for i in range(10)]
    assert verdicts(events) == ["ok"] * 20


def test_a_few_fast_events_in_a_row_are_all_caught():
    events = [event(i, i) for i in range(10)] + [event(50 + i, 24 * 60 + i) for i in range(3)] \
        + [event(20 + i, 10 + i) for i in range(10)]
    assert verdicts(events).count("future") == 3


def test_near_the_end_of_a_log_the_events_left_judge():
    events = [event(i, i) for i in range(10)] + [event(99, 24 * 60)] + [event(10 + i, 10 + i) for i in range(3)]
    assert verdicts(events)[-4:] == ["future", "ok", "ok", "ok"]
    # fewer than three events after it say nothing: accepted (live, the wall clock judges every event)
    assert verdicts([event(i, i) for i in range(3)] + [event(98, 90)]) == ["ok"] * 4
    # three unsorted lines of a hand-made log are not a wrong clock
    assert verdicts([event(0, 60), event(1, 50), event(2, 5)]) == ["ok"] * 3


def test_lines_that_are_not_events_pass_in_order():
    events = [event(0, 0), "junk", event(1, 1)]
    assert [type(x).__name__ for x in judge(events)] == ["Event", "str", "Event"]


def test_live_reference_is_the_wall_clock():
    assert ahead_of_wall(ms_at(20), ms_at(0), 15 * MIN) and not ahead_of_wall(ms_at(10), ms_at(0), 15 * MIN)


def test_replay_a_day_fast_event_is_a_dead_letter_and_the_customer_keeps_its_apology(tmp_path):
    """The case behind the setting: a device a day fast silenced a delay_apology and an escalation."""
    lines = [
        {"event_id": "o1", "type": "order_placed", "customer_id": "c1", "ts": at(0), "order_id": "o1",
         "total": 50.0, "promised_delivery_ts": at(days=1)},
        {"event_id": "bad", "type": "page_view", "customer_id": "c1", "ts": at(days=1, minutes=30),
         "session_id": "s"},  # the phone thinks it is tomorrow
        {"event_id": "d1", "type": "order_delayed", "customer_id": "c1", "ts": at(60), "order_id": "o1"},
        {"event_id": "m1", "type": "chat_message", "customer_id": "c1", "ts": at(61), "conversation_id": "cv",
         "sender": "customer", "text": "I want to talk to a human"},
    ] + [{"event_id": f"x{i}", "type": "page_view", "customer_id": f"o{i}", "ts": at(62 + i), "session_id": "s"}
         for i in range(10)]
    summary, triggers, out = run(tmp_path, [write_log(tmp_path / "e.jsonl", lines)])
    assert summary["invalid_by_reason"] == {"future_ts": 1} and summary["events_late"] == 0
    [dead] = [orjson.loads(x) for x in out.dlq.read_bytes().splitlines()]
    assert dead["reason"] == "future_ts" and orjson.loads(dead["raw"])["event_id"] == "bad"
    assert sorted(t["type"] for t in triggers) == ["delay_apology", "escalation"]
    assert summary["events_read"] == summary["events_valid"] + summary["events_invalid"] + summary["events_duplicate"]
