"""The Bytewax shell of the watch lists (``price_drop``, ``back_in_stock``: operators/watch.py).

Views, carts and purchases (as :class:`~operators.watch.Interest`) and ``crm.catalog`` events go
straight from decode to one of :data:`WATCH_SHARDS` keys by product shard (a popular product is
one bounded list, never a hot customer key); an erasure goes to every shard. The step's
candidates go on keyed by customer into the policy step, which decides what is sent. Built only
when one of the two rules is in ``rules.enabled``: with both off the flow is as before.
"""

from __future__ import annotations

import pickle
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import bytewax.operators as op
from bytewax.operators import StatefulBatchLogic

from connectors.routing import balanced_key
from connectors.watermark import Watermarks
from models.shard import shard_index
from operators.events import CATALOG_TYPES, Event
from operators.privacy import Tombstones
from operators.watch import WatchConfig, WatchShard, interest_of

WATCH_SHARDS = 8  # as the recommendations' product shards: key j lands on worker j % w for w <= 8
WATCH_KEYS = [balanced_key("watch/", j) for j in range(WATCH_SHARDS)]
POLL = timedelta(seconds=1)  # live: how often a change the input frontier still holds looks again


def route_watch(tombs: Optional[Tombstones]):
    """An event -> ``[(shard key, Interest or catalogue Event)]`` (``[]``: nothing to watch)."""

    def route(x: Any) -> list:
        if type(x) is not Event:
            return []
        if x.type in CATALOG_TYPES:
            return [(WATCH_KEYS[shard_index(x.data["product_id"], WATCH_SHARDS)], x)]
        i = interest_of(x)
        if i is None:
            return []
        if i.kind == "erase":
            return [(k, i) for k in WATCH_KEYS]
        if tombs is not None:  # a customer erased before (tombstones at start): their older events are gone
            at = tombs.erased_at(x.customer_id)
            if at is not None and x.ts <= at:
                return []
        keys = {WATCH_KEYS[shard_index(p, WATCH_SHARDS)] for p in i.products}
        if len(keys) == 1:
            return [(keys.pop(), i)]
        return [(k, type(i)(i.kind, i.customer_id, tuple(p for p in i.products if WATCH_KEYS[
            shard_index(p, WATCH_SHARDS)] == k), i.ts)) for k in sorted(keys)]

    return route


class WatchLogic(StatefulBatchLogic):
    """Adapts a :class:`WatchShard`. Replay: its clock is the latest event time it saw; the end of
    input decides what is left. Live: the clock also runs on with the wall clock since the latest
    event (as a customer's does), capped by the input frontier when there is one."""

    def __init__(self, cfg: WatchConfig, live: bool, resume: Optional[bytes], recovery: bool = True,
                 watermarks: Optional[Watermarks] = None):
        self.cfg = cfg
        self.live = live
        self.recovery = recovery
        self.frontier = watermarks.here() if watermarks is not None else None
        self.wall_at_clock = time.time()
        if resume is not None:
            self.shard, silence = pickle.loads(resume)
            self.wall_at_clock += silence  # the time the engine was down is not event time
        else:
            self.shard = WatchShard()

    def _now(self) -> Optional[int]:
        clock = self.shard.clock
        if clock is None:
            return None
        if not self.live:
            return clock
        now = clock + int((time.time() - self.wall_at_clock) * 1000)
        if self.frontier is not None and self.frontier.value < now:
            now = self.frontier.value  # an input still behind it may bring an earlier view
        return now

    def on_batch(self, items: list) -> tuple[list, bool]:
        """Changes are decided as soon as the batch's items pass them (not at the batch's end: a
        batch can span hours, and later views of a product would push the views before its change
        out of the kept few)."""
        shard, cfg = self.shard, self.cfg
        before = shard.clock
        out: list = []
        due = shard.next_due(cfg)
        for item in items:
            if due is not None and item.ts >= due:
                now = item.ts if self.frontier is None else min(item.ts, self.frontier.value)
                if now >= due:
                    out += shard.advance(now, cfg)
                    due = shard.next_due(cfg)
            if type(item) is Event:
                shard.change(item, cfg)
                due = shard.next_due(cfg)
            else:
                shard.observe(item, cfg)
        if shard.clock != before:
            self.wall_at_clock = time.time()
        now = self._now()
        return out + (shard.advance(now, cfg) if now is not None else []), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list, bool]:
        now = self._now()
        return (self.shard.advance(now, self.cfg) if now is not None else []), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list, bool]:
        """The input is over: nothing earlier can come, every pending change is decided."""
        return self.shard.flush(self.cfg), StatefulBatchLogic.RETAIN

    def notify_at(self) -> Optional[datetime]:
        if not self.live:
            return None
        due = self.shard.next_due(self.cfg)
        if due is None:
            return None
        if self.frontier is not None and due - self.cfg.lateness > self.frontier.value:
            return datetime.now(timezone.utc) + POLL  # the frontier holds it: look again soon
        wall = self.wall_at_clock + (due - self.shard.clock) / 1000.0
        return datetime.fromtimestamp(max(0.0, min(wall, 253_402_214_400.0)), tz=timezone.utc)

    def snapshot(self) -> Optional[bytes]:
        if not self.recovery:
            return None
        silence = min(0.0, self.wall_at_clock - time.time())
        return pickle.dumps((self.shard, silence), protocol=pickle.HIGHEST_PROTOCOL)


def watch_candidates(events, cfg: WatchConfig, live: bool, recovery: bool, watermarks: Optional[Watermarks],
                     tombs: Optional[Tombstones]):
    """The decoded events -> the watch step's candidates (unkeyed)."""
    keyed = op.flat_map("key_watch", events, route_watch(tombs))
    decided = op.stateful_batch("watch", keyed, lambda r: WatchLogic(cfg, live, r, recovery, watermarks))
    return op.key_rm("watch_unkey", decided)
