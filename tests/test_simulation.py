"""The simulation behind ``crm-stream generate``: determinism, ordering, contract validity,
and the hidden truth recomputed independently from the emitted events."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from flows.generator import catalogue, generate

N_CUSTOMERS, N_DAYS, SEED = 300, 14, 1
IDLE_MS = 30 * 60 * 1000
GRACE_MS = 2 * 3600 * 1000

CLICK = {"page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "checkout_started", "help_view"}
ORDERS = {"order_placed", "order_shipped", "order_delayed", "order_delivered", "order_cancelled",
          "return_requested", "refund_issued"}
CHAT = {"chat_message", "chat_closed"}
PROFILE = {"consent_updated"}
CATALOG = {"price_changed", "stock_changed"}  # crm.catalog: keyed by product_id, no customer_id
CART_ACTIVITY = {"add_to_cart", "remove_from_cart", "checkout_started"}
HUMAN = re.compile(r"\b(?:human|agent|representative|real person|supervisor|manager|someone real|live person"
                   r"|talk to a person|speak to a person)\b", re.IGNORECASE)
NEAR_MISS = ("human", "agent", "represent", "real person", "supervis", "manag", "live person")
BAD_INVALID = ("truncated_json", "garbage_bytes", "missing_field", "price_string", "quantity_zero",
               "ts_no_offset", "unknown_type")


def ts_ms(text) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return int(dt.astimezone(timezone.utc).timestamp() * 1000 + 0.5)


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _str(x, lo: int = 1, hi: int = 128) -> bool:
    return isinstance(x, str) and lo <= len(x) <= hi


def valid(obj) -> bool:
    """The contract's section 1 required fields and types."""
    if not isinstance(obj, dict):
        return False
    if obj.get("type") in CATALOG:
        return valid_catalog(obj)
    if not (_str(obj.get("event_id")) and _str(obj.get("customer_id"))):
        return False
    t = obj.get("type")
    if t not in CLICK | ORDERS | CHAT | PROFILE or ts_ms(obj.get("ts")) is None:
        return False
    if t in PROFILE:
        return obj.get("channel") in ("email", "sms", "push", "all") and \
            obj.get("purpose") in ("marketing", "service") and isinstance(obj.get("granted"), bool)
    if t in CLICK:
        if not isinstance(obj.get("session_id"), str):
            return False
        if (t in CART_ACTIVITY - {"checkout_started"} or t == "product_view") and not isinstance(obj.get("product_id"), str):
            return False
        if t == "add_to_cart" and not (_num(obj.get("price")) and obj["price"] >= 0):
            return False
        if "quantity" in obj and not (isinstance(obj["quantity"], int) and not isinstance(obj["quantity"], bool)
                                      and obj["quantity"] >= 1):
            return False
        if t == "search" and not isinstance(obj.get("query"), str):
            return False
    elif t in ORDERS:
        if not isinstance(obj.get("order_id"), str):
            return False
        if t == "order_placed":
            if not (_num(obj.get("total")) and obj["total"] >= 0 and ts_ms(obj.get("promised_delivery_ts"))):
                return False
        if "promised_delivery_ts" in obj and ts_ms(obj["promised_delivery_ts"]) is None:
            return False
        if "items" in obj and not isinstance(obj["items"], list):
            return False
    else:
        if not isinstance(obj.get("conversation_id"), str):
            return False
        if t == "chat_message" and not (obj.get("sender") in ("customer", "agent", "bot")
                                        and isinstance(obj.get("text"), str)):
            return False
        if t == "chat_closed":
            if "csat" in obj and not (isinstance(obj["csat"], int) and 1 <= obj["csat"] <= 5):
                return False
            if "escalated" in obj and not isinstance(obj["escalated"], bool):
                return False
    return True


def valid_catalog(obj: dict) -> bool:
    """Issue 14's crm.catalog events: product-keyed, no customer."""
    if not (_str(obj.get("event_id")) and _str(obj.get("product_id"))) or "customer_id" in obj:
        return False
    if ts_ms(obj.get("ts")) is None:
        return False
    if obj["type"] == "price_changed":
        return _num(obj.get("price")) and obj["price"] > 0 and _num(obj.get("old_price")) and obj.get("currency") == "EUR"
    return isinstance(obj.get("in_stock"), bool) and isinstance(obj.get("quantity"), int) and obj["quantity"] >= 0 \
        and (obj["quantity"] == 0) == (not obj["in_stock"])


