"""Event-time watermarks of the live input: how far every input partition has got in event time.

Live, the three input topics are read independently, so one customer's clickstream can run ahead
of their orders (after a restart, or while a topic lags). A timer that fired on the clickstream's
clock alone could remind a customer of a cart they had already bought. The engine therefore holds
a timer until every input partition has passed its due time: Flink's watermark (the minimum event
time over the input partitions, idle partitions left out; Flink docs, "Generating Watermarks",
``withIdleness``). CONTRACT.md, "Time across topics", states the rule.

* :class:`PartitionClock` (source side): one partition's watermark, the greatest event time read
  from it; :data:`IDLE` once it has delivered nothing for ``idle_after`` of wall-clock time;
  :data:`DONE` at its end (``tail=False``).
* :class:`Watermark`: what a partition reports; the flow sends each one to every worker, on the
  same channel as that partition's events, so a worker never sees a watermark before the events
  it covers.
* :class:`Frontier` (one per worker): the minimum over all partitions, and the customers waiting
  for it to move (Bytewax wakes a keyed step only for its items or its wall-clock ``notify_at``).
* :class:`TickSource`: one partition per worker that turns "the frontier passed what you wait for"
  into a ``(customer_id, TICK)`` item, so waiting customers are woken, and only they.

No Kafka and no customer logic here; units are epoch milliseconds of event time.
"""

from __future__ import annotations

import heapq
import time
from datetime import datetime, timedelta, timezone
from threading import get_ident
from typing import Any, Optional

from bytewax.inputs import DynamicSource, StatelessSourcePartition

UNKNOWN = -(1 << 62)  # nothing read yet and not idle yet: holds everything back
IDLE = 1 << 62  # delivered nothing for idle_after: holds nothing back until it delivers again
DONE = IDLE + 1  # read to its end: holds nothing back, ever


class Watermark:
    """Partition ``part`` (one of ``parts`` input partitions) has reached event time ``ts`` (ms),
    or is :data:`IDLE` / :data:`DONE`."""

    __slots__ = ("part", "ts", "parts")

    def __init__(self, part: str, ts: int, parts: int):
        self.part = part
        self.ts = ts
        self.parts = parts

    def __reduce__(self):
        return (Watermark, (self.part, self.ts, self.parts))

    def __repr__(self) -> str:
        return f"Watermark({self.part}, {self.ts}, of {self.parts})"


class Tick:
    """A wake-up for one customer: the frontier passed the time it waits for."""

    __slots__ = ()

    def __reduce__(self):
        return (Tick, ())


TICK = Tick()


class PartitionClock:
    """The watermark of one input partition, kept by the source that reads it.

    ``observe(ts)`` for every valid event read; ``polled(n, now)`` after every poll (``n``
    messages, ``now`` from ``time.monotonic()``) returns a :class:`Watermark` when the value
    changed, else ``None``. A partition with unread messages on the broker is never idle (each
    poll returns some), so a restart that catches up is held to its slowest partition; one that
    is quiet for ``idle_after_s`` stops holding the others back, as Flink's ``withIdleness``.
    """

    def __init__(self, part: str, parts: int, idle_after_s: float, max_ts: Optional[int] = None,
                 now: Optional[float] = None):
        self.part = part
        self.parts = parts
        self.idle_after_s = idle_after_s
        self.max_ts = max_ts  # from the snapshot: a restart knows at once how far the partition got
        self.quiet_since = time.monotonic() if now is None else now
        self.idle = False  # an empty topic at the start too: it may be one whose producer is late
        self.sent: Optional[int] = None

    def value(self) -> int:
        if self.idle:
            return IDLE
        return UNKNOWN if self.max_ts is None else self.max_ts

    def observe(self, ts: int) -> None:
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts

    def polled(self, messages: int, now: float) -> Optional[Watermark]:
        if messages:
            self.quiet_since = now
            self.idle = False
        elif not self.idle and now - self.quiet_since >= self.idle_after_s:
            self.idle = True
        value = self.value()
        if value == self.sent:
            return None
        self.sent = value
        return Watermark(self.part, value, self.parts)

    def finish(self) -> Watermark:
        self.sent = DONE
        return Watermark(self.part, DONE, self.parts)


class _Schedule:
    """Keys each due once at a time (an event time or a wall-clock time): one heap entry per
    registration; a replaced or cancelled one is skipped when it surfaces (lazy deletion,
    compacted when stale entries outnumber live ones)."""

    __slots__ = ("heap", "at")

    def __init__(self) -> None:
        self.heap: list[tuple] = []  # (when, key)
        self.at: dict[str, Any] = {}  # key -> its live registration

    def set(self, key: str, when: Any) -> None:
        """Register ``key`` at ``when`` (replacing its earlier one); ``None`` cancels it."""
        if when is None:
            self.at.pop(key, None)
            return
        if self.at.get(key) == when:
            return
        self.at[key] = when
        heapq.heappush(self.heap, (when, key))
        if len(self.heap) > 2 * len(self.at) + 1024:  # mostly stale: rebuild from the live ones
            self.heap = [(w, k) for k, w in self.at.items()]
            heapq.heapify(self.heap)

    def pop_due(self, limit: Any) -> list[str]:
        """The keys registered at or before ``limit``, each once, in time order; they leave."""
        out = []
        heap, at = self.heap, self.at
        while heap and heap[0][0] <= limit:
            when, key = heapq.heappop(heap)
            if at.get(key) == when:
                del at[key]
                out.append(key)
        return out

    def first(self) -> Any:
        """The earliest entry's time (possibly a stale one), ``None`` when empty."""
        return self.heap[0][0] if self.heap else None


