"""The JSON Schema copies of the contract (config/schemas/) are valid schemas and match what the
code produces: hand-written events the decoder accepts, triggers from ``Candidate.to_trigger``
and from the customer state machine, dead letters, and the replay summary."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

from connectors.metrics import Telemetry
from operators.customer import CustomerState
from operators.event_table import FAMILIES, required_fields
from operators.events import EVENT_TYPES, REASONS, DeadLetter, Event, decode, parse_ts
from operators.rules import RuleConfig
from operators.scoring import ScoreRequest
from operators.triggers import PRIORITIES, TRIGGER_TYPES, Candidate

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "config" / "schemas"
NAMES = ("event", "trigger", "deadletter", "summary")
TYPE_DEFS = {"clickstream": "clickstream_type", "orders": "order_type", "chat": "chat_type",
             "profile": "profile_type", "identity": "identity_type", "catalog": "catalog_type"}


def load(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


VALIDATORS = {name: Draft202012Validator(load(name)) for name in NAMES}
EMITTED_AT = "2026-01-01T00:00:00.000Z"


def errors(name: str, instance) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATORS[name].iter_errors(instance)]


# ----------------------------------------------------------------------------- the schema files


@pytest.mark.parametrize("name", NAMES)
def test_schema_files_are_valid_draft_2020_12(name):
    schema = load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_schema_enums_match_the_code():
    event, trigger, dead, summary = (load(n) for n in NAMES)
    d = event["$defs"]
    assert set(d["clickstream_type"]["enum"]) | set(d["order_type"]["enum"]) | set(d["chat_type"]["enum"]) \
        | set(d["profile_type"]["enum"]) | set(d["identity_type"]["enum"]) | set(d["catalog_type"]["enum"]) \
        == set(EVENT_TYPES)
    for fam in FAMILIES.values():  # the events table (operators/event_table.py) and the schema agree
        if fam.name in TYPE_DEFS:
            assert set(d[TYPE_DEFS[fam.name]]["enum"]) == set(fam.types), fam.name
    assert tuple(dead["properties"]["reason"]["enum"]) == REASONS
    assert tuple(summary["properties"]["invalid_by_reason"]["propertyNames"]["enum"]) == REASONS
    # the trigger type is open (a shop's own rules name theirs): the contract's four are its examples
    assert set(trigger["properties"]["type"]["examples"]) == set(TRIGGER_TYPES)
    assert set(summary["$defs"]["trigger_type"]["examples"]) == set(TRIGGER_TYPES)
    assert tuple(trigger["properties"]["priority"]["enum"]) == PRIORITIES


# ----------------------------------------------------------------------------- events

EVENTS = [
    {"event_id": "e1", "type": "page_view", "customer_id": "c1", "ts": "2026-11-23T10:15:00Z",
     "session_id": "s1", "page": "/"},
    {"event_id": "e2", "type": "product_view", "customer_id": "c1", "ts": "2026-11-23T10:15:20.5Z",
     "session_id": "s1", "product_id": "p42", "price": 59.0, "page": "/p/p42"},
    {"event_id": "e3", "type": "search", "customer_id": "c1", "ts": "2026-11-23T11:15:00+01:00",
     "session_id": "s1", "query": "running shoes"},
    {"event_id": "e4", "type": "add_to_cart", "customer_id": "c1", "ts": "2026-11-23T10:16:00.123Z",
     "session_id": "s1", "product_id": "p42", "price": 59.0, "quantity": 2, "currency": "EUR"},
    {"event_id": "e5", "type": "add_to_cart", "customer_id": "c1", "ts": "2026-11-23T10:16:30Z",
     "session_id": "s1", "product_id": "p7", "price": 0},
    {"event_id": "e6", "type": "remove_from_cart", "customer_id": "c1", "ts": "2026-11-23T10:17:00Z",
     "session_id": "s1", "product_id": "p7"},
    {"event_id": "e7", "type": "checkout_started", "customer_id": "c1", "ts": "2026-11-23T10:18:00Z",
     "session_id": "s1"},
    {"event_id": "e8", "type": "help_view", "customer_id": "c1", "ts": "2026-11-23T05:19:00-05:00",
     "session_id": "s1", "page": "/help/returns"},
    {"event_id": "e9", "type": "order_placed", "customer_id": "c1", "ts": "2026-11-23T10:20:00Z",
     "order_id": "o1", "total": 118.0, "promised_delivery_ts": "2026-11-25T18:00:00+01:00",
     "items": [{"product_id": "p42", "quantity": 2, "price": 59.0}]},
    {"event_id": "e10", "type": "order_shipped", "customer_id": "c1", "ts": "2026-11-24T08:00:00Z",
     "order_id": "o1", "promised_delivery_ts": "2026-11-26T18:00:00Z"},
    {"event_id": "e11", "type": "order_delayed", "customer_id": "c1", "ts": "2026-11-25T08:00:00Z",
     "order_id": "o1", "reason": "carrier backlog"},
    {"event_id": "e12", "type": "order_delivered", "customer_id": "c1", "ts": "2026-11-27T12:00:00Z",
     "order_id": "o1"},
    {"event_id": "e13", "type": "order_cancelled", "customer_id": "c2", "ts": "2026-11-23T10:20:00Z",
     "order_id": "o2", "reason": "changed mind"},
    {"event_id": "e14", "type": "return_requested", "customer_id": "c1", "ts": "2026-11-28T12:00:00Z",
     "order_id": "o1", "items": [{"product_id": "p42", "quantity": 1}], "reason": "too small"},
    {"event_id": "e15", "type": "refund_issued", "customer_id": "c1", "ts": "2026-11-30T12:00:00Z",
     "order_id": "o1", "total": 59.0},
    {"event_id": "e16", "type": "chat_message", "customer_id": "c1", "ts": "2026-11-25T09:00:00Z",
     "conversation_id": "conv1", "sender": "customer", "text": "Where is my parcel?"},
    {"event_id": "e17", "type": "chat_message", "customer_id": "c1", "ts": "2026-11-25T09:01:00Z",
     "conversation_id": "conv1", "sender": "bot", "text": ""},
    {"event_id": "e18", "type": "chat_message", "customer_id": "c1", "ts": "2026-11-25T09:02:00Z",
     "conversation_id": "conv1", "sender": "agent", "text": "Let me check."},
    {"event_id": "e19", "type": "chat_closed", "customer_id": "c1", "ts": "2026-11-25T09:10:00Z",
     "conversation_id": "conv1", "csat": 2, "escalated": True},
    {"event_id": "e20", "type": "chat_closed", "customer_id": "c3", "ts": "2026-11-25T09:10:00Z",
     "conversation_id": "conv9", "unknown_extra": {"kept": [1, 2]}},
    {"event_id": "x1", "type": "erasure_requested", "customer_id": "c1", "ts": "2026-11-23T12:00:00Z"},
    {"event_id": "e21", "type": "consent_updated", "customer_id": "c1", "ts": "2026-11-25T09:11:00Z",
     "channel": "email", "purpose": "marketing", "granted": True},
    {"event_id": "e22", "type": "consent_updated", "customer_id": "c3", "ts": "2026-11-25T09:12:00+01:00",
     "channel": "all", "purpose": "service", "granted": False, "timezone": "Europe/Paris"},
    {"event_id": "e21", "type": "identify", "customer_id": "c1", "ts": "2026-11-25T09:11:00Z",
     "anonymous_id": "anon-7f3"},
    {"event_id": "k1", "type": "price_changed", "ts": "2026-11-25T09:00:00Z", "product_id": "p42", "price": 49.0,
     "old_price": 59.0, "currency": "EUR"},
    {"event_id": "k2", "type": "price_changed", "ts": "2026-11-25T10:00:00Z", "product_id": "p7", "price": 0},
    {"event_id": "k3", "type": "stock_changed", "ts": "2026-11-25T09:00:00Z", "product_id": "p42", "in_stock": False,
     "quantity": 0},
    {"event_id": "k4", "type": "stock_changed", "ts": "2026-11-25T11:00:00Z", "product_id": "p42", "in_stock": True},
]
CONSENT = next(e for e in EVENTS if e["type"] == "consent_updated")


# Formats shops send (issue 13): accepted, and what the engine makes of them.
SHOP_FORMATS = {
    "ts-epoch-ms": ({**EVENTS[0], "ts": 1763892900000}, {"ts": "2025-11-23T10:15:00.000Z"}),
    "ts-epoch-s": ({**EVENTS[0], "ts": 1763892900}, {"ts": "2025-11-23T10:15:00.000Z"}),
    "ts-epoch-s-fraction": ({**EVENTS[0], "ts": 1763892900.25}, {"ts": "2025-11-23T10:15:00.250Z"}),
    "customer-id-int": ({**EVENTS[0], "customer_id": 1234567}, {"customer_id": "1234567"}),
    "ids-int": ({**EVENTS[8], "event_id": 99, "order_id": 5551234, "items": [{"product_id": 42, "quantity": 1}]},
                {"event_id": "99", "order_id": "5551234"}),
    "promise-epoch-ms": ({**EVENTS[8], "promised_delivery_ts": 1764180000000},
                         {"promised_delivery_ts": "2025-11-26T18:00:00.000Z"}),
    "promise-sentinel-9999": ({**EVENTS[8], "promised_delivery_ts": "9999-12-31T23:59:59Z"},
                              {"promised_delivery_ts": None}),
    "promise-sentinel-0001": ({**EVENTS[8], "promised_delivery_ts": "0001-01-01T00:00:00Z"},
                              {"promised_delivery_ts": None}),
}


@pytest.mark.parametrize("case", sorted(SHOP_FORMATS))
def test_shop_formats_validate_and_decode(case):
    event, expect = SHOP_FORMATS[case]
    assert errors("event", event) == []
    ev = decode(orjson.dumps(event), "examples:1")
    assert isinstance(ev, Event), ev
    from operators.events import format_ts
    got = {**ev.data, "ts": format_ts(ev.ts), "customer_id": ev.customer_id, "event_id": ev.event_id}
    for field, value in expect.items():
        assert got.get(field) == value, (field, got.get(field))


def test_every_event_type_has_an_example():
    assert {e["type"] for e in EVENTS} == EVENT_TYPES


@pytest.mark.parametrize("type", sorted(EVENT_TYPES))
def test_schema_requires_what_the_events_table_requires(type):
    """Each required field of the table (operators/event_table.py), left out: the schema refuses it
    and the decoder makes it a ``missing_field`` dead letter; with all of them, both accept."""
    from operators.event_table import sample_fields

    event = {"event_id": "r1", "type": type, "ts": "2026-11-25T09:00:00Z", **sample_fields(type)}
    if "customer_id" in required_fields(type):
        event["customer_id"] = "c1"
    assert errors("event", event) == [] and isinstance(decode(orjson.dumps(event)), Event)
    for name in required_fields(type):
        less = {k: v for k, v in event.items() if k != name}
        assert errors("event", less), name
        assert decode(orjson.dumps(less)).reason == "missing_field", name


@pytest.mark.parametrize("event", EVENTS, ids=[f"{e['event_id']}-{e['type']}" for e in EVENTS])
def test_valid_events_validate_and_decode(event):
    assert errors("event", event) == []
    ev = decode(orjson.dumps(event), "examples:1")
    assert isinstance(ev, Event), ev
    assert ev.type == event["type"] and ev.ts == parse_ts(event["ts"]) and ev.data == event


INVALID_EVENTS = {
    "no-offset": ({**EVENTS[0], "ts": "2026-11-23T10:15:00"}, "invalid_ts"),
    "no-session": ({k: v for k, v in EVENTS[0].items() if k != "session_id"}, "missing_field"),
    "cart-no-price": ({k: v for k, v in EVENTS[3].items() if k != "price"}, "missing_field"),
    "view-no-product": ({k: v for k, v in EVENTS[1].items() if k != "product_id"}, "missing_field"),
    "negative-price": ({**EVENTS[3], "price": -1}, "out_of_range"),
    "quantity-0": ({**EVENTS[3], "quantity": 0}, "out_of_range"),
    "quantity-2^64": ({**EVENTS[3], "quantity": 2**64}, "out_of_range"),
    "price-1e13": ({**EVENTS[3], "price": 1e13}, "out_of_range"),
    "total-1.5e308": ({**EVENTS[8], "total": 1.5e308}, "out_of_range"),
    "ts-year-9999": ({**EVENTS[0], "ts": "9999-12-31T23:59:59Z"}, "invalid_ts"),
    "ts-year-1970": ({**EVENTS[0], "ts": "1970-01-01T00:00:00Z"}, "invalid_ts"),
    "ts-epoch-microseconds": ({**EVENTS[0], "ts": 1764000000000000}, "invalid_ts"),
    "ts-epoch-zero": ({**EVENTS[0], "ts": 0}, "invalid_ts"),
    "promise-epoch-microseconds": ({**EVENTS[9], "promised_delivery_ts": 1764000000000000}, "invalid_ts"),
    "customer-id-float": ({**EVENTS[0], "customer_id": 42.5}, "wrong_type"),
    "customer-id-negative": ({**EVENTS[0], "customer_id": -42}, "out_of_range"),
    "order-id-bool": ({**EVENTS[9], "order_id": True}, "wrong_type"),
    "placed-no-total": ({k: v for k, v in EVENTS[8].items() if k != "total"}, "missing_field"),
    "promise-no-offset": ({**EVENTS[9], "promised_delivery_ts": "2026-11-26T18:00:00"}, "invalid_ts"),
    "item-no-product": ({**EVENTS[8], "items": [{"quantity": 1}]}, "wrong_type"),  # a malformed line item: the items field has the wrong shape
    "message-no-sender": ({k: v for k, v in EVENTS[15].items() if k != "sender"}, "missing_field"),
    "sender-enum": ({**EVENTS[15], "sender": "system"}, "wrong_type"),
    "csat-6": ({**EVENTS[18], "csat": 6}, "out_of_range"),
    "escalated-str": ({**EVENTS[18], "escalated": "true"}, "wrong_type"),
    "empty-event-id": ({**EVENTS[0], "event_id": ""}, "out_of_range"),
    "long-customer-id": ({**EVENTS[0], "customer_id": "c" * 129}, "out_of_range"),
    "unknown-type": ({**EVENTS[0], "type": "page_scroll"}, "unknown_type"),
    "consent-channel-enum": ({**CONSENT, "channel": "fax"}, "wrong_type"),
    "consent-purpose-enum": ({**CONSENT, "purpose": "profiling"}, "wrong_type"),
    "consent-granted-str": ({**CONSENT, "granted": "yes"}, "wrong_type"),
    "consent-no-granted": ({k: v for k, v in CONSENT.items() if k != "granted"}, "missing_field"),
}


@pytest.mark.parametrize("case", sorted(INVALID_EVENTS))
def test_invalid_events_fail_both(case):
    event, reason = INVALID_EVENTS[case]
    assert errors("event", event) != []
    out = decode(json.dumps(event).encode(), "examples:1")  # the stdlib writes integers beyond 64 bits
    assert isinstance(out, DeadLetter) and out.reason == reason, out


# ----------------------------------------------------------------------------- triggers

T = parse_ts("2026-11-23T10:46:00Z")
CANDIDATES = {
    "abandoned_cart": Candidate(
        "abandoned_cart", "c1", T, ["cart_idle"],
        {"items": [{"product_id": "p42", "quantity": 2, "price": 59.0}, {"product_id": "p7", "quantity": 1,
                                                                         "price": 0.0}],
         "cart_value": 118.0, "currency": "EUR", "recommendations": ["p43", "p44"]},
        key=str(T), tier="regular"),
    "delay_apology": Candidate(
        "delay_apology", "c1", T, ["carrier_reported"],
        {"order_id": "o1", "promised_delivery_ts": "2026-11-25T17:00:00.000Z", "order_total": 118.0,
         "suggested_credit": 5.9},
        key="o1", tier="vip"),
    "escalation": Candidate(
        "escalation", "c1", T, ["human_requested"],
        {"conversation_id": "conv1", "frustration": 0.83,
         "last_messages": [
             {"sender": "customer", "text": "Where is my parcel?", "ts": "2026-11-25T09:00:00.000Z"},
             {"sender": "bot", "text": "It is on its way.", "ts": "2026-11-25T09:01:00.000Z"},
             {"sender": "customer", "text": "I want to talk to a human. " + "x" * 252,
              "ts": "2026-11-25T09:02:00.000Z"}],
         "customer_tier": "new"},
        key="conv1", tier="new", score=0.83),
    "proactive_outreach": Candidate(
        "proactive_outreach", "c1", T, ["churn_risk"],
        {"churn_probability": 0.91, "signals": ["churn_risk", "late_delivery", "returns"],
         "suggested_offer": "discount_10_percent", "recommendations": []},
        key=f"churn_risk|{T}", tier="regular", score=0.91, threshold=0.7),
}


def test_every_trigger_type_has_an_example():
    assert set(CANDIDATES) == set(TRIGGER_TYPES)


@pytest.mark.parametrize("type", TRIGGER_TYPES)
def test_triggers_validate(type):
    trig = CANDIDATES[type].to_trigger(EMITTED_AT)
    assert errors("trigger", trig) == []
    assert trig["schema_version"] == 2 and trig["event_ts"] == "2026-11-23T10:46:00.000Z"
    # deterministic id, and the record survives JSON
    assert trig["trigger_id"] == CANDIDATES[type].to_trigger("2027-01-01T00:00:00.000Z")["trigger_id"]
    assert errors("trigger", orjson.loads(orjson.dumps(trig))) == []


def test_a_shops_own_trigger_type_validates_and_a_malformed_one_does_not():
    own = Candidate("wishlist_reminder", "c1", T, ["wishlisted"], {"product_id": "p7"}, key="p7", policy_class="marketing")
    assert errors("trigger", own.to_trigger(EMITTED_AT)) == []
    assert errors("trigger", {**own.to_trigger(EMITTED_AT), "type": "Back In Stock!"}) != []


@pytest.mark.parametrize("type", TRIGGER_TYPES)
def test_triggers_without_a_score_validate(type):
    c = copy.deepcopy(CANDIDATES[type])
    c.score = None
    for k in ("frustration", "churn_probability"):
        if k in c.payload:
            c.payload[k] = None
    assert errors("trigger", c.to_trigger(EMITTED_AT)) == []


BROKEN_PAYLOADS = {
    "abandoned_cart": [("items", None), ("cart_value", None), ("recommendations", None)],
    "delay_apology": [("order_id", None), ("promised_delivery_ts", None), ("order_total", None),
                      ("suggested_credit", None)],
    "escalation": [("conversation_id", None), ("frustration", None), ("last_messages", None),
                   ("customer_tier", None), ("customer_tier", "gold"), ("frustration", 1.5)],
    "proactive_outreach": [("churn_probability", None), ("signals", None), ("suggested_offer", None),
                           ("signals", "churn_risk")],
}


@pytest.mark.parametrize("type,field,value", [(t, f, v) for t, cases in BROKEN_PAYLOADS.items() for f, v in cases])
def test_trigger_payload_keys_are_required(type, field, value):
    trig = CANDIDATES[type].to_trigger(EMITTED_AT)
    payload = dict(trig["payload"])
    if value is None:
        del payload[field]
    else:
        payload[field] = value
    assert errors("trigger", {**trig, "payload": payload}) != []


def test_trigger_envelope_is_checked():
    trig = CANDIDATES["escalation"].to_trigger(EMITTED_AT)
    long_msgs = trig["payload"]["last_messages"] + [{"sender": "customer", "text": "4th"}]
    for bad in ({"type": "Birth Day"}, {"type": ""}, {"priority": "critical"}, {"schema_version": 1}, {"score": "high"},
                {"event_ts": "2026-11-23T10:46:00"}, {"event_ts": "2026-11-23T11:46:00+01:00"},
                {"reasons": "cart_idle"}, {"payload": {**trig["payload"], "last_messages": long_msgs}},
                {"payload": {**trig["payload"], "last_messages": [{"sender": "customer", "text": "x" * 281}]}}):
        assert errors("trigger", {**trig, **bad}) != [], bad
    for field in ("trigger_id", "type", "customer_id", "event_ts", "emitted_at", "priority", "reasons", "score",
                  "payload", "schema_version"):
        assert errors("trigger", {k: v for k, v in trig.items() if k != field}) != [], field


def _ev(**kw) -> Event:
    ev = decode(orjson.dumps({"customer_id": "c1", **kw}))
    assert isinstance(ev, Event), ev
    return ev


def test_triggers_from_the_state_machine_validate():
    """Drive CustomerState through a day that produces every trigger type, then check the real payloads."""
    cfg = RuleConfig()
    state = CustomerState("c1")
    events = [
        _ev(event_id="1", type="add_to_cart", ts="2026-11-23T10:00:00Z", session_id="s", product_id="p1",
            price=20.0, quantity=2),
        _ev(event_id="2", type="search", ts="2026-11-23T10:50:00Z", session_id="s", query="how to cancel my account"),
        _ev(event_id="3", type="order_placed", ts="2026-11-23T11:00:00Z", order_id="o1", total=40.0,
            promised_delivery_ts="2026-11-24T11:00:00Z"),
        _ev(event_id="4", type="order_shipped", ts="2026-11-23T12:00:00Z", order_id="o2"),
        _ev(event_id="5", type="order_delayed", ts="2026-11-23T13:00:00Z", order_id="o2"),
        _ev(event_id="6", type="chat_message", ts="2026-11-23T14:00:00Z", conversation_id="cv",
            sender="customer", text="I want to speak to a human agent right now " + "!" * 400),
    ]
    outs: list = []
    for ev in events:
        outs += state.process(ev, cfg)[0]
    outs += state.flush(parse_ts("2026-11-25T00:00:00Z"), cfg)
    candidates = [o for o in outs if isinstance(o, Candidate)]
    candidates += [o.candidate for o in outs if isinstance(o, ScoreRequest) and o.candidate is not None]
    # fill the model scores the way the model step does
    for c in candidates:
        if c.type == "escalation":
            c.payload["frustration"] = c.score = 0.42
        if c.type == "proactive_outreach":
            c.payload["churn_probability"] = c.score = 0.75
    assert {c.type for c in candidates} == set(TRIGGER_TYPES), candidates
    for c in candidates:
        trig = c.to_trigger(EMITTED_AT)
        assert errors("trigger", orjson.loads(orjson.dumps(trig))) == [], trig


def test_contact_policy_fields_validate():
    """Policy's channels and a quiet-hours release are in the schema; unknown channels are not."""
    c = CANDIDATES["abandoned_cart"]
    c.channels, c.released_at = ["email", "push"], parse_ts("2026-11-24T08:00:00Z")
    try:
        trig = c.to_trigger(EMITTED_AT)
        assert errors("trigger", trig) == [] and trig["released_at"] == "2026-11-24T08:00:00.000Z"
        assert errors("trigger", {**trig, "channels": ["fax"]}) != []
    finally:
        c.channels = c.released_at = None