class Run:
    def __init__(self, out: Path, stats: dict):
        self.out, self.stats = out, stats
        self.raw = (out / "events.jsonl").read_bytes()
        self.truth = [orjson.loads(line) for line in (out / "truth.ndjson").read_bytes().splitlines()]
        self.good: list[dict] = []  # valid, first occurrence, in file order
        self.invalid = 0
        self.duplicates = 0
        self.late_lines = 0
        seen: set[str] = set()
        running = None
        for line in self.raw.splitlines():
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.invalid += 1
                continue
            if not valid(obj):
                self.invalid += 1
                continue
            if obj["event_id"] in seen:
                self.duplicates += 1
                continue
            seen.add(obj["event_id"])
            obj["_ms"] = ts_ms(obj["ts"])
            if running is not None and obj["_ms"] < running:
                self.late_lines += 1
                obj["_late"] = True
                assert obj["type"] == "page_view"
            else:
                running = obj["_ms"]
            self.good.append(obj)
        self.by_customer: dict[str, list[dict]] = defaultdict(list)
        self.catalog: list[dict] = []
        for obj in sorted(self.good, key=lambda o: o["_ms"]):  # stable: file order on ties
            if obj["type"] in CATALOG:
                self.catalog.append(obj)
            else:
                self.by_customer[obj["customer_id"]].append(obj)
        self.end = ts_ms(stats["end"])

    def kind(self, k: str) -> list[dict]:
        return [t for t in self.truth if t["kind"] == k]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("sim")
    return Run(out, generate(N_CUSTOMERS, N_DAYS, SEED, out))


def test_deterministic(tmp_path, run):
    stats = generate(N_CUSTOMERS, N_DAYS, SEED, tmp_path / "a")
    assert stats == run.stats
    assert (tmp_path / "a" / "events.jsonl").read_bytes() == run.raw
    assert (tmp_path / "a" / "truth.ndjson").read_bytes() == (run.out / "truth.ndjson").read_bytes()
    generate(N_CUSTOMERS, N_DAYS, SEED + 1, tmp_path / "b")
    assert (tmp_path / "b" / "events.jsonl").read_bytes() != run.raw


def test_size_and_shape(run):
    s = run.stats
    assert s["customers"] == N_CUSTOMERS
    assert s["real_events"] > 30 * N_CUSTOMERS  # a few sessions per customer in two weeks
    types = {o["type"] for o in run.good}
    assert types == CLICK | ORDERS | CHAT | PROFILE | CATALOG
    assert len({o["event_id"] for o in run.good}) == len(run.good)
    assert all(o["ts"].endswith("Z") for o in run.good)
    assert {o["customer_id"] for o in run.good if o["type"] not in CATALOG} <= {f"c{i:06d}" for i in range(N_CUSTOMERS)}
    assert all(re.fullmatch(r"p\d{5}", o["product_id"]) for o in run.good if "product_id" in o)


def test_sorted_except_injected_late_lines(run):
    assert run.late_lines == run.stats["bad"]["late"]
    assert run.duplicates == run.stats["bad"]["duplicate"]
    # the late page_views are 5 min to 1 h older than the customer's latest event before them
    latest: dict[str, int] = {}
    for o in run.good:
        if o.get("_late"):
            lag = latest[o["customer_id"]] - o["_ms"]
            assert 5 * 60_000 < lag <= 3600_000
        elif o["type"] not in CATALOG:
            latest[o["customer_id"]] = o["_ms"]


def test_bad_lines_roughly_bad_share(run):
    s = run.stats
    assert s["bad_lines"] == sum(s["bad"].values())
    assert abs(s["bad_lines"] - 0.005 * s["real_events"]) <= 2
    assert run.invalid == sum(s["bad"][k] for k in BAD_INVALID)
    assert s["lines"] == len(run.raw.splitlines())
    assert len(run.good) == s["real_events"] + s["bad"]["late"]
    with pytest.raises(UnicodeDecodeError):
        run.raw.decode("utf-8")  # garbage includes invalid UTF-8 bytes