class Frontier:
    """One worker's view of the input: ``value`` = the minimum watermark over every input
    partition (:data:`UNKNOWN` until all have reported), and the customers waiting for it.

    ``wait(key, until)`` registers (or, with ``None``, unregisters) a customer that can make
    progress once ``value >= until``; ``ready()`` pops those it now can.

    ``alarm(key, wall)`` does the same on the wall clock (seconds since the epoch) for timers far
    ahead: Bytewax's ``stateful_batch`` scans every key's ``notify_at`` on each activation, so a
    base of a million away customers, each with a daily rescore, would cost O(customers) per
    batch; here they cost O(log n) once."""

    def __init__(self):
        self.parts: dict[str, int] = {}
        self.expected = 0
        self.value = UNKNOWN
        self.waits = _Schedule()  # by event time: the frontier's value
        self.alarms = _Schedule()  # by wall-clock seconds

    def observe(self, wm: Watermark) -> None:
        self.parts[wm.part] = wm.ts
        if wm.parts > self.expected:
            self.expected = wm.parts
        self.value = min(self.parts.values()) if len(self.parts) >= self.expected else UNKNOWN

    def others(self, part: str) -> int:
        """The least watermark over every partition but ``part``: :data:`UNKNOWN` while one has
        not reported, :data:`IDLE` when ``part`` is the only one."""
        if self.expected == 0 or len(self.parts) - (part in self.parts) < self.expected - 1:
            return UNKNOWN
        return min((v for k, v in self.parts.items() if k != part), default=IDLE)

    def wait(self, key: str, until: Optional[int]) -> None:
        self.waits.set(key, until)

    def alarm(self, key: str, wall: Optional[float]) -> None:
        """Wake ``key`` once the wall clock passes ``wall`` (s); ``None`` cancels its alarm."""
        self.alarms.set(key, wall)

    def ready(self, now: Optional[float] = None) -> list[str]:
        """The keys the frontier (or, for alarms, the wall clock ``now``) lets go, each once."""
        out = self.waits.pop_due(self.value)
        if self.alarms.heap:
            for key in self.alarms.pop_due(time.time() if now is None else now):
                if key not in out:
                    out.append(key)
        return out

    def has_ready(self) -> bool:
        """Someone waits for a frontier already reached (the ticker has yet to wake them)."""
        first = self.waits.first()
        return first is not None and first <= self.value

    def finished(self) -> bool:
        """Every partition has reported :data:`DONE` and nobody waits (bounded input only)."""
        return (self.expected > 0 and len(self.parts) >= self.expected and not self.waits.at
                and all(v == DONE for v in self.parts.values()))


class Watermarks:
    """The :class:`Frontier` of each worker of this process, found by the worker's thread (timely
    runs each worker on one thread of its own for its whole life, and every step of a worker,
    the customers' and the ticker's, runs on it)."""

    def __init__(self):
        self._by_thread: dict[int, Frontier] = {}

    def here(self) -> Frontier:
        ident = get_ident()
        found = self._by_thread.get(ident)
        if found is None:
            found = self._by_thread[ident] = Frontier()
        return found


class _TickPartition(StatelessSourcePartition):
    def __init__(self, watermarks: Watermarks, tail: bool, interval_s: float):
        self.watermarks = watermarks
        self.tail = tail
        self.interval = timedelta(seconds=interval_s)

    def next_batch(self) -> list:
        frontier = self.watermarks.here()
        keys = frontier.ready()
        if not keys and not self.tail and frontier.finished():
            raise StopIteration()
        return [(k, TICK) for k in keys]

    def next_awake(self) -> Optional[datetime]:
        # one heap-top check per interval per worker; never a poll per customer
        return datetime.now(timezone.utc) + self.interval


class TickSource(DynamicSource):
    """``(customer_id, TICK)`` for every customer of this worker whose wait the frontier has
    passed, checked every ``interval_s``; with ``tail=False`` it ends once every input partition
    is :data:`DONE` and nobody waits."""

    def __init__(self, watermarks: Watermarks, tail: bool = True, interval_s: float = 0.01):
        self.watermarks = watermarks
        self.tail = tail
        self.interval_s = interval_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TickPartition:
        return _TickPartition(self.watermarks, self.tail, self.interval_s)
