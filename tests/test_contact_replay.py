"""End to end through ``crm-stream replay``: consent, quiet hours, holdout groups (issue 15)."""

from __future__ import annotations

from pathlib import Path

import orjson

from config.settings import load_settings
from flows.replay import ReplayOutputs, replay
from operators.outcomes import in_holdout

ON = dict(consent={"default": "opt_in"}, quiet_hours={"enabled": True},
          holdout={"share": {"abandoned_cart": 0, "proactive_outreach": 0}})


def write(path: Path, events: list) -> Path:
    path.write_bytes(b"".join((e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in events))
    return path


def run(tmp_path: Path, events: list, name: str = "out", drain: bool = False, **groups):
    log = write(tmp_path / f"{name}.jsonl", sorted(events, key=lambda x: x["ts"]))  # a log in ts order
    out = ReplayOutputs(tmp_path / f"{name}.t.jsonl", tmp_path / f"{name}.dlq.jsonl", tmp_path / f"{name}.s.json",
                        None, tmp_path / f"{name}.sup.jsonl")
    summary = replay(load_settings(**{**ON, **groups}), [log], out, drain=drain)
    read = lambda p: [orjson.loads(x) for x in p.read_bytes().splitlines()]  # noqa: E731
    return summary, read(out.triggers), read(out.suppressed), read(out.dlq)


_i = iter(range(10**6))


def e(type, customer, ts, **fields):
    base = {"event_id": f"e{next(_i)}", "type": type, "customer_id": customer, "ts": ts}
    if type in ("page_view", "add_to_cart", "search"):
        base["session_id"] = "s"
    if type == "add_to_cart":
        base.update(product_id="p1", price=10.0)
    if type.startswith("order_"):
        base["order_id"] = fields.pop("order_id", f"o{next(_i)}")
    if type == "order_placed":
        base["total"] = 10.0
    return {**base, **fields}


def consent(customer, ts, channel="email", granted=True, purpose="marketing"):
    return e("consent_updated", customer, ts, channel=channel, purpose=purpose, granted=granted)


def test_consent_replay_sends_to_consented_channels_suppresses_the_rest_and_dead_letters_bad_values(tmp_path):
    events = [
        consent("yes", "2026-01-05T09:00:00Z", "email"),
        consent("yes", "2026-01-05T09:00:00Z", "push"),
        consent("revoked", "2026-01-05T09:00:00Z", "all"),
        consent("revoked", "2026-01-05T10:10:00Z", "all", granted=False),
        e("add_to_cart", "yes", "2026-01-05T10:00:00Z"),
        e("add_to_cart", "never", "2026-01-05T10:00:00Z"),
        e("add_to_cart", "revoked", "2026-01-05T10:00:00Z"),
        # service: an apology goes out without any consent event
        e("order_placed", "never", "2026-01-05T11:00:00Z", order_id="o1", promised_delivery_ts="2026-01-05T12:00:00Z"),
        e("consent_updated", "bad", "2026-01-05T11:00:00Z", channel="fax", purpose="marketing", granted=True),
        e("consent_updated", "bad", "2026-01-05T11:00:00Z", channel="email", purpose="marketing", granted="yes"),
        e("page_view", "z", "2026-01-05T18:00:00Z"),
    ]
    summary, triggers, suppressed, dlq = run(tmp_path, events)
    got = sorted((t["customer_id"], t["type"], tuple(t["channels"])) for t in triggers)
    assert got == [("never", "delay_apology", ("email", "sms", "push")), ("yes", "abandoned_cart", ("email", "push"))]
    assert sorted((s["customer_id"], s["suppressed"]) for s in suppressed) == [("never", "no_consent"),
                                                                             ("revoked", "no_consent")]
    assert summary["suppressed_by_reason"]["abandoned_cart"] == {"no_consent": 2}
    assert sorted(d["reason"] for d in dlq) == ["wrong_type", "wrong_type"]
    assert summary["events_read"] == summary["events_valid"] + summary["events_invalid"] == len(events)
    # with opt_out, a customer who never said anything gets marketing on every channel
    _, triggers, _, _ = run(tmp_path, events, name="optout", consent={"default": "opt_out"})
    assert ("never", "abandoned_cart", ("email", "sms", "push")) in {
        (t["customer_id"], t["type"], tuple(t["channels"])) for t in triggers}


def test_quiet_hours_replay_holds_night_reminders_in_the_customers_zone(tmp_path):
    events = [
        consent(c, "2026-01-05T08:00:00Z", "all") for c in ("paris", "offset", "utc", "back", "bought")
    ] + [
        e("add_to_cart", "paris", "2026-01-05T20:00:00Z", timezone="Europe/Paris"),  # due 21:30 Paris
        e("add_to_cart", "offset", "2026-01-05T15:00:00-05:00"),  # due 15:30 in New York: daytime
        e("add_to_cart", "utc", "2026-01-05T23:00:00Z"),  # no zone: the default (UTC)
        e("add_to_cart", "back", "2026-01-05T22:00:00Z"),
        e("page_view", "back", "2026-01-06T01:00:00Z"),  # came back at night
        e("add_to_cart", "bought", "2026-01-05T22:00:00Z"),
        e("order_placed", "bought", "2026-01-06T07:00:00Z"),
        e("page_view", "z", "2026-01-07T12:00:00Z"),
    ]
    summary, triggers, suppressed, _ = run(tmp_path, events)
    got = {t["customer_id"]: (t["event_ts"], t.get("released_at")) for t in triggers}
    assert got == {
        "paris": ("2026-01-05T20:30:00.000Z", "2026-01-06T07:00:00.000Z"),  # 08:00 Paris
        "offset": ("2026-01-05T20:30:00.000Z", None),
        "utc": ("2026-01-05T23:30:00.000Z", "2026-01-06T08:00:00.000Z"),
    }
    assert sorted((s["customer_id"], s["suppressed"]) for s in suppressed) == [
        ("back", "quiet_returned"), ("bought", "quiet_purchased")]
    q = summary["quiet_hours"]["abandoned_cart"]
    assert q["held"] == 4 and q["released"] == 4 and q["still_held"] == 0
    assert q["dropped"] == {"quiet_purchased": 1, "quiet_returned": 1}
    # the trigger_id is the one the same cart gets with quiet hours off
    _, plain, _, _ = run(tmp_path, events, name="plain", quiet_hours={"enabled": False})
    assert {t["trigger_id"] for t in triggers} <= {t["trigger_id"] for t in plain}


def test_a_night_not_over_at_the_end_of_a_replay_stays_held_unless_drained(tmp_path):
    events = [consent("c", "2026-01-05T08:00:00Z"), e("add_to_cart", "c", "2026-01-05T22:00:00Z"),
              e("page_view", "z", "2026-01-06T03:00:00Z")]
    summary, triggers, _, _ = run(tmp_path, events)
    assert triggers == [] and summary["quiet_hours"]["abandoned_cart"]["still_held"] == 1
    summary, triggers, _, _ = run(tmp_path, events, name="drained", drain=True)
    assert [t["released_at"] for t in triggers] == ["2026-01-06T08:00:00.000Z"]


def test_holdout_replay_measures_conversion_of_both_groups(tmp_path):
    key = load_settings().holdout.key.encode()
    customers = [f"h{i}" for i in range(60)]
    events = []
    for i, c in enumerate(customers):
        events.append(consent(c, "2026-01-05T08:00:00Z"))
        events.append(e("add_to_cart", c, "2026-01-05T10:00:00Z"))
        if i % 2 == 0:  # half of them buy within a day of the reminder, a few only after the window
            events.append(e("order_placed", c, "2026-01-05T18:00:00Z"))
        elif i % 7 == 0:
            events.append(e("order_placed", c, "2026-01-06T12:00:00Z"))
    events.append(e("page_view", "z", "2026-01-08T00:00:00Z"))
    events.sort(key=lambda x: x["ts"])
    summary, triggers, suppressed, _ = run(tmp_path, events, holdout={"share": {"abandoned_cart": 0.3}})
    held = {c for c in customers if in_holdout(c, "abandoned_cart", 0.3, key)}
    assert 5 < len(held) < 35
    assert {s["customer_id"] for s in suppressed if s["suppressed"] == "holdout"} == held
    assert {t["customer_id"] for t in triggers} == set(customers) - held
    h = summary["holdout"]["abandoned_cart"]
    want = {g: sum(1 for i, c in enumerate(customers) if (c in held) == (g == "holdout") and i % 2 == 0)
            for g in ("sent", "holdout")}
    assert h["sent"]["n"] == len(customers) - len(held) and h["holdout"]["n"] == len(held)
    assert h["sent"]["converted"] == want["sent"] and h["holdout"]["converted"] == want["holdout"]
    lo, hi = h["ci95"]
    assert lo <= h["difference"] <= hi and h["sent"]["open"] == h["holdout"]["open"] == 0


def test_generated_customers_consent_revoke_and_tell_their_zone(tmp_path):
    from flows.generator import generate

    generate(300, 7, 3, tmp_path, bad_share=0.0)
    lines = [orjson.loads(x) for x in (tmp_path / "events.jsonl").read_bytes().splitlines()]
    consent = [x for x in lines if x["type"] == "consent_updated"]
    granted = {x["customer_id"] for x in consent if x["granted"] and x["channel"] == "email"}
    revoked = {x["customer_id"] for x in consent if not x["granted"]} & granted
    refused = {x["customer_id"] for x in consent if not x["granted"]} - granted
    assert 0.75 < len(granted) / 300 < 0.9 and revoked and refused
    assert {x.get("timezone") for x in consent} >= {"Europe/Berlin", None}
    assert all(x["purpose"] == "marketing" for x in consent)


def test_an_erased_customer_who_comes_back_has_given_no_consent(tmp_path):
    events = [consent("c", "2026-01-05T08:00:00Z"), e("add_to_cart", "c", "2026-01-05T10:00:00Z"),
              e("page_view", "c", "2026-01-05T11:00:00Z"),  # moves the customer's clock past the cart's due time
              e("erasure_requested", "c", "2026-01-05T12:00:00Z"),
              e("add_to_cart", "c", "2026-01-05T14:00:00Z"), e("page_view", "z", "2026-01-05T18:00:00Z")]
    _, triggers, suppressed, _ = run(tmp_path, events)
    assert [t["event_ts"] for t in triggers] == ["2026-01-05T10:30:00.000Z"]
    assert [(s["event_ts"], s["suppressed"]) for s in suppressed] == [("2026-01-05T14:30:00.000Z", "no_consent")]


def test_the_profile_shows_the_customers_consent_now(tmp_path):
    """The API and the agent page read consent from the profile hash (issue 18): the channels
    allowed per purpose after the customer's latest consent change, a late one included."""
    events = [e("page_view", "c1", "2026-03-02T10:00:00Z"), consent("c1", "2026-03-02T10:05:00Z", "all"),
              consent("c1", "2026-03-02T10:01:00Z", "sms", granted=False),  # older, arrives later
              consent("c1", "2026-03-02T10:06:00Z", "push", granted=False, purpose="service")]
    log = write(tmp_path / "c.jsonl", events)  # file order, not ts order
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json", tmp_path / "p.jsonl")
    replay(load_settings(**ON), [log], out)
    [profile] = [p for p in map(orjson.loads, out.profiles.read_bytes().splitlines()) if p["customer_id"] == "c1"]
    assert profile["consent"] == {"marketing": ["email", "sms", "push"], "service": ["email", "sms"]}