def test_bad_share_zero(tmp_path):
    stats = generate(60, 7, 5, tmp_path, bad_share=0.0)
    assert stats["bad_lines"] == 0
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    objs = [orjson.loads(line) for line in lines]
    assert all(valid(o) for o in objs)
    ms = [ts_ms(o["ts"]) for o in objs]
    assert ms == sorted(ms)


def test_every_truth_kind(run):
    kinds = {t["kind"] for t in run.truth}
    assert kinds == {"customer", "cart", "order", "conversation"}
    assert len(run.kind("customer")) == N_CUSTOMERS
    assert len(run.kind("order")) == run.stats["orders"]
    assert len(run.kind("cart")) == run.stats["carts"]
    assert len(run.kind("conversation")) == run.stats["conversations"]
    for k in ("cart", "order", "conversation"):
        flag = {"cart": "abandoned", "order": "late", "conversation": "frustrated"}[k]
        values = {t[flag] for t in run.kind(k)}
        assert values == {True, False}, k


def test_cart_truth_recomputed(run):
    expected: dict[str, list[tuple[bool, str]]] = defaultdict(list)
    for cid, evs in run.by_customer.items():
        cart: dict[str, int] = {}
        live, last = False, None
        for o in evs:
            t = o["type"]
            if t not in CART_ACTIVITY and t != "order_placed":
                continue
            if live and cart and o["_ms"] > last["_ms"] + IDLE_MS:
                expected[cid].append((True, last["ts"]))
                live = False
            if t == "add_to_cart":
                live = True
                cart[o["product_id"]] = cart.get(o["product_id"], 0) + o.get("quantity", 1)
                last = o
            elif t == "remove_from_cart":
                assert o["product_id"] in cart
                assert live, "removal outside an episode"
                cart.pop(o["product_id"])
                last = o
                if not cart:
                    expected[cid].append((False, last["ts"]))
                    live = False
            elif t == "checkout_started":
                assert live, "checkout outside an episode"
                last = o
            else:
                cart = {}
                if live:
                    expected[cid].append((False, last["ts"]))
                live = False
        if live and cart:
            assert last["_ms"] + IDLE_MS < run.end
            expected[cid].append((True, last["ts"]))
    got: dict[str, list[tuple[bool, str]]] = defaultdict(list)
    for t in run.kind("cart"):
        got[t["customer_id"]].append((t["abandoned"], t["last_activity_ts"]))
    assert got == expected
    share = sum(t["abandoned"] for t in run.kind("cart")) / len(run.kind("cart"))
    assert 0.15 < share < 0.7


def test_checked_out_carts_never_idle(run):
    """Every gap between the cart activities of an ordered cart is well below 30 minutes."""
    for evs in run.by_customer.values():
        episode: list[int] = []
        for o in evs:
            if o["type"] == "add_to_cart" and episode and o["_ms"] - episode[-1] > IDLE_MS:
                episode = []
            if o["type"] in CART_ACTIVITY:
                episode.append(o["_ms"])
            elif o["type"] == "order_placed":
                assert episode
                stamps = episode + [o["_ms"]]
                assert max(b - a for a, b in zip(stamps, stamps[1:])) < 25 * 60_000
                episode = []


def test_order_placed_matches_cart(run):
    for evs in run.by_customer.values():
        cart: dict[str, list] = {}
        for o in evs:
            if o["type"] == "add_to_cart":
                cart.setdefault(o["product_id"], [0, o["price"]])[0] += o.get("quantity", 1)
            elif o["type"] == "remove_from_cart":
                cart.pop(o["product_id"])
            elif o["type"] == "order_placed":
                items = {i["product_id"]: [i["quantity"], i["price"]] for i in o["items"]}
                assert items == cart
                assert o["total"] == pytest.approx(sum(q * p for q, p in cart.values()), abs=0.011)
                assert ts_ms(o["promised_delivery_ts"]) > o["_ms"] + 24 * 3600_000
                cart = {}


