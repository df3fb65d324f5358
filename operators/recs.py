"""Online item-to-item recommendations ("customers who bought this also bought"), pure core.

Where each piece lives in the dataflow (a DAG, state keyed):

* :class:`RecentItems` sits inside the customer state (``profile`` step, keyed by customer).
  ``observe(event_type, product_ids, session_key, ts)`` returns the co-occurrences of the session
  it closed as :class:`Block` s (a session of n products is one block, not n * n pairs); the flow
  routes each block to the ``product`` step's shards of its products.
* :class:`ProductNeighbours` is the state of the ``product`` step (keyed by product):
  ``observe_block(others, weight, ts)`` is O(len(others)) amortised; ``update(ts)`` returns a
  :class:`NeighbourUpdate` only when the product's neighbourhood changed materially (rule in
  :meth:`ProductNeighbours.update`).
  Updates are broadcast to every model shard and written to Redis (``crm:recs:{product_id}``).
* :class:`RecsTable` is read-only state in every ``models`` shard: ``apply(update)``, then
  ``recommend(items, exclude, k, ts)`` fills trigger payloads; ``top_k`` gives the Redis set.
* :class:`PopularityBaseline` (top sellers of the last 7 days) and :class:`RecsEvaluator`
  (hit rate@k, NDCG@k) serve the replay summary.

Similarity (``RecsConfig.normalisation``): cosine ``c(A,B) / sqrt(n(A) n(B))`` by default, so
best-sellers do not top every list. Measured on ``generate(5000, 60, 3)`` with
``models/recs_eval.py`` (hit rate@10, popularity 0.466): cosine 0.521, lift ``c/(n(A) n(B))``
0.065 (rare pairs seen once dominate), confidence ``c/n(A)`` 0.546 (higher, but lists lead with
best-sellers). Counts are time-decayed with forward decay (Cormode et al.
2009): a weight ``w`` seen at ``ts`` is stored as ``w * 2**((ts - ref) / half_life)``, so an
update touches one entry and ageing is a single multiplication at read time.
"""

from __future__ import annotations

import heapq
import math
from array import array
from operator import itemgetter
from sys import intern
from typing import Collection, Iterable, NamedTuple, Optional, Sequence

from operators.units import DAY, HOUR, MINUTE

_RENORM_EXP = 64.0  # half-lives between renormalisations (2**64 is far from float overflow)
_second = itemgetter(1)


def _top(k: int, pairs) -> list:
    """``heapq.nlargest(k, pairs, key=second)``, which is defined as this stable sort: for the few
    hundred pairs ranked here the C sort beats the heap, which runs in Python."""
    return sorted(pairs, key=_second, reverse=True)[:k]


class RecsConfig(NamedTuple):
    """Settings of the recommender (all durations in ms of event time)."""

    view_weight: float = 1.0  # co-view: both products viewed in one session
    cart_weight: float = 2.0  # co-cart: both added to the cart in one session
    purchase_weight: float = 3.0  # co-purchase: same order, or the same customer's orders within the window
    co_purchase_window: int = 30 * DAY
    session_gap: int = 30 * MINUTE  # a product event this long after the last one opens a new session
    half_life: int = 14 * DAY
    capacity: int = 64  # Space-Saving entries per product (neighbour candidates kept)
    neighbours: int = 32  # M: neighbours per product in an update (and in the table)
    rel_change: float = 0.1  # an update is material when weights moved by more than this share
    max_session_items: int = 12  # distinct products remembered per session and kind
    max_purchases: int = 20  # purchased products remembered per customer
    max_recent: int = 20  # recent products (interests) remembered per customer
    top_k: int = 20  # K: entries of crm:recs:{product_id}
    normalisation: str = "cosine"  # "cosine" | "lift" | "confidence" (c(A,B)/n(A))
    sequence_weight: float = 1.0  # next view: B first viewed right after A, on top of the co-view (A -> B only)
    recency: float = 0.5  # query weight of the r-th most recent product: recency ** r
    repeat_weight: float = 1.0  # next-product lists: a query product's own score (re-views), x its weight


DEFAULT = RecsConfig()


def _cfg_state(cfg: RecsConfig) -> Optional[tuple]:
    """A config as pickled state: ``None`` for the default (most states pickle it: one per customer)."""
    return None if cfg == DEFAULT else tuple(cfg)


def _cfg_from(state: Optional[tuple]) -> RecsConfig:
    """Inverse of :func:`_cfg_state`; an older, shorter tuple takes the defaults of newer fields."""
    return DEFAULT if state is None or state == tuple(DEFAULT) else RecsConfig(*state)


