"""Issue 14's catalogue flows in event time, against independent readings (tests/catalogue_oracle.py).

1. The generator: every catalogue flow occurs in a generated month, under the engine's default
   numbers and under the brief's (1 h browse window, 2 h wait, 30-day win-back, 30-min SLA,
   10-min survey), so the flows do not hang on one choice of numbers.
2. The engine: ``replay --config config/examples/catalogue.toml`` of a generated month produces,
   per type, exactly the candidates (type, customer, event_ts) the oracles compute with the
   numbers read from the same settings object. Candidates are taken before policy (emitted plus
   suppressed, the neutral contact policy of tests/conftest.py); the rules' bounds (episodes per
   customer, watchers per product, products per customer) are set out of reach: they have their
   own tests.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from catalogue_oracle import DAY, HOUR, MIN, TYPES, Params, all_flows, params_from, read_log, ts_ms

from flows.generator import generate

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "examples" / "catalogue.toml"
BRIEF = Params(browse_views=3, browse_window=HOUR, browse_wait=2 * HOUR, review_after=7 * DAY,
               win_back_after=30 * DAY, reply_within=30 * MIN, survey_after=10 * MIN)


@pytest.fixture(scope="module")
def month(tmp_path_factory) -> tuple[Path, list[dict]]:
    """The default run's size over 30 days, without bad lines (every line is a real event)."""
    d = tmp_path_factory.mktemp("month")
    generate(2000, 30, 1, d, bad_share=0.0)
    return d, read_log(d / "events.jsonl")


@pytest.mark.parametrize("params", [Params(), BRIEF], ids=["engine-defaults", "brief-defaults"])
def test_every_catalogue_flow_occurs_in_a_generated_month(month, params):
    found = all_flows(month[1], params)
    counts = {t: len(found[t]) for t in TYPES}
    assert all(n >= 20 for n in counts.values()), counts
    customers = {t: len({c for _t, c, _d in found[t]}) for t in TYPES}
    assert all(n >= 15 for n in customers.values()), customers


def test_the_generated_month_has_the_flows_negative_cases(month):
    """What keeps a flow from firing happens too: carts after repeated views, returns before the
    review, orders within the win-back time, replies in time, surveys answered, small price moves,
    stock updates without a sell-out."""
    events = month[1]
    by_type: dict[str, list[dict]] = {}
    for o in events:
        by_type.setdefault(o["type"], []).append(o)
    returned = {o["order_id"] for o in by_type["return_requested"] + by_type["refund_issued"]}
    delivered = {o["order_id"]: o["_ms"] for o in by_type["order_delivered"]}
    early = [o for o in by_type["return_requested"] if o["order_id"] in delivered
             and o["_ms"] - delivered[o["order_id"]] < 7 * DAY]
    assert len(early) >= 20 and len(returned) < 0.2 * len(delivered)
    small = [o for o in by_type["price_changed"] if 0 < (o["old_price"] - o["price"]) / o["old_price"] < 0.05]
    rises = [o for o in by_type["price_changed"] if o["price"] > o["old_price"]]
    assert len(small) >= 5 and len(rises) >= 20
    assert sum(o["in_stock"] for o in by_type["stock_changed"]) > sum(not o["in_stock"] for o in by_type["stock_changed"])
    with_csat = sum("csat" in o for o in by_type["chat_closed"])
    assert with_csat > 5 * (len(by_type["chat_closed"]) - with_csat) > 0


def candidates(path: Path) -> set:
    if not path.exists():
        return set()
    rows = [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]
    return {(r["type"], r["customer_id"], ts_ms(r["event_ts"])) for r in rows if r["type"] in TYPES}


def test_the_engine_emits_what_the_oracles_expect(tmp_path):
    """Waits for wip-rules (config/examples/catalogue.toml, the catalogue's settings groups) and
    wip-catalog (crm.catalog decode, the watch lists): until both are merged it fails here."""
    from config.settings import load_settings
    from flows.replay import ReplayOutputs, replay

    assert EXAMPLE.is_file(), "config/examples/catalogue.toml comes with the catalogue rules (wip-rules)"
    base = load_settings(EXAMPLE)
    settings = load_settings(EXAMPLE, rules={"enabled": list(base.rules.enabled), "max_episodes": 10_000},
                             watch={"per_product": 1_000_000, "per_customer": 1_000_000, "per_change": 1_000_000})
    assert set(TYPES) <= set(settings.rules.enabled)
    generate(600, 30, 3, tmp_path, bad_share=0.0)
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "dlq.jsonl", tmp_path / "s.json",
                        suppressed=tmp_path / "suppressed.jsonl")
    replay(settings, [tmp_path / "events.jsonl"], out)
    assert not out.dlq.read_bytes().strip(), out.dlq.read_bytes()[:500]  # crm.catalog decodes
    got = candidates(out.triggers) | candidates(out.suppressed)
    expected = all_flows(read_log(tmp_path / "events.jsonl"), params_from(settings))
    for t in TYPES:
        mine = {x for x in got if x[0] == t}
        assert expected[t], t
        assert mine == expected[t], (t, len(mine), len(expected[t]), sorted(mine - expected[t])[:5],
                                     sorted(expected[t] - mine)[:5])