def test_order_truth_recomputed(run):
    """Independently of the generator: per order, walk its own events with the contract's rule
    (a reported delay, or the latest promise missed by the grace, before delivery/cancellation)."""
    expected = {}
    last_event = max(o["_ms"] for evs in run.by_customer.values() for o in evs)
    for cid, evs in run.by_customer.items():
        per_order: dict = {}
        for o in evs:
            if o.get("order_id") is not None and (o["type"].startswith("order_")):
                per_order.setdefault(o["order_id"], []).append(o)
        for oid, oevs in per_order.items():
            if oevs[0]["type"] != "order_placed":
                continue
            promise, late, closed = ts_ms(oevs[0]["promised_delivery_ts"]), False, False
            for o in oevs[1:]:
                if promise + GRACE_MS < o["_ms"]:
                    late = True
                    break
                if o["type"] == "order_delayed":
                    late = True
                    break
                if o["type"] in ("order_delivered", "order_cancelled"):
                    closed = True
                    break
                if o.get("promised_delivery_ts"):
                    promise = ts_ms(o["promised_delivery_ts"])
            if not late and not closed:
                late = promise + GRACE_MS <= last_event
            expected[oid] = (cid, late)
    got = {t["order_id"]: (t["customer_id"], t["late"]) for t in run.kind("order")}
    assert got == expected
    share = sum(late for _, late in got.values()) / len(got)
    assert 0.04 < share < 0.35


def test_human_requested_is_word_boundary_scan(run):
    asked: dict[str, bool] = defaultdict(bool)
    customer_msgs = 0
    for o in run.good:
        if o["type"] == "chat_message" and o["sender"] == "customer":
            customer_msgs += 1
            hit = bool(HUMAN.search(o["text"]))
            asked[o["conversation_id"]] |= hit
            if not hit:
                low = o["text"].lower()
                assert not any(w in low for w in NEAR_MISS), o["text"]
    convs = run.kind("conversation")
    for t in convs:
        assert t["human_requested"] == asked[t["conversation_id"]]
    assert 0 < sum(t["human_requested"] for t in convs) < len(convs)
    assert customer_msgs > len(convs)


def test_chat_tone_follows_frustration(run):
    frus = {t["conversation_id"]: t["frustrated"] for t in run.kind("conversation")}
    shouty = {True: [0, 0], False: [0, 0]}
    for o in run.good:
        if o["type"] == "chat_message" and o["sender"] == "customer":
            f = frus[o["conversation_id"]]
            text = o["text"]
            loud = "!!" in text or "??" in text or sum(w.isupper() and len(w) > 3 for w in text.split()) > 0
            shouty[f][0] += loud
            shouty[f][1] += 1
    assert shouty[True][0] / shouty[True][1] > 0.6
    assert shouty[False][0] / shouty[False][1] < 0.1


def test_frustrated_conversations_end_worse(run):
    outcome: dict[str, bool | None] = {}
    for o in run.good:
        if o["type"] == "chat_message":
            outcome.setdefault(o["conversation_id"], None)
        elif o["type"] == "chat_closed":
            outcome[o["conversation_id"]] = bool(o.get("escalated")) or o.get("csat", 5) <= 2
    rates = {}
    for flag in (True, False):
        convs = [t["conversation_id"] for t in run.kind("conversation") if t["frustrated"] == flag]
        bad = sum(outcome[c] is None or outcome[c] for c in convs)  # None: abandoned (no chat_closed)
        rates[flag] = bad / len(convs)
    assert rates[True] > 0.6
    # expected about 0.13 (3% unclosed, ~5% escalated, ~6% csat <= 2) on only ~35 calm conversations
    assert rates[False] < 0.3 and rates[False] < rates[True] / 2
    assert rates[True] > 3 * rates[False]


def test_churned_customers_stop(run):
    customers = run.kind("customer")
    churned = [t for t in customers if t["churned"]]
    assert 0 < len(churned) < len(customers) * 0.5
    for t in customers:
        evs = run.by_customer.get(t["customer_id"], [])
        if t["churned"]:
            cut = ts_ms(t["churn_ts"])
            assert evs and max(o["_ms"] for o in evs) <= cut
        else:
            assert t["churn_ts"] is None