def test_summary_with_contact_policy_validates():
    from flows.dataflow import publish_uplift

    t = _telemetry()
    t.tally("held", "abandoned_cart")
    t.tally("released", "abandoned_cart")
    t.suppress("abandoned_cart", "quiet_returned")
    for group, converted in (("sent", True), ("sent", False), ("holdout", False)):
        t.tally("exposed", "abandoned_cart", group)
        t.tally("outcome", "abandoned_cart", group, converted)
    s = t.summary()
    s["holdout"] = {"abandoned_cart": publish_uplift(t, "abandoned_cart")}
    assert errors("summary", s) == []
    assert s["quiet_hours"]["abandoned_cart"] == {"held": 1, "released": 1, "dropped": {"quiet_returned": 1},
                                                  "still_held": 0}
    assert s["holdout"]["abandoned_cart"]["difference"] == 0.5


def test_suppressed_trigger_record_validates():
    """The record of a suppressed candidate carries emitted_at '' (it was never emitted)."""
    rec = {**CANDIDATES["abandoned_cart"].to_trigger(""), "suppressed": "cooldown"}
    assert errors("trigger", rec) == []


# ----------------------------------------------------------------------------- dead letters


@pytest.mark.parametrize("raw,encoding", [
    (b'{"event_id": "e1"', "utf-8"),
    (b'{"type": "caf\xc3\xa9"}', "utf-8"),
    (b"\xff\xfe\x00garbage", "base64"),
    (b"", "utf-8"),
])
def test_dead_letters_validate(raw, encoding):
    out = decode(raw, "crm.clickstream/0/17")
    assert isinstance(out, DeadLetter)
    record = out.to_json()
    assert errors("deadletter", record) == []
    assert record["raw_encoding"] == encoding and record["source"] == "crm.clickstream/0/17"