class Pair(NamedTuple):
    """One co-occurrence observation for ``product_id``'s key; ``other_id == product_id`` is a
    self-occurrence (the product's own popularity count n(A))."""

    product_id: str
    other_id: str
    weight: float
    ts: int


class Block(NamedTuple):
    """A closed session's co-occurrences, unexpanded: every product of ``products`` observed with
    every one of ``others``, in that order (itself among them: its self-occurrence), at ``weight``
    and ``ts``. :func:`expand` gives the pairs; each product sees the same sequence of pairs as a
    pairwise flush would give it, so counts and sketches come out the same. A session of n
    products is one block of 2n ids instead of n * n pairs: cheaper to build, to route and to
    pickle to the worker that holds a product. The flush emits plain tuples of this shape."""

    products: tuple[str, ...]
    others: tuple[str, ...]
    weight: float
    ts: int


def expand(blocks: Iterable[tuple]) -> list[tuple]:
    """The :class:`Pair` s (as plain tuples) of ``blocks``, product by product."""
    return [(a, b, w, ts) for products, others, w, ts in blocks for a in products for b in others]


class NeighbourUpdate(NamedTuple):
    """A product's decayed count n(A) and its top-M neighbours [(B, c(A,B))], valued at ``ts``."""

    product_id: str
    ts: int
    count: float
    neighbours: tuple[tuple[str, float], ...]


# --------------------------------------------------------------------------------------------
# Per customer
# --------------------------------------------------------------------------------------------