def test_no_label_leaks(run):
    allowed_extra = {"page", "product_id", "price", "quantity", "query", "results", "session_id", "order_id",
                     "items", "total", "currency", "promised_delivery_ts", "reason", "carrier", "amount",
                     "conversation_id", "sender", "text", "csat", "escalated",
                     "channel", "purpose", "granted", "timezone"}  # consent_updated (crm.profile)
    for o in run.good:
        extra = set(o) - {"event_id", "type", "customer_id", "ts", "_ms", "_late"}
        assert extra <= allowed_extra | ({"old_price", "in_stock"} if o["type"] in CATALOG else set()), extra


def test_catalogue_structure():
    cat = catalogue(SEED)
    assert 1900 <= len(cat.ids) <= 2100
    assert len(set(cat.cat)) == 30
    assert all(re.fullmatch(r"p\d{5}", p) for p in cat.ids)
    w = sorted(cat.weight, reverse=True)
    assert w[0] > 50 * w[len(w) // 2]  # Zipf-like popularity
    phones = cat.by_cat[cat.cat_index["smartphones"]]
    cables = cat.by_cat[cat.cat_index["cables"]]
    assert sum(cat.price[p] for p in phones) / len(phones) > 10 * sum(cat.price[p] for p in cables) / len(cables)
    comp_cats = {cat.cat_names[cat.cat[c]] for p in phones for c in cat.complements[p]}
    assert {"phone_cases", "chargers"} <= comp_cats


def test_related_products_viewed_and_bought(run):
    """Consecutive views in a session hit complements far above chance; buyers buy complements."""
    cat = catalogue(SEED)
    index = {pid: i for i, pid in enumerate(cat.ids)}
    pairs = hits = 0
    for evs in run.by_customer.values():
        prev = None
        for o in evs:
            if o["type"] != "product_view":
                continue
            p = index[o["product_id"]]
            if prev is not None and prev[1] == o["session_id"]:
                pairs += 1
                hits += p in cat.complements[prev[0]]
            prev = (p, o["session_id"])
    assert hits / pairs > 0.1
    followups = 0
    for evs in run.by_customer.values():
        bought: set[int] = set()
        for o in evs:
            if o["type"] == "order_placed":
                new = {index[i["product_id"]] for i in o["items"]}
                followups += any(p in cat.complements[b] for p in new for b in bought)
                bought |= new
    assert followups > 5


def test_sessions_and_engine_patterns(run):
    """Sessions are tight; help bursts, exit-intent searches and unanswered bursts all occur."""
    exit_words = re.compile(r"\b(?:cancel|refund|return|close account|close my account|delete my account|unsubscribe)\b")
    by_session: dict[str, list[dict]] = defaultdict(list)
    for evs in run.by_customer.values():
        for o in evs:
            if "session_id" in o and not o.get("_late"):
                by_session[o["session_id"]].append(o)
    help_bursts = 0
    for evs in by_session.values():
        stamps = [o["_ms"] for o in evs]
        assert max((b - a for a, b in zip(stamps, stamps[1:])), default=0) < 30 * 60_000
        helps = [o["_ms"] for o in evs if o["type"] == "help_view"]
        help_bursts += any(helps[i + 2] - helps[i] <= 3600_000 for i in range(len(helps) - 2))
    assert help_bursts >= 5
    searches = [o for o in run.good if o["type"] == "search"]
    exits = sum(bool(exit_words.search(o["query"])) for o in searches)
    assert 0 < exits < 0.2 * len(searches)
    convs: dict[str, list[dict]] = defaultdict(list)
    for o in run.good:
        if o["type"] == "chat_message":
            convs[o["conversation_id"]].append(o)
    bursts = 0
    for msgs in convs.values():
        run_start = []
        for o in msgs:
            if o["sender"] == "customer":
                run_start.append(o["_ms"])
                if len(run_start) >= 3 and run_start[-1] - run_start[-3] <= 10 * 60_000:
                    bursts += 1
                    break
            else:
                run_start = []
    assert bursts >= 5


def test_item_level_structure_of_the_catalogue():
    """Complements are specific products (same brand/tier first, long-tail like their parents),
    not the best-sellers of their category; alternatives share category and mostly brand."""
    cat = catalogue(SEED)
    rank_in_cat = {}
    for members in cat.by_cat:
        for r, p in enumerate(sorted(members, key=lambda q: (-cat.weight[q], q))):
            rank_in_cat[p] = r
    comps = [(p, c) for p in range(len(cat.ids)) for c in cat.complements[p]]
    assert len(comps) > 2000
    # popularity-weighted picks would land in the category's top 3 most of the time
    top3 = sum(rank_in_cat[c] < 3 for _p, c in comps) / len(comps)
    assert top3 < 0.15, top3
    assert sum(cat.brand[p] == cat.brand[c] for p, c in comps) / len(comps) > 0.35  # third-party too
    phones = cat.by_cat[cat.cat_index["smartphones"]]
    cases = {c for p in phones for c in cat.complements[p]
             if cat.cat[c] == cat.cat_index["phone_cases"]}
    assert len(cases) > 0.5 * len(cat.by_cat[cat.cat_index["phone_cases"]])  # each phone its own cases
    for p in range(0, len(cat.ids), 7):
        assert all(cat.cat[q] == cat.cat[p] and q != p for q in cat.similar[p])
    same_brand = [cat.brand[q] == cat.brand[p] for p in range(len(cat.ids)) for q in cat.similar[p]]
    assert sum(same_brand) / len(same_brand) > 0.5
    assert all(0 <= t <= 2 for t in cat.tier)
    assert any(cat.replenish[p] for p in range(len(cat.ids)))


def test_bundles_brand_taste_and_consideration(run):
    """Orders bundle an item with its own accessories; customers come back to their brands; the
    products compared before buying are the bought item's alternatives."""
    cat = catalogue(SEED)
    index = {pid: i for i, pid in enumerate(cat.ids)}
    orders = [[index[i["product_id"]] for i in o["items"]] for o in run.good if o["type"] == "order_placed"]
    multi = [items for items in orders if len(items) > 1]
    bundles = sum(any(b in cat.complements[a] for a in items for b in items) for items in multi)
    assert bundles > 0.2 * len(multi) and bundles > 30, (bundles, len(multi))
    # brand repeat: pairs of products bought by one customer share a brand far above chance
    share = [0.0] * len(cat.brand_names)
    for items in orders:
        for p in items:
            share[cat.brand[p]] += 1
    total = sum(share)
    chance = sum((s / total) ** 2 for s in share)
    same = pairs = 0
    for evs in run.by_customer.values():
        bought = [index[i["product_id"]] for o in evs if o["type"] == "order_placed" for i in o["items"]]
        for i, a in enumerate(bought):
            for b in bought[i + 1:]:
                if a != b and cat.cat[a] == cat.cat[b]:
                    pairs += 1
                    same += cat.brand[a] == cat.brand[b]
    assert pairs > 50 and same / pairs > 2 * chance, (same, pairs, chance)
    # before buying: the customer's earlier views include the bought item's alternatives
    considered = n = 0
    for evs in run.by_customer.values():
        seen: set[int] = set()
        for o in evs:
            if o["type"] == "product_view":
                seen.add(index[o["product_id"]])
            elif o["type"] == "order_placed":
                for i in o["items"]:
                    p = index[i["product_id"]]
                    n += 1
                    considered += any(q in seen for q in cat.similar[p])
    assert considered > 0.4 * n, (considered, n)


START_MS = ts_ms("2026-01-05T00:00:00+00:00")


def test_catalog_prices_and_stock(run):
    """crm.catalog: price moves (clear drops of 5 % or more, small ones, rises) with the previous
    price as old_price; products selling out and coming back; customers see the price of the
    moment and cannot cart a sold-out product."""
    cat = catalogue(SEED)
    index = {pid: i for i, pid in enumerate(cat.ids)}
    prices = [o for o in run.catalog if o["type"] == "price_changed"]
    stock = [o for o in run.catalog if o["type"] == "stock_changed"]
    assert len(prices) > 20 and len(stock) > 10
    timeline: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for o in prices:
        prev = timeline[o["product_id"]][-1][1] if timeline[o["product_id"]] else cat.price[index[o["product_id"]]]
        assert o["old_price"] == prev
        timeline[o["product_id"]].append((o["_ms"], o["price"]))
    drops = [(o["old_price"] - o["price"]) / o["old_price"] for o in prices]
    assert sum(d >= 0.05 for d in drops) > 10 and sum(d < 0.05 for d in drops) > 5
    assert not any(0.045 <= d <= 0.055 for d in drops)  # clear cases either side of a 5 % threshold
    out: dict[str, list[list[int]]] = defaultdict(list)
    for o in stock:
        if not o["in_stock"]:
            out[o["product_id"]].append([o["_ms"], 1 << 62])
        elif out[o["product_id"]] and out[o["product_id"]][-1][1] == 1 << 62:
            out[o["product_id"]][-1][1] = o["_ms"]
    assert sum(iv[1] < 1 << 62 for ivs in out.values() for iv in ivs) > 5  # out, then back

    def price_at(pid: str, t: int) -> float:
        seen = [p for ts, p in timeline[pid] if ts <= t]
        return seen[-1] if seen else cat.price[index[pid]]

    views = [o for evs in run.by_customer.values() for o in evs if o["type"] in ("product_view", "add_to_cart")]
    assert all(o["price"] == price_at(o["product_id"], o["_ms"]) for o in views)
    assert sum(o["price"] != cat.price[index[o["product_id"]]] for o in views) > 50
    carted_out = [o for o in views if o["type"] == "add_to_cart"
                  and any(a <= o["_ms"] < b for a, b in out.get(o["product_id"], ()))]
    assert not carted_out


def test_no_catalog(tmp_path):
    stats = generate(60, 7, 5, tmp_path, bad_share=0.0, catalog=False)
    objs = [orjson.loads(line) for line in (tmp_path / "events.jsonl").read_bytes().splitlines()]
    assert stats["catalog_events"] == 0 and not [o for o in objs if o["type"] in CATALOG]
    cat = catalogue(5)
    index = {pid: i for i, pid in enumerate(cat.ids)}
    assert all(o["price"] == cat.price[index[o["product_id"]]] for o in objs if o["type"] == "product_view")


def test_backfilled_orders_and_long_gaps(run):
    """Before the start: one backfilled order per customer at most (a short session, delivered on
    time); some of those customers stay away 30+ days after it, and some come back after that."""
    before = [o for evs in run.by_customer.values() for o in evs if o["_ms"] < START_MS]
    assert before
    assert all(o.get("session_id", "").endswith("h000") or o.get("order_id", "").endswith("h000")
               or o["type"] == "consent_updated" for o in before)
    placed = [o for o in before if o["type"] == "order_placed"]
    assert len(placed) == len({o["customer_id"] for o in placed}) > 0.1 * N_CUSTOMERS
    long_gaps = back = 0
    for evs in run.by_customer.values():
        orders = [o["_ms"] for o in evs if o["type"] == "order_placed"]
        activity = [o["_ms"] for o in evs if "session_id" in o]
        if orders and orders[0] < START_MS:
            nxt = [t for t in activity if t > orders[0] + 3600_000]
            long_gaps += not nxt or nxt[0] - orders[0] > 30 * 86_400_000
            back += bool(nxt) and nxt[0] - orders[0] > 30 * 86_400_000
    assert long_gaps > 5 and back > 0


def test_support_replies_past_the_sla(run):
    """Some conversations get an agent's reply only after 30 min, or are closed after 30 min with
    the customer's last message unanswered."""
    convs: dict[str, list[dict]] = defaultdict(list)
    for o in run.good:
        if o["type"] in ("chat_message", "chat_closed"):
            convs[o["conversation_id"]].append(o)
    late_reply = late_close = 0
    for evs in convs.values():
        waiting = None
        for o in evs:
            if o["type"] == "chat_closed":
                late_close += waiting is not None and o["_ms"] - waiting > 30 * 60_000
            elif o["sender"] == "customer":
                waiting = waiting if waiting is not None else o["_ms"]
            else:
                late_reply += waiting is not None and o["sender"] == "agent" and o["_ms"] - waiting > 30 * 60_000
                waiting = None
    assert late_reply > 0 and late_close > 0


def test_no_history(tmp_path):
    generate(80, 5, 2, tmp_path, bad_share=0.0, history=False)
    objs = [orjson.loads(line) for line in (tmp_path / "events.jsonl").read_bytes().splitlines()]
    assert min(ts_ms(o["ts"]) for o in objs) >= START_MS
    assert not any(o.get("order_id", "").endswith("h000") for o in objs)
