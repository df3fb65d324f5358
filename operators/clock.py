"""How far ahead one event may be: a wrong device clock must not move a customer's clock.

An event more than ``max_future_skew`` ahead of a reference time is a dead letter with reason
``future_ts`` (CONTRACT.md, Time). Live, the reference is the wall clock when the event is read.
A replay has no trustworthy wall clock for last week's log, so :class:`FutureGuard` uses the log
itself: the median ``ts`` of the events that follow in the same file (and the frontier of those
already accepted), which a single wrong clock cannot move and a quiet night in the log does not
trip (the events after the gap are as late as the first one). An event with fewer than three
events after it in its file (the end of a log, a tiny hand-made one) is not judged: accepted.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Optional

from operators.events import DeadLetter, Event, format_ts

LOOKAHEAD = 9  # events after the one judged; odd, so the median is one of them
MIN_FOLLOWING = 3  # fewer events after it say nothing (a hand-made log of three unsorted lines)


def ahead_of_wall(ts: int, now_ms: int, skew_ms: int) -> bool:
    """Live: is ``ts`` (epoch ms) more than ``skew_ms`` ahead of the wall clock ``now_ms``?"""
    return ts > now_ms + skew_ms


def future_dead_letter(raw: bytes, ev: Event, reference: int) -> DeadLetter:
    return DeadLetter(raw, ev.source, "future_ts", f"ts {format_ts(ev.ts)} ahead of {format_ts(reference)}")


class FutureGuard:
    """Replay: judges each event of one file against the events after it, in file order.

    ``push(item, raw)`` returns the ``(item, raw)`` pairs whose verdict is known, in the order
    pushed, an event judged future replaced by its ``future_ts`` :class:`DeadLetter`; ``finish()``
    returns the rest. Holds at most ``LOOKAHEAD + 1`` lines, so a replay's memory is unchanged.
    """

    def __init__(self, skew_ms: int, lookahead: int = LOOKAHEAD):
        self.skew = skew_ms
        self.lookahead = lookahead
        self.window: deque = deque()
        self.times: deque = deque()  # the ts of the events in ``window``, in the same order
        self.events_held = 0
        self.frontier: Optional[int] = None  # the latest ts accepted so far

    def push(self, item: Any, raw: bytes) -> list[tuple[Any, bytes]]:
        window = self.window
        window.append((item, raw))
        if type(item) is Event:
            self.times.append(item.ts)
            self.events_held += 1
        out = []
        while window and (type(window[0][0]) is not Event or self.events_held > self.lookahead):
            out.append(self._judge_first())
        return out

    def finish(self) -> list[tuple[Any, bytes]]:
        return [self._judge_first() for _ in range(len(self.window))]

    def _judge_first(self) -> tuple[Any, bytes]:
        item, raw = self.window.popleft()
        if type(item) is not Event:
            return item, raw
        self.events_held -= 1
        times = self.times
        times.popleft()  # the judged event's own: the first event in the window
        n = len(times)
        frontier = self.frontier
        if frontier is not None and item.ts <= frontier + self.skew:  # the reference is at least the frontier
            if item.ts > frontier:
                self.frontier = item.ts
            return item, raw
        if n >= MIN_FOLLOWING:  # too few after it (a file's end, a tiny log): accepted
            ref = sorted(times)[(n - 1) // 2]  # the low median of the events that follow it
            if self.frontier is not None and self.frontier > ref:
                ref = self.frontier
            if item.ts > ref + self.skew:
                return future_dead_letter(raw, item, ref), raw
        if self.frontier is None or item.ts > self.frontier:
            self.frontier = item.ts
        return item, raw