class RecentItems:
    """What one customer touched recently: the source of co-occurrence pairs and of interests.

    A session's pairs are released when the session closes (a new ``session_key``, an event
    more than ``session_gap`` after the last one, or :meth:`flush` from the session-end timer),
    not event by event: each product counts once per session and kind, so refreshes do not
    inflate counts, one pair message replaces many, and the model never learns a session
    before that session's own order has been scored (no self-leakage in the evaluation).

    Bounded: at most ``max_session_items`` viewed and carted products of the open session,
    ``max_purchases`` purchases and ``max_recent`` recent products.
    """

    __slots__ = ("cfg", "session", "last_ts", "views", "carts", "orders", "bought", "bought_ts", "recent",
                 "recent_ts")

    def __init__(self, config: RecsConfig = DEFAULT) -> None:
        self.cfg = config
        self.session: Optional[str] = None
        self.last_ts: Optional[int] = None  # last product event of the open session
        # (empty: the shared empty tuple, as most customers have no open session and bought nothing: an empty list
        # costs 72 bytes, an empty array 80)
        self.views: Sequence[str] = ()  # distinct products viewed in the open session, in first-view order
        self.carts: Sequence[str] = ()  # distinct products added to the cart in the open session
        self.orders: tuple[tuple[tuple[str, ...], int], ...] = ()  # orders of the open session (usually none)
        self.bought: Sequence[str] = ()  # products purchased, oldest first
        self.bought_ts: Sequence[int] = ()  # when (an array("q") once there is one, as recent_ts)
        self.recent: list[str] = []  # products by last touch, oldest first, distinct
        self.recent_ts = array("q")  # their last touch ts (packed: this is per customer)

    def __getstate__(self):  # (empties as lists and an array, as before: a packed record's deflate dictionary has them)
        return (_cfg_state(self.cfg), self.session, self.last_ts, self.views or [], self.carts or [], self.orders,
                self.bought or [], self.bought_ts or array("q"), self.recent, self.recent_ts)

    def __setstate__(self, s):
        (cfg, self.session, self.last_ts, views, carts, orders, bought, bought_ts, recent, recent_ts) = s
        self.cfg = _cfg_from(cfg)
        # product ids shared with every customer's (a snapshot has its own copies); arrays at their exact size
        # (unpickled, they keep spare room); empties shared
        self.views, self.carts = _interned(views), _interned(carts)
        self.bought, self.recent = _interned(bought), list(map(intern, recent))
        self.orders = tuple((tuple(map(intern, products)), t) for products, t in orders)
        self.bought_ts = array("q", bought_ts) if bought_ts else ()
        self.recent_ts = array("q", recent_ts)

    def observe(self, event_type: str, product_ids: Sequence[str], session_key: Optional[str],
                ts: int) -> list[Block]:
        """Record an event; return the blocks of a session that this event closed (else ``[]``).

        ``product_view``/``add_to_cart``: ``product_ids`` is the one product, ``session_key`` its
        ``session_id``. ``order_placed``: the order's product ids (``session_key`` ignored: the
        order joins the open session). Other event types are ignored.
        """
        cfg = self.cfg
        # one string object per product across all customers, not one per event that named it
        product_ids = [intern(p) for p in product_ids if type(p) is str]
        if event_type == "order_placed":
            out = self._close_if_idle(ts)
            products = tuple(dict.fromkeys(product_ids))
            if products:
                self.orders += ((products, ts),)
                if not self.bought:
                    self.bought, self.bought_ts = [], array("q")
                for a in products:
                    self.bought.append(a)
                    self.bought_ts.append(ts)
                    self._touch(a, ts)
                if len(self.bought) > cfg.max_purchases:
                    del self.bought[:-cfg.max_purchases]
                    del self.bought_ts[:-cfg.max_purchases]
                self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
            return out
        if event_type != "product_view" and event_type != "add_to_cart":
            return []
        if session_key != self.session:
            out = self.flush()
            self.session = session_key
        else:
            out = self._close_if_idle(ts)
        if event_type == "product_view":
            seen = self.views = self.views or []  # (after the flush: it empties them)
        else:
            seen = self.carts = self.carts or []
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        for a in product_ids:
            self._touch(a, ts)
            if a not in seen:
                seen.append(a)
                if len(seen) > cfg.max_session_items:
                    del seen[0]
        return out

    def observe_one(self, event_type: str, product_id: object, session_key: Optional[str], ts: int) -> list[Block]:
        """:meth:`observe` of a ``product_view`` or ``add_to_cart`` naming ``product_id`` (touched
        only if a str): the same state and blocks, without the sequence (one event in two)."""
        if session_key != self.session:
            out = self.flush()
            self.session = session_key
        elif self.last_ts is not None and ts - self.last_ts > self.cfg.session_gap:
            out = self.flush()
        else:
            out = []
        if event_type == "product_view":
            seen = self.views = self.views or []  # (after the flush: it empties them)
        else:
            seen = self.carts = self.carts or []
        last = self.last_ts
        self.last_ts = ts if last is None or ts > last else last
        if type(product_id) is str:
            a = intern(product_id)
            recent = self.recent
            if recent and recent[-1] is a:  # touched again: only its time moves (as _touch does it)
                self.recent_ts[-1] = ts
            else:
                self._touch(a, ts)
            if a not in seen:
                seen.append(a)
                if len(seen) > self.cfg.max_session_items:
                    del seen[0]
        return out

    def _close_if_idle(self, ts: int) -> list[Block]:
        if self.last_ts is not None and ts - self.last_ts > self.cfg.session_gap:
            return self.flush()
        return []

    def flush(self) -> list[Block]:
        """Close the open session: its co-occurrences as blocks (every pair of products viewed
        together, and carted together, in both directions plus one self pair per product and
        kind; each viewed product with the next one viewed; an order's products with each other
        and with the customer's purchases of the window before it). Call it from the session-end
        timer."""
        ts = self.last_ts
        if ts is None:
            return []
        cfg = self.cfg
        out: list[Block] = []
        for items, w in ((self.views, cfg.view_weight), (self.carts, cfg.cart_weight)):
            if items:
                group = tuple(items)
                out.append((group, group, w, ts))
        out += self._next_views(ts)
        w = cfg.purchase_weight
        for products, t in self.orders:
            since = t - cfg.co_purchase_window
            earlier = tuple(dict.fromkeys(p for p, tb in zip(self.bought, self.bought_ts)
                                          if since <= tb < t and p not in products))
            # an order's product: itself, the order's others, the earlier purchases; an earlier
            # purchase: the order's products (it is not counted again for itself)
            out.append((products, products + earlier, w, t))
            if earlier:
                out.append((earlier, products, w, t))
        self.views = ()
        self.carts = ()
        self.orders = ()
        self.last_ts = None
        return out

    def _next_views(self, ts: int) -> list[Block]:
        """Sequential co-occurrence: each viewed product with the one first viewed right after it
        (what is clicked next, as sequential rules count it; Ludewig et al. 2021), and with itself,
        so that n(A) >= c(A, B) still holds. One small block per product of the session."""
        w = self.cfg.sequence_weight
        views = self.views
        if not w or not views:
            return []
        out = [((a,), (a, b), w, ts) for a, b in zip(views, views[1:])]
        out.append(((views[-1],), (views[-1],), w, ts))
        return out

    def _touch(self, product: str, ts: int) -> None:
        recent, stamps = self.recent, self.recent_ts
        try:
            i = recent.index(product)
        except ValueError:
            pass
        else:
            del recent[i]
            del stamps[i]
        recent.append(product)
        stamps.append(ts)
        if len(recent) > self.cfg.max_recent:
            del recent[0]
            del stamps[0]

    def interests(self, now: int, k: int = 10, max_age: int = 30 * DAY) -> list[str]:
        """Up to ``k`` products this customer touched within ``max_age``, most recent first."""
        since = now - max_age
        out = []
        recent, stamps = self.recent, self.recent_ts
        for i in range(len(recent) - 1, -1, -1):
            if stamps[i] < since or len(out) >= k:
                break
            out.append(recent[i])
        return out

    def last_touched(self) -> dict[str, int]:
        """Product -> its last touch ts."""
        return dict(zip(self.recent, self.recent_ts))

    def recently_bought(self, now: int, window: int = 30 * DAY) -> set[str]:
        """Products bought within ``window`` before ``now`` (never recommended)."""
        since = now - window
        return {p for p, t in zip(self.bought, self.bought_ts) if t >= since}


