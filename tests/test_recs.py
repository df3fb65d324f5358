"""Item-to-item recommendations: sketch, decay, pairs, material updates, table, evaluator."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from flows.dataflow import PRODUCT_SHARDS, bundle_pairs, product_shard
from operators.recs import (DAY, DEFAULT, NeighbourUpdate, Pair, PopularityBaseline, ProductNeighbours,
                            RecentItems, RecsConfig, RecsEvaluator, RecsTable, SpaceSaving, expand)
from operators.messages import PairMsg

T0 = 1_767_607_200_000  # 2026-01-05T10:00Z
MIN = 60_000
HL = DEFAULT.half_life


def route(pairs, products, table, cfg=DEFAULT, ts=None):
    """The product step and the broadcast, in one process."""
    touched = {}
    for pair in map(Pair._make, pairs):  # the flush emits plain tuples
        state = products.get(pair.product_id)
        if state is None:
            state = products[pair.product_id] = ProductNeighbours(pair.product_id, cfg)
        state.observe(pair)
        touched[pair.product_id] = state
    for state in touched.values():
        upd = state.update(ts if ts is not None else pairs[-1][3])
        if upd is not None:
            table.apply(upd)


def session(cust: RecentItems, sid: str, ts: int, views=(), carts=(), order=None) -> list[Pair]:
    """The pairs of the sessions these events closed."""
    out = []
    for i, p in enumerate(views):
        out += cust.observe("product_view", [p], sid, ts + i * MIN)
    for i, p in enumerate(carts):
        out += cust.observe("add_to_cart", [p], sid, ts + (len(views) + i) * MIN)
    if order:
        out += cust.observe("order_placed", order, None, ts + 30 * MIN)
    return expand(out)


# ------------------------------------------------------------------ sketch


def test_sketch_is_bounded():
    s = SpaceSaving(capacity=32, half_life=HL)
    for i in range(5000):
        s.offer(f"p{i}", 1.0, T0 + i)
        assert len(s) <= 32
    assert len(s.top(100, T0 + 5000)) <= 32


def test_heavy_items_survive_a_long_tail_of_light_ones():
    s = SpaceSaving(capacity=32, half_life=100 * HL)  # ~no decay over the 6 h of the stream
    heavy = ["h0", "h1", "h2", "h3"]
    for i in range(20_000):  # 20,000 distinct light items, 10,000 offers of 4 heavy ones
        ts = T0 + i * 1000
        s.offer(f"light{i}", 1.0, ts)
        if i % 2 == 0:
            s.offer(heavy[(i // 2) % 4], 1.0, ts)
    end = T0 + 20_000_000
    top = s.top(4, end)
    assert sorted(p for p, _w in top) == heavy
    # count over-estimates, count - error under-estimates: 2,500 offers each
    assert all(w <= 2500 * 1.001 for _p, w in top) and all(w > 1000 for _p, w in top)
    assert all(s.value(h, end) >= 2500 * 0.99 for h in heavy)


def test_decay_halves_a_weight_after_one_half_life():
    s = SpaceSaving(capacity=8, half_life=HL)
    s.offer("a", 4.0, T0)
    assert s.value("a", T0) == pytest.approx(4.0)
    assert s.value("a", T0 + HL) == pytest.approx(2.0)
    assert s.value("a", T0 + 3 * HL) == pytest.approx(0.5)
    s.offer("a", 1.0, T0 + HL)  # adds at full weight at its own time
    assert s.value("a", T0 + HL) == pytest.approx(3.0)


def test_renormalisation_keeps_values():
    s = SpaceSaving(capacity=8, half_life=DAY)
    s.offer("a", 1.0, T0)
    far = T0 + 100 * DAY  # beyond the renormalisation horizon: stored values are rescaled
    s.offer("b", 1.0, far)
    assert s.ref == far
    assert s.value("b", far) == pytest.approx(1.0)
    assert s.value("a", far) == pytest.approx(2.0 ** -100)
    assert max(s.counts.values()) < 2.0


# ------------------------------------------------------------------ pairs


def test_pairs_of_a_session_come_when_it_closes():
    cust = RecentItems()
    assert session(cust, "s1", T0, views=["a", "b"], carts=["a", "b"]) == []  # open session: nothing yet
    pairs = expand(cust.observe("product_view", ["x"], "s2", T0 + 2 * 60 * MIN))  # next session closes s1
    got = sorted(Pair(*p)[:3] for p in pairs)
    assert got == sorted([("a", "a", 1.0), ("b", "b", 1.0), ("a", "b", 1.0), ("b", "a", 1.0),  # co-views
                          ("a", "a", 2.0), ("b", "b", 2.0), ("a", "b", 2.0), ("b", "a", 2.0),  # co-cart
                          ("a", "a", 1.0), ("a", "b", 1.0), ("b", "b", 1.0)])  # b viewed next after a
    # a refreshed page counts once per session (a co-view of itself, and the session's last view)
    cust.observe("product_view", ["x"], "s2", T0 + 2 * 60 * MIN + 1)
    assert [Pair(*p)[:2] for p in expand(cust.flush())] == [("x", "x"), ("x", "x")]
    assert cust.flush() == []


def test_order_pairs_with_earlier_orders_within_the_window():
    cust = RecentItems()
    session(cust, "s1", T0, order=["a"])
    session(cust, "s2", T0 + 40 * DAY, order=["b"])  # > 30 days later: no co-purchase with a
    session(cust, "s3", T0 + 50 * DAY, order=["c", "d"])
    pairs = expand(cust.flush())
    got = {p[:2] for p in map(Pair._make, pairs) if p.weight == DEFAULT.purchase_weight}
    assert got == {("c", "c"), ("d", "d"), ("c", "d"), ("d", "c"), ("c", "b"), ("b", "c"), ("d", "b"), ("b", "d")}
    assert cust.recently_bought(T0 + 50 * DAY) == {"b", "c", "d"}
    assert cust.interests(T0 + 50 * DAY, 2) == ["d", "c"]


def test_idle_gap_closes_a_session_with_the_same_key():
    cust = RecentItems()
    session(cust, "s1", T0, views=["a", "b"])
    assert cust.observe("product_view", ["c"], "s1", T0 + 5 * 60 * MIN) != []


def test_recent_items_are_bounded():
    cfg = RecsConfig(max_session_items=5, max_recent=7, max_purchases=4)
    cust = RecentItems(cfg)
    for i in range(50):
        cust.observe("product_view", [f"p{i}"], "s1", T0 + i)
        cust.observe("order_placed", [f"q{i}"], None, T0 + i)
    assert len(cust.views) <= 5 and len(cust.recent) <= 7 and len(cust.bought) <= 4


# ------------------------------------------------------------------ material changes


def test_material_change_rule():
    cfg = RecsConfig(neighbours=2, rel_change=0.2)
    a = ProductNeighbours("a", cfg)
    a.observe(Pair("a", "a", 10.0, T0))
    a.observe(Pair("a", "b", 5.0, T0))
    a.observe(Pair("a", "c", 4.0, T0))
    first = a.update(T0)
    assert first is not None and first.count == pytest.approx(10.0)
    assert [b for b, _c in first.neighbours] == ["b", "c"]
    assert a.update(T0) is None  # nothing new
    a.observe(Pair("a", "a", 1.0, T0 + 1))  # n moves by 10% < 20%
    a.observe(Pair("a", "b", 1.0, T0 + 1))
    assert a.update(T0 + 1) is None
    a.observe(Pair("a", "a", 1.5, T0 + 2))  # n has now moved by 25%
    upd = a.update(T0 + 2)
    assert upd is not None and upd.count == pytest.approx(12.5)
    # a newcomer outweighing the lightest published neighbour changes the set
    a.observe(Pair("a", "d", 4.5, T0 + 3))
    upd = a.update(T0 + 3)
    assert upd is not None and [b for b, _c in upd.neighbours] == ["b", "d"]
    # decay alone changes nothing
    assert a.update(T0 + 10 * HL) is None


# ------------------------------------------------------------------ table


def toy_world(norm: str = "cosine"):
    """A best-seller S viewed in every session; a phone P with its case C in a few."""
    cfg = DEFAULT._replace(normalisation=norm)
    products, table = {}, RecsTable(cfg)
    t = T0
    for i in range(100):
        cust = RecentItems(cfg)
        route(session(cust, "s", t, views=["S", f"filler{i}"]) + expand(cust.flush()), products, table, cfg)
        t += MIN
    for i in range(12):
        cust = RecentItems(cfg)
        route(session(cust, "s", t, views=["P", "S"]) + expand(cust.flush()), products, table, cfg)
        t += MIN
    for i in range(8):
        cust = RecentItems(cfg)
        route(session(cust, "s", t, views=["P", "C"]) + expand(cust.flush()), products, table, cfg)
        t += MIN
    for state in products.values():  # publish everything pending
        state.changed = True
        upd = state.update(t)
        if upd:
            table.apply(upd)
    return table, t


def test_cosine_ranks_a_complement_above_a_mere_best_seller():
    table, t = toy_world("cosine")
    assert table.recommend(["P"], (), 2, t) == ["C", "S"]
    top = table.top_k("P")
    assert top[0][0] == "C" and 0 < top[1][1] < top[0][1] <= 1.0
    raw, t = toy_world("confidence")  # raw co-counts put the best-seller first
    assert raw.recommend(["P"], (), 2, t) == ["S", "C"]


def test_exclusions_cart_and_recently_bought_are_never_recommended():
    table = RecsTable()
    table.apply(NeighbourUpdate("a", T0, 10.0, (("b", 5.0), ("c", 4.0), ("d", 3.0), ("e", 2.0))))
    for p in "bcde":
        table.apply(NeighbourUpdate(p, T0, 10.0, (("a", 2.0),)))
    cart = ["a", "b"]
    cust = RecentItems()
    cust.observe("order_placed", ["c"], None, T0 - 5 * DAY)
    recs = table.recommend(cart, cust.recently_bought(T0), 5, T0)
    assert recs == ["d", "e"]
    assert not set(recs) & (set(cart) | {"c"})
    assert RecsTable().recommend(cart, (), 5, T0) == []  # cold: empty is valid
    # stale neighbour lists are ignored
    assert table.recommend(cart, (), 5, T0 + table.max_age + 1) == []


def test_popularity_is_the_last_seven_days():
    pop = PopularityBaseline()
    pop.observe(["old"] * 1, T0)
    pop.observe(["old"], T0 + 1)
    pop.observe(["old"], T0 + 2)
    pop.observe(["new"], T0 + 6 * DAY)
    assert pop.recommend((), 2, T0 + 6 * DAY) == ["old", "new"]
    assert pop.recommend((), 2, T0 + 8 * DAY) == ["new"]
    assert pop.recommend({"new"}, 2, T0 + 8 * DAY) == []


# ------------------------------------------------------------------ state


def test_pickle_round_trips():
    cust = RecentItems()
    session(cust, "s1", T0, views=["a", "b"], carts=["a"], order=["a"])
    products, table = {}, RecsTable()
    route(expand(cust.flush()), products, table)
    pop = PopularityBaseline()
    pop.observe(["a"], T0)
    ev = RecsEvaluator()
    ev.add(["a"], {"a"})
    for obj in (cust, products["a"], products["a"].sketch, table, pop, ev):
        back = pickle.loads(pickle.dumps(obj))
        assert pickle.dumps(back) == pickle.dumps(obj)
    back = pickle.loads(pickle.dumps(cust))
    back.observe("product_view", ["c"], "s2", T0 + DAY)
    assert back.interests(T0 + DAY, 3) == ["c", "a", "b"]
    assert pickle.loads(pickle.dumps(table)).recommend(["a"], (), 5, T0) == table.recommend(["a"], (), 5, T0)


# ------------------------------------------------------------------ evaluation


def test_evaluator_maths():
    ev = RecsEvaluator(k=10)
    ev.add(["a", "b", "c", "d"], {"c", "x"})  # hit at rank 3 of 2 relevant
    ev.add(["a", "b"], {"z"})  # miss
    ev.add(["z"], {"z"})  # perfect
    ev.skip()
    assert ev.orders == 3 and ev.skipped == 1
    assert ev.hit_rate == pytest.approx(2 / 3)
    first = (1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ev.ndcg == pytest.approx((first + 0 + 1) / 3)
    other = RecsEvaluator(10)
    other.add(["q"], {"q"})
    ev.merge(other)
    assert ev.orders == 4 and ev.hit_rate == pytest.approx(3 / 4)
    assert ev.result()["hit_rate_at_10"] == 0.75


@pytest.fixture(scope="module")
def small_world(tmp_path_factory) -> Path:
    from flows.generator import generate

    out = tmp_path_factory.mktemp("recs_world")
    generate(600, 21, 5, out)
    return out


def test_item_to_item_beats_popularity_on_a_generated_world(small_world):
    from models.recs_eval import evaluate

    report = evaluate(small_world, DEFAULT._replace(normalisation="confidence"))
    i2i, pop = report["item_to_item"], report["popularity"]
    assert i2i["orders"] == pop["orders"] > 300
    assert report["orders_skipped"] > 0
    assert i2i["hit_rate_at_10"] > pop["hit_rate_at_10"]
    assert i2i["ndcg_at_10"] > pop["ndcg_at_10"]
    assert report["updates"] < report["pairs"] / 5  # material updates only


@given(st.lists(st.tuples(st.lists(st.sampled_from([f"p{i}" for i in range(30)]), min_size=1, max_size=4),
                          st.integers(0, 20 * DAY)), max_size=80),
       st.integers(1, 12))
def test_popularity_top_list_stays_exact_as_orders_arrive(orders, k):
    """The cached top list is updated in place per order; it must equal a fresh ranking."""
    pop = PopularityBaseline()
    now = 0
    for products, dt in orders:
        now += dt // 20  # orders arrive in time order, some buckets expire
        pop.observe(products, now)
        got = pop.recommend((), k, now)
        want = [p for p, _ in sorted(pop.totals.items(), key=lambda pc: (pc[1], pc[0]), reverse=True)][:k]
        assert got == want


# ------------------------------------------------------------------ blocks: the same pairs, per product


def _pairwise_flush(cust: RecentItems) -> list[tuple]:
    """The session flush as it was before blocks: every pair spelled out (the reference)."""
    ts, cfg = cust.last_ts, cust.cfg
    if ts is None:
        return []
    out = []
    for items, w in ((cust.views, cfg.view_weight), (cust.carts, cfg.cart_weight)):
        for i, a in enumerate(items):
            out.append((a, a, w, ts))
            for b in items[i + 1:]:
                out.append((a, b, w, ts))
                out.append((b, a, w, ts))
    for i, a in enumerate(cust.views):  # sequential: itself, then the product viewed next
        out.append((a, a, cfg.sequence_weight, ts))
        if i + 1 < len(cust.views):
            out.append((a, cust.views[i + 1], cfg.sequence_weight, ts))
    w = cfg.purchase_weight
    for products, t in cust.orders:
        since = t - cfg.co_purchase_window
        earlier = list(dict.fromkeys(p for p, tb in zip(cust.bought, cust.bought_ts)
                                     if since <= tb < t and p not in products))
        for i, a in enumerate(products):
            out.append((a, a, w, t))
            for b in products[i + 1:]:
                out.append((a, b, w, t))
                out.append((b, a, w, t))
            for b in earlier:
                out.append((a, b, w, t))
                out.append((b, a, w, t))
    return out


def by_product(pairs) -> dict[str, list]:
    out: dict[str, list] = {}
    for p in pairs:
        out.setdefault(p[0], []).append(tuple(p))
    return out


class _Checked(RecentItems):
    """Every flush (also the ones ``observe`` makes) checked against the pairwise reference."""

    flushes = 0

    def flush(self):
        reference = _pairwise_flush(self)
        blocks = super().flush()
        assert by_product(expand(blocks)) == by_product(reference)
        assert all(b[0] and b[1] for b in blocks)  # no empty block travels
        _Checked.flushes += bool(blocks)
        return blocks


_customer_events = st.lists(st.tuples(st.sampled_from(["product_view", "add_to_cart", "order_placed"]),
                                      st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=4),
                                      st.sampled_from(["s1", "s2", "s3"]),
                                      st.integers(0, 50 * DAY)), max_size=40)


@given(_customer_events)
def test_blocks_give_each_product_the_pairs_the_pairwise_flush_gave(events):
    cust = _Checked()
    for t, products, sid, dt in sorted(events, key=lambda e: e[3]):
        cust.observe(t, products if t == "order_placed" else products[:1], sid, T0 + dt)
    cust.flush()


def test_the_block_check_sees_flushes():
    _Checked.flushes = 0
    cust = _Checked()
    session(cust, "s1", T0, views=["a", "b", "c"], carts=["b"], order=["a", "d"])
    session(cust, "s2", T0 + DAY, views=["e"], order=["e"])
    cust.flush()
    assert _Checked.flushes == 2


@given(st.lists(st.tuples(st.lists(st.sampled_from("abcdefghij"), min_size=1, max_size=6),
                          st.sampled_from([1.0, 2.0, 3.0]), st.integers(0, 400 * DAY)), max_size=30))
def test_observing_a_block_is_observing_its_pairs_in_order(blocks):
    """The same floats, sketch and publication state (decay rescales included: 400 days is
    beyond the 64 half-lives that trigger one)."""
    one, each = ProductNeighbours("a", DEFAULT), ProductNeighbours("a", DEFAULT)
    for others, w, dt in sorted(blocks, key=lambda b: b[2]):
        one.observe_block(others, w, T0 + dt)
        for o in others:
            each.observe(("a", o, w, T0 + dt))
        assert one.update(T0 + dt) == each.update(T0 + dt)
    assert pickle.dumps(one) == pickle.dumps(each)


@given(st.lists(st.tuples(st.lists(st.text("pqrstuvwxyz", min_size=1, max_size=3), min_size=1, max_size=6),
                          st.lists(st.text("pqrstuvwxyz", min_size=1, max_size=3), min_size=1, max_size=6)),
                max_size=12))
def test_bundles_split_blocks_by_product_shard_and_keep_each_products_pairs(specs):
    keys = [f"products/{j}" for j in range(PRODUCT_SHARDS)]
    msgs = [PairMsg(((tuple(mine), tuple(others), 1.0, T0 + i),), pos=i + 1) for i, (mine, others) in enumerate(specs)]
    out = bundle_pairs(keys)(msgs)
    assert len({k for k, _ in out}) == len(out)
    got: dict[str, list] = {}
    for key, (pos, blocks) in out:
        assert pos == len(specs)
        for b in blocks:
            assert all(keys[product_shard(p)] == key for p in b[0])
        for product, pairs in by_product(expand(blocks)).items():
            got.setdefault(product, []).extend(pairs)
    assert got == by_product(expand(b for m in msgs for b in m.blocks))
