"""The real Olist order sample (../shared/realdata/olist): delay apologies for exactly the late
and the never-delivered orders.

Mapping (the data's README): purchase -> ``order_placed`` (promise = estimated delivery date),
carrier hand-over -> ``order_shipped``, delivery -> ``order_delivered``, status ``canceled`` ->
``order_cancelled``. Timestamps are Brazil local time (UTC-03:00) without an offset. A cancelled
order has no cancellation time in the data: it is placed right after the order's last known
timestamp, and a cancelled order is not "never delivered" (the contract apologises only for
orders neither delivered nor cancelled).
"""

import csv
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from config.settings import load_settings
from flows.replay import ReplayOutputs, replay

OLIST = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "olist"
OFFSET = "-03:00"


def local(ts: str) -> str:
    return ts.replace(" ", "T") + OFFSET


def olist_events(orders_csv: Path, items_csv: Path) -> list[dict]:
    items = defaultdict(list)
    with open(items_csv, newline="") as f:
        for row in csv.DictReader(f):
            items[row["order_id"]].append({"product_id": row["product_id"], "quantity": 1,
                                           "price": float(row["price"])})
    events = []
    with open(orders_csv, newline="") as f:
        for row in csv.DictReader(f):
            oid, cid = row["order_id"], row["customer_id"]
            lines = items.get(oid, [])
            base = {"customer_id": cid, "order_id": oid}
            events.append({**base, "event_id": f"{oid}:placed", "type": "order_placed",
                           "ts": local(row["order_purchase_timestamp"]),
                           "total": round(sum(i["price"] for i in lines), 2), "items": lines,
                           "promised_delivery_ts": local(row["order_estimated_delivery_date"])})
            if row["order_delivered_carrier_date"]:
                events.append({**base, "event_id": f"{oid}:shipped", "type": "order_shipped",
                               "ts": local(row["order_delivered_carrier_date"])})
            if row["order_delivered_customer_date"]:
                events.append({**base, "event_id": f"{oid}:delivered", "type": "order_delivered",
                               "ts": local(row["order_delivered_customer_date"])})
            if row["order_status"] == "canceled":
                known = [row[k] for k in ("order_purchase_timestamp", "order_approved_at",
                                          "order_delivered_carrier_date", "order_delivered_customer_date") if row[k]]
                at = datetime.fromisoformat(max(known)) + timedelta(seconds=1)
                events.append({**base, "event_id": f"{oid}:cancelled", "type": "order_cancelled",
                               "ts": local(at.isoformat(sep=" "))})
    events.sort(key=lambda e: datetime.fromisoformat(e["ts"]))
    return events


def expected_apologies(orders_csv: Path) -> tuple[set, set]:
    late, never = set(), set()
    with open(orders_csv, newline="") as f:
        for row in csv.DictReader(f):
            promised = datetime.fromisoformat(row["order_estimated_delivery_date"])
            delivered = row["order_delivered_customer_date"]
            if delivered and datetime.fromisoformat(delivered) > promised + timedelta(hours=2):
                late.add(row["order_id"])
            elif not delivered and row["order_status"] != "canceled":
                never.add(row["order_id"])
    return late, never


@pytest.mark.skipif(not OLIST.is_dir(), reason="../shared/realdata/olist is absent (never in CI)")
def test_olist_delay_apologies_for_exactly_the_late_and_never_delivered_orders(tmp_path):
    orders_csv, items_csv = OLIST / "olist_orders_dataset.csv", OLIST / "olist_order_items_dataset.csv"
    log = tmp_path / "olist.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in olist_events(orders_csv, items_csv)))
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json")
    summary = replay(load_settings(), [log], out, drain=True)  # "never delivered" is judged at the end of time
    assert summary["events_invalid"] == 0
    triggers = [orjson.loads(x) for x in out.triggers.read_bytes().splitlines()]
    apologised = {t["payload"]["order_id"] for t in triggers if t["type"] == "delay_apology"}
    late, never = expected_apologies(orders_csv)
    assert len(late) == 319
    assert apologised == late | never
    assert all(t["reasons"] == ["promise_missed"] for t in triggers if t["type"] == "delay_apology")