def _interned(ids: Sequence[str]) -> Sequence[str]:
    return list(map(intern, ids)) if ids else ()


# --------------------------------------------------------------------------------------------
# Heavy hitters with decay
# --------------------------------------------------------------------------------------------


class SpaceSaving:
    """Heavy-hitters sketch (Metwally et al. 2005) with exponentially time-decayed weights.

    At most ``capacity`` entries. A new item on a full sketch replaces light ones and inherits
    ``floor`` (an upper bound of the weight of any item not tracked) as its count and its error,
    so counts never under-count, ``count - error`` never over-counts, and an item whose decayed
    weight exceeds ``total / (capacity * 3 / 4)`` is always tracked. :meth:`top` ranks by the
    guaranteed weight ``count - error``, so a light newcomer never outranks a proven heavy item. Eviction is batched: the lightest quarter goes in one sort, so an offer
    costs O(1) amortised (O(log capacity) on eviction rounds) instead of a min-scan each time.

    Values are stored relative to ``ref`` (forward decay): an offer touches one entry; decay
    applies at read time, and everything is rescaled once every 64 half-lives.
    """

    __slots__ = ("capacity", "half_life", "ref", "counts", "errors", "floor")

    def __init__(self, capacity: int = 64, half_life: int = 14 * DAY) -> None:
        if capacity < 4:
            raise ValueError("capacity must be at least 4")
        self.capacity = capacity
        self.half_life = half_life
        self.ref: Optional[int] = None  # reference time of the stored values
        self.counts: dict[str, float] = {}  # item -> weight scaled to ref (an over-estimate)
        self.errors: dict[str, float] = {}  # item -> over-estimate inherited on entry (when > 0)
        self.floor = 0.0  # scaled: no untracked item weighs more

    def __getstate__(self):
        return (self.capacity, self.half_life, self.ref, self.counts, self.errors, self.floor)

    def __setstate__(self, s):
        self.capacity, self.half_life, self.ref, self.counts, self.errors, self.floor = s

    def __len__(self) -> int:
        return len(self.counts)

    def scale(self, ts: int) -> float:
        """Factor that turns a weight at ``ts`` into stored units (rescales when it grows)."""
        ref = self.ref
        if ref is None:
            self.ref = ts
            return 1.0
        e = (ts - ref) / self.half_life
        if e > _RENORM_EXP:
            self.rescale(ts)
            return 1.0
        return 2.0 ** e

    def rescale(self, ts: int) -> None:
        f = 2.0 ** (-(ts - self.ref) / self.half_life)
        counts = self.counts
        for k in counts:
            counts[k] *= f
        errors = self.errors
        for k in errors:
            errors[k] *= f
        self.floor *= f
        self.ref = ts

    def offer(self, item: str, weight: float, ts: int) -> None:
        self.add_scaled(item, weight * self.scale(ts))

    def add_scaled(self, item: str, sw: float) -> float:
        """Add a weight already in stored units; returns the item's guaranteed stored weight."""
        counts = self.counts
        c = counts.get(item)
        if c is None:
            if len(counts) >= self.capacity:
                self._evict()
            c = self.floor
            if c:
                self.errors[item] = c
            counts[item] = c + sw
            return sw
        c += sw
        counts[item] = c
        return c - self.errors.get(item, 0.0)

    def _evict(self) -> None:
        counts = self.counts
        drop = sorted(counts.items(), key=_second)[: max(1, self.capacity // 4)]
        errors = self.errors
        for k, _v in drop:
            del counts[k]
            errors.pop(k, None)
        self.floor = max(self.floor, drop[-1][1])

    def value(self, item: str, ts: int) -> float:
        """Decayed weight of ``item`` at ``ts`` (an upper bound; 0 when untracked)."""
        c = self.counts.get(item)
        if c is None or self.ref is None:
            return 0.0
        return c * 2.0 ** (-(ts - self.ref) / self.half_life)

    def ranked(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` items of largest guaranteed weight ``count - error``, in stored units."""
        errors = self.errors
        if not errors:
            return _top(k, self.counts.items())
        get = errors.get
        return _top(k, [(i, c - get(i, 0.0)) for i, c in self.counts.items()])

    def top(self, k: int, ts: int) -> list[tuple[str, float]]:
        """The ``k`` heaviest items with their guaranteed decayed weights at ``ts``."""
        if self.ref is None:
            return []
        f = 2.0 ** (-(ts - self.ref) / self.half_life)
        return [(item, c * f) for item, c in self.ranked(k)]


# --------------------------------------------------------------------------------------------
# Per product
# --------------------------------------------------------------------------------------------


class ProductNeighbours:
    """State of one product key: its decayed occurrence count n(A) and neighbour sketch c(A, .).

    Material-change rule (what :meth:`update` publishes): nothing is published while no pair
    arrived since the last publication. Otherwise an update goes out when

    1. nothing was published yet, or
    2. the published top-M set changed materially: a neighbour outside it now outweighs both
       the lightest one inside and ``rel_change`` x n(A) at the last publication (tracked in
       :meth:`observe` in O(1); decay is uniform, so ageing alone never reorders), or
    3. weights moved: the weight n(A) received since the last publication exceeds ``rel_change``
       of n(A) then (both decayed to now). Every c(A,B) grows at most as fast as n(A), so no
       neighbour weight moves by more than ``rel_change`` of the product's mass without this.

    ``update`` is O(1) when nothing is due and O(capacity) when it publishes.
    """

    __slots__ = ("product_id", "cfg", "sketch", "n", "n_pub", "pub", "pub_min", "dirty", "changed")

    def __init__(self, product_id: str, config: RecsConfig = DEFAULT) -> None:
        self.product_id = product_id
        self.cfg = config
        self.sketch = SpaceSaving(config.capacity, config.half_life)
        self.n = 0.0  # n(A), stored units of sketch.ref
        self.n_pub = 0.0  # n(A) at the last publication, stored units
        self.pub: frozenset = frozenset()  # published neighbour ids
        self.pub_min = 0.0  # lightest published weight, stored units
        self.dirty = False  # a pair arrived since the last publication
        self.changed = False  # the published set is no longer the top-M

    def __getstate__(self):
        return (self.product_id, _cfg_state(self.cfg), self.sketch, self.n, self.n_pub, tuple(self.pub),
                self.pub_min, self.dirty, self.changed)

    def __setstate__(self, s):
        (self.product_id, cfg, self.sketch, self.n, self.n_pub, pub, self.pub_min, self.dirty,
         self.changed) = s
        self.cfg = _cfg_from(cfg)
        self.pub = frozenset(pub)

    def observe(self, pair: Pair) -> None:
        """One pair (a :class:`Pair` or a plain 4-tuple) for this product."""
        self.observe_block((pair[1],), pair[2], pair[3])

    def observe_block(self, others: Sequence[str], weight: float, ts: int) -> None:
        """This product's pairs of a :class:`Block`: the same as observing ``(self, other, weight,
        ts)`` for each of ``others`` in order (the decay factor at ``ts`` is the same for all)."""
        sketch = self.sketch
        ref = sketch.ref
        f = sketch.scale(ts)
        if ref is not None and sketch.ref != ref:  # rescaled: bring our own stored values along
            g = 2.0 ** (-(sketch.ref - ref) / sketch.half_life)
            self.n *= g
            self.n_pub *= g
            self.pub_min *= g
        sw = weight * f
        self.dirty = True
        me = self.product_id
        counts, errors = sketch.counts, sketch.errors
        for other in others:
            if other == me:
                self.n += sw
                continue
            c = counts.get(other)  # (SpaceSaving.add_scaled, inline for a tracked item: the usual case)
            if c is None:
                c = sketch.add_scaled(other, sw)
            else:
                c += sw
                counts[other] = c
                if errors:
                    c -= errors.get(other, 0.0)
            if not self.changed and c > self.pub_min and other not in self.pub:
                self.changed = True

    def count(self, ts: int) -> float:
        """n(A) decayed to ``ts``."""
        ref = self.sketch.ref
        return 0.0 if ref is None else self.n * 2.0 ** (-(ts - ref) / self.cfg.half_life)

    def update(self, ts: int) -> Optional[NeighbourUpdate]:
        """A :class:`NeighbourUpdate` when the neighbourhood changed materially, else ``None``."""
        if not self.dirty:
            return None
        first = self.n_pub == 0.0 and not self.pub
        if not (first or self.changed or self.n - self.n_pub > self.cfg.rel_change * self.n_pub):
            return None
        sketch = self.sketch
        m = self.cfg.neighbours
        best = sketch.ranked(m)
        self.pub = frozenset([b for b, _c in best])
        # below M neighbours any newcomer changes the set
        floor = self.cfg.rel_change * self.n
        self.pub_min = max(best[-1][1], floor) if len(best) >= m else floor
        self.n_pub = self.n
        self.dirty = self.changed = False
        f = 2.0 ** (-(ts - sketch.ref) / sketch.half_life) if sketch.ref is not None else 1.0
        return NeighbourUpdate(self.product_id, ts, self.n * f, tuple([(b, c * f) for b, c in best]))


def observe_blocks(products: dict[str, ProductNeighbours], blocks: Iterable[tuple], cfg: RecsConfig,
                   touched: dict[str, int]) -> None:
    """The product step: each block's pairs to the state of each of its ``products`` (made on
    first sight); ``touched`` gets every product observed, with its latest block ``ts``."""
    for mine, others, weight, ts in blocks:
        for a in mine:
            state = products.get(a)
            if state is None:
                state = products[a] = ProductNeighbours(a, cfg)
            state.observe_block(others, weight, ts)
            if ts > touched.get(a, 0):
                touched[a] = ts


# --------------------------------------------------------------------------------------------
# Per model shard
# --------------------------------------------------------------------------------------------


class RecsTable:
    """The latest neighbour list of every product, normalised, for scoring in the models step.

    ``apply`` is O(1): it records n(A) and keeps the raw list. A list is normalised, O(M), the
    first time something reads it (``recommend``, ``top_k``), with the neighbours' counts known
    then. Every shard receives every update but reads only the products its own customers touch,
    so normalising on first use spares each shard the lists it never reads (with two workers that
    halved the cost of the broadcast). ``recommend`` is O(len(items) * M + k log). Memory: one
    entry per product with an update, M (id, score) pairs each.
    """

    __slots__ = ("cfg", "counts", "sims", "raw", "max_age")

    def __init__(self, config: RecsConfig = DEFAULT, max_age: Optional[int] = None) -> None:
        self.cfg = config
        self.counts: dict[str, tuple[float, int]] = {}  # product -> (n at ts, ts)
        self.sims: dict[str, tuple[int, list[tuple[str, float]]]] = {}  # product -> (ts, [(B, score)] desc)
        self.raw: dict[str, NeighbourUpdate] = {}  # product -> latest update, not normalised yet
        # neighbour lists not refreshed for this long are ignored (stale products)
        self.max_age = max_age if max_age is not None else 8 * config.half_life

    def __getstate__(self):
        return (_cfg_state(self.cfg), self.counts, self.sims, self.max_age, self.raw)

    def __setstate__(self, s):
        cfg, self.counts, self.sims, self.max_age = s[:4]
        self.raw = s[4] if len(s) > 4 else {}
        self.cfg = _cfg_from(cfg)

    def __len__(self) -> int:
        return len(self.sims.keys() | self.raw.keys())

    def _count_at(self, product: str, ts: int) -> Optional[float]:
        nt = self.counts.get(product)
        if nt is None:
            return None
        return nt[0] * 2.0 ** (-(ts - nt[1]) / self.cfg.half_life)

    def apply(self, update: NeighbourUpdate) -> None:
        self.counts[update.product_id] = (update.count, update.ts)
        if update.count > 0.0:  # an empty product keeps the list it had
            self.raw[update.product_id] = update

    def _entry(self, a: str) -> Optional[tuple[int, list[tuple[str, float]]]]:
        """A's normalised list, normalising the pending update first."""
        update = self.raw.pop(a, None)
        if update is None:
            return self.sims.get(a)
        ts, n_a = update.ts, update.count
        norm = self.cfg.normalisation
        scored = []
        counts, half_life = self.counts, self.cfg.half_life
        for b, c in update.neighbours:
            nt = counts.get(b)  # (_count_at, inline: once per neighbour)
            n_b = None if nt is None else nt[0] * 2.0 ** (-(ts - nt[1]) / half_life)
            if n_b is None or n_b < c:
                n_b = c  # not seen yet (or stale): c(A,B) <= n(B) holds by construction
            if n_b <= 0.0:
                continue
            if norm == "cosine":
                s = c / math.sqrt(n_a * n_b)
            elif norm == "lift":
                s = c / (n_a * n_b)
            elif norm == "confidence":
                s = c / n_a
            else:
                raise ValueError(f"unknown normalisation {norm!r}")
            scored.append((b, s))
        scored.sort(key=_second, reverse=True)
        entry = self.sims[a] = (ts, scored)
        return entry

    def neighbours(self, product_id: str) -> list[tuple[str, float]]:
        entry = self._entry(product_id)
        return entry[1] if entry else []

    def top_k(self, product_id: str, k: Optional[int] = None) -> list[tuple[str, float]]:
        """Top ``k`` (default K) neighbours with normalised scores: the ``crm:recs:{id}`` set."""
        return self.neighbours(product_id)[: self.cfg.top_k if k is None else k]

    def recommend(self, items: Sequence[str], exclude: Collection[str] = (), k: int = 5,
                  ts: Optional[int] = None, weights: Optional[Sequence[float]] = None,
                  repeat: float = 0.0) -> list[str]:
        """Products that go with ``items``: normalised similarity summed over the query items
        (optionally weighted; a query item of weight w < 1 adds only its best w x M neighbours),
        never one of ``exclude``. ``repeat == 0``: never one of ``items``
        either ("goes with"); ``repeat > 0``: each query item also scores ``repeat`` x its weight
        for itself (next-product lists, where a re-view is a hit). ``[]`` while cold."""
        scores: dict[str, float] = {}
        get = scores.get
        sims, raw = self.sims, self.raw
        since = None if ts is None else ts - self.max_age
        for i, a in enumerate(items):
            entry = self._entry(a) if a in raw else sims.get(a)
            if entry is None or (since is not None and entry[0] < since):
                continue
            if weights is None:  # (every query but the profile's: w = 1, and 1.0 * s is s)
                if not scores:  # 0.0 + s is s (scores are >= +0.0): the first list as it is
                    scores.update(entry[1])
                else:
                    for b, s in entry[1]:
                        scores[b] = get(b, 0.0) + s
                continue
            w = weights[i]
            # a product weighing w < 1 brings its best w x M neighbours (at least 4): the query costs
            # about 2M updates instead of len(items) x M (4x faster at 10 items, HR@20 -0.002 measured)
            neighbours = entry[1] if w >= 1.0 else entry[1][:max(4, int(len(entry[1]) * w + 0.5))]
            for b, s in neighbours:
                scores[b] = get(b, 0.0) + w * s
        if repeat:
            for i, a in enumerate(items):
                scores[a] = get(a, 0.0) + repeat * (1.0 if weights is None else weights[i])
        else:
            for a in items:
                scores.pop(a, None)
        for a in exclude:
            scores.pop(a, None)
        if not scores:
            return []
        return sorted(scores, key=scores.__getitem__, reverse=True)[:k]  # (_top's stable order, by key)


def recency_weights(n: int, recency: float) -> list[float]:
    """Query weights of ``n`` products, most recent first: ``recency ** r`` for the r-th (r = 0
    for the latest). V-SKNN weights a session's items by position the same way, linearly
    (Ludewig et al. 2021); a geometric decay let the latest product lead more on the data here."""
    return [recency ** r for r in range(n)]


def _insert_ranked(ranked: list, p: str, totals: dict) -> None:
    """Insert ``p`` into ``ranked`` (descending by ``(totals[q], q)``, no ties) at its place."""
    key = (totals[p], p)
    lo, hi = 0, len(ranked)
    while lo < hi:
        mid = (lo + hi) // 2
        q = ranked[mid]
        if (totals[q], q) > key:
            lo = mid + 1
        else:
            hi = mid
    ranked.insert(lo, p)


class PopularityBaseline:
    """Top sellers of the last ``window`` of event time (orders containing the product),
    in ``bucket``-sized steps. Memory: one counter per sold product plus one per bucket."""

    __slots__ = ("window", "bucket", "buckets", "totals", "_cache", "_size")

    def __init__(self, window: int = 7 * DAY, bucket: int = HOUR) -> None:
        self.window = window
        self.bucket = bucket
        self.buckets: list[tuple[int, dict[str, int]]] = []  # (bucket index, counts), oldest first
        self.totals: dict[str, int] = {}
        self._cache: Optional[list[str]] = None  # the top ``_size`` products, best first
        self._size = 0

    def __getstate__(self):
        return (self.window, self.bucket, self.buckets, self.totals)

    def __setstate__(self, s):
        self.window, self.bucket, self.buckets, self.totals = s
        self._cache, self._size = None, 0

    def _expire(self, ts: int) -> None:
        oldest = (ts - self.window) // self.bucket
        buckets, totals = self.buckets, self.totals
        while buckets and buckets[0][0] <= oldest:
            for p, c in buckets.pop(0)[1].items():
                left = totals[p] - c
                if left:
                    totals[p] = left
                else:
                    del totals[p]
            self._cache = None

    def observe(self, product_ids: Iterable[str], ts: int) -> None:
        self._expire(ts)
        b = ts // self.bucket
        if not self.buckets or self.buckets[-1][0] < b:
            self.buckets.append((b, {}))
        counts = self.buckets[-1][1]  # a late order counts in the newest bucket
        totals = self.totals
        cache = self._cache
        gained = list(dict.fromkeys(product_ids))
        for p in gained:
            counts[p] = counts.get(p, 0) + 1
            totals[p] = totals.get(p, 0) + 1
        if cache is not None:
            # Only these products gained, so the new top-N is within the old top-N and them: the
            # ranking stays exact without a pass over every product (one per order, otherwise).
            # The order (total, id), descending, is strict: each gainer moves to its place, the
            # others keep theirs (the same list as sorting them all again).
            for p in gained:
                if p in cache:
                    cache.remove(p)
            for p in gained:  # (into a list in order again: every gainer out first)
                _insert_ranked(cache, p, totals)
            del cache[self._size:]

    def recommend(self, exclude: Collection[str] = (), k: int = 5, ts: Optional[int] = None) -> list[str]:
        if ts is not None:
            self._expire(ts)
        if self._cache is None or self._size < k + 64:
            self._size = k + 64
            self._cache = [p for p, _c in heapq.nlargest(self._size, self.totals.items(), key=lambda pc: (pc[1], pc[0]))]
        out = [p for p in self._cache if p not in exclude][:k]
        if len(out) < k and len(self._cache) < len(self.totals):
            self._cache = None  # too much excluded: recompute with room to spare
            ranked = heapq.nlargest(k + len(exclude), self.totals.items(), key=lambda pc: (pc[1], pc[0]))
            out = [p for p, _c in ranked if p not in exclude][:k]
        return out


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


class RecsEvaluator:
    """Hit rate@k and NDCG@k of recommendation lists against what was then bought.

    Hit: at least one bought product among the first ``k``. NDCG: binary relevance,
    DCG = sum 1/log2(rank + 1) over hits, normalised by the best possible DCG for
    min(len(bought), k) relevant items. Mergeable across shards with :meth:`merge`.
    """

    __slots__ = ("k", "orders", "hits", "ndcg_sum", "skipped")

    def __init__(self, k: int = 10) -> None:
        self.k = k
        self.orders = 0
        self.hits = 0
        self.ndcg_sum = 0.0
        self.skipped = 0  # orders with nothing to recommend from (no previous items)

    def __getstate__(self):
        return (self.k, self.orders, self.hits, self.ndcg_sum, self.skipped)

    def __setstate__(self, s):
        self.k, self.orders, self.hits, self.ndcg_sum, self.skipped = s

    def add(self, recommended: Sequence[str], bought: Collection[str]) -> None:
        if not bought:
            return
        bought = set(bought)
        dcg = 0.0
        for rank, p in enumerate(recommended[: self.k]):
            if p in bought:
                dcg += 1.0 / math.log2(rank + 2)
        ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(bought), self.k)))
        self.orders += 1
        self.hits += dcg > 0.0
        self.ndcg_sum += dcg / ideal

    def skip(self) -> None:
        self.skipped += 1

    def merge(self, other: "RecsEvaluator") -> None:
        self.orders += other.orders
        self.hits += other.hits
        self.ndcg_sum += other.ndcg_sum
        self.skipped += other.skipped

    @property
    def hit_rate(self) -> float:
        return self.hits / self.orders if self.orders else 0.0

    @property
    def ndcg(self) -> float:
        return self.ndcg_sum / self.orders if self.orders else 0.0

    def result(self) -> dict:
        return {f"hit_rate_at_{self.k}": round(self.hit_rate, 4), f"ndcg_at_{self.k}": round(self.ndcg, 4),
                "orders": self.orders, "skipped": self.skipped}