@pytest.mark.parametrize("reason", REASONS)
def test_every_reason_validates(reason):
    assert errors("deadletter", DeadLetter(b"x", "events.jsonl:3", reason, "detail").to_json()) == []


def test_dead_letter_schema_rejects_unknown_reason_and_encoding():
    record = DeadLetter(b"x", "f:1", "malformed_json").to_json()
    assert errors("deadletter", {**record, "reason": "bad_vibes"}) != []
    assert errors("deadletter", {**record, "raw_encoding": "latin-1"}) != []
    assert errors("deadletter", {**record, "raw_encoding": "base64", "raw": "not base64!"}) != []


# ----------------------------------------------------------------------------- summary


def _telemetry() -> Telemetry:
    t = Telemetry()
    for _ in range(5):
        t.read("crm.clickstream", "add_to_cart")
    t.dead_letter("malformed_json")
    t.status("duplicate")
    t.status("late")
    t.trigger("abandoned_cart")
    t.suppress("proactive_outreach", "cooldown")
    return t


def test_summary_validates():
    s = _telemetry().summary()
    assert errors("summary", s) == []
    assert s["events_read"] == s["events_valid"] + s["events_invalid"] + s["events_duplicate"] == 5


def test_summary_with_models_validates():
    t = _telemetry()
    t.models["churn"] = {"predictions": 120, "labels": 80, "roc_auc": 0.71, "log_loss": 0.55}
    t.models["frustration"] = {"predictions": 3, "labels": 0, "roc_auc": None, "log_loss": None}
    assert errors("summary", orjson.loads(orjson.dumps(t.summary()))) == []
    t.models["churn"]["roc_auc"] = 1.5
    assert errors("summary", t.summary()) != []


def test_empty_summary_validates():
    assert errors("summary", Telemetry().summary()) == []
