"""The contact policy (issue 15): consent, quiet hours, holdout groups and their outcomes.

Unit tests of the pure parts (operators/consent.py, contact.py, outcomes.py, policy.py), the
profile and policy steps chained as the flow chains them with any arrival order within
``lateness`` (:class:`Steps`), and end-to-end replays (tests/test_contact_replay.py).
"""

from __future__ import annotations

import os

from helpers import ev, ms_at
from hypothesis import HealthCheck, given, settings, strategies as st

from config.settings import load_settings
from connectors.metrics import Telemetry
from flows.dataflow import PolicyLogic, ProfileLogic
from operators.consent import ConsentBook
from operators.contact import PolicyNote, QuietHours, ZoneBook, zone_hint
from operators.events import format_ts, parse_ts, validate
from operators.outcomes import in_holdout, newcombe, uplift, wilson
from operators.policy import PolicyConfig, PolicyState, Tally
from operators.rules import RuleConfig
from operators.messages import Candidate, Notice, Suppressed

ON = dict(consent={"default": "opt_in"}, quiet_hours={"enabled": True},
          holdout={"share": {"abandoned_cart": 0.0, "proactive_outreach": 0.0}})


def pcfg(**groups) -> PolicyConfig:
    return PolicyConfig(load_settings(**{**ON, **groups}))


def cand(type="abandoned_cart", ts="2026-01-05T12:00:00Z", customer="c1", key=None):
    t = parse_ts(ts)
    return Candidate(type, customer, t, ["r"], {}, key or f"{type}|{t}")


def consent(ts, channel="email", purpose="marketing", granted=True, customer="c1"):
    return PolicyNote("consent", customer, parse_ts(ts), (channel, purpose, granted))


def clock(ts, last_night_click=None, customer="c1"):
    return PolicyNote("clock", customer, parse_ts(ts), None if last_night_click is None else parse_ts(last_night_click))


def run(state, cfg, *items):
    """Feed items; return (emitted candidates, [(type, reason)], tallies)."""
    sent, sup, tallies = [], [], []
    for item in items:
        for r in state.decide(item, cfg):
            if type(r) is Candidate:
                sent.append(r)
            elif type(r) is Suppressed:
                sup.append((r.candidate.type, r.reason))
            elif type(r) is Tally:
                tallies.append((r.kind, r.type, r.group, r.converted))
    return sent, sup, tallies


# ----------------------------------------------------------------------------- consent


def test_consent_book_is_read_at_event_time_and_all_sets_every_channel():
    book = ConsentBook()
    book.add(parse_ts("2026-01-05T10:00:00Z"), "all", "marketing", True)
    book.add(parse_ts("2026-01-06T10:00:00Z"), "sms", "marketing", False)
    assert book.channels(parse_ts("2026-01-05T09:00:00Z"), "marketing", False) == []
    assert book.channels(parse_ts("2026-01-05T11:00:00Z"), "marketing", False) == ["email", "sms", "push"]
    assert book.channels(parse_ts("2026-01-06T11:00:00Z"), "marketing", False) == ["email", "push"]
    assert book.channels(parse_ts("2026-01-06T11:00:00Z"), "service", True) == ["email", "sms", "push"]
    book.add(parse_ts("2026-01-05T12:00:00Z"), "push", "marketing", False)  # arriving late, in event time
    assert book.channels(parse_ts("2026-01-05T13:00:00Z"), "marketing", False) == ["email", "sms"]


def test_no_consent_suppresses_marketing_under_opt_in_but_not_opt_out():
    sent, sup, _ = run(PolicyState(), pcfg(), cand())
    assert sent == [] and sup == [("abandoned_cart", "no_consent")]
    sent, sup, _ = run(PolicyState(), pcfg(consent={"default": "opt_out"}), cand())
    assert [c.channels for c in sent] == [["email", "sms", "push"]] and sup == []


def test_emitted_marketing_carries_the_consented_channels_and_revocation_stops_it():
    cfg, s = pcfg(), PolicyState()
    sent, _, _ = run(s, cfg, consent("2026-01-05T09:00:00Z", "email"), consent("2026-01-05T09:00:00Z", "push"),
                     cand(ts="2026-01-05T12:00:00Z"))
    assert sent[0].channels == ["email", "push"] and sent[0].to_trigger()["channels"] == ["email", "push"]
    _, sup, _ = run(s, cfg, consent("2026-01-06T09:00:00Z", "all", granted=False),
                    cand(ts="2026-01-07T12:00:00Z"))
    assert sup == [("abandoned_cart", "no_consent")]


def test_service_is_never_held_back_by_marketing_consent_or_quiet_hours():
    cfg, s = pcfg(), PolicyState()
    sent, sup, tallies = run(s, cfg, consent("2026-01-05T09:00:00Z", "all", granted=False),
                             consent("2026-01-05T09:00:00Z", "sms", "service", False),
                             cand("delay_apology", "2026-01-05T23:30:00Z", key="o1"),
                             cand("escalation", "2026-01-05T23:40:00Z", key="cv1"))
    assert [(c.type, c.channels, c.released_at) for c in sent] == [
        ("delay_apology", ["email", "push"], None), ("escalation", ["email", "push"], None)]
    assert sup == [] and tallies == []


# ----------------------------------------------------------------------------- quiet hours


def test_quiet_hours_release_times_in_zones_offsets_and_across_midnight():
    q = QuietHours("21:00", "08:00", "UTC")
    assert q.release(parse_ts("2026-01-05T22:30:00Z"), "UTC") == parse_ts("2026-01-06T08:00:00Z")
    assert q.release(parse_ts("2026-01-06T07:59:00Z"), "UTC") == parse_ts("2026-01-06T08:00:00Z")
    assert q.release(parse_ts("2026-01-06T08:00:00Z"), "UTC") is None
    assert q.release(parse_ts("2026-01-05T20:59:00Z"), "UTC") is None
    # 20:30 UTC is 21:30 in Paris (winter): held until 08:00 Paris = 07:00 UTC
    assert q.release(parse_ts("2026-01-05T20:30:00Z"), "Europe/Paris") == parse_ts("2026-01-06T07:00:00Z")
    # summer time: 08:00 Paris is 06:00 UTC
    assert q.release(parse_ts("2026-07-05T20:30:00Z"), "Europe/Paris") == parse_ts("2026-07-06T06:00:00Z")
    assert q.release(parse_ts("2026-01-05T16:00:00Z"), "+05:30") == parse_ts("2026-01-06T02:30:00Z")
    assert QuietHours("01:00", "05:00", "UTC").release(parse_ts("2026-01-05T02:00:00Z"), "UTC") \
        == parse_ts("2026-01-05T05:00:00Z")
    assert QuietHours("21:00", "08:00", "UTC", enabled=False).release(parse_ts("2026-01-05T23:00:00Z"), "UTC") is None


def test_zone_comes_from_a_timezone_field_else_a_ts_offset_never_from_z():
    assert zone_hint(ev("page_view", "2026-01-05T10:00:00Z", timezone="Asia/Tokyo")) == (2, "Asia/Tokyo")
    assert zone_hint(ev("page_view", "2026-01-05T11:00:00+01:00")) == (1, "+01:00")
    assert zone_hint(ev("page_view", "2026-01-05T10:00:00Z")) is None
    assert zone_hint(ev("order_placed", "2026-01-05T11:00:00+01:00")) is None  # clickstream only
    assert zone_hint(ev("page_view", "2026-01-05T10:00:00Z", timezone="Mars/Olympus")) is None
    assert zone_hint(ev("page_view", "2026-01-05T10:00:00Z", timezone="../../etc/passwd")) is None
    book = ZoneBook()
    book.add(parse_ts("2026-01-05T10:00:00Z"), 1, "+01:00")
    book.add(parse_ts("2026-01-06T10:00:00Z"), 1, "-05:00")
    assert book.at(parse_ts("2026-01-05T09:00:00Z"), "UTC") == "+01:00"  # before the first: the first
    assert book.at(parse_ts("2026-01-06T11:00:00Z"), "UTC") == "-05:00"
    book.add(parse_ts("2026-01-07T10:00:00Z"), 2, "Asia/Tokyo")
    assert book.at(parse_ts("2026-01-08T10:00:00Z"), "UTC") == "Asia/Tokyo"


def test_night_marketing_is_held_and_released_with_its_trigger_id_and_event_ts():
    cfg, s = pcfg(consent={"default": "opt_out"}), PolicyState()
    c = cand(ts="2026-01-05T22:30:00Z")
    tid = c.trigger_id
    sent, sup, tallies = run(s, cfg, c)
    assert sent == [] and sup == [] and tallies == [("held", "abandoned_cart", "", False)]
    sent, _, _ = run(s, cfg, clock("2026-01-06T07:00:00Z"))
    assert sent == []  # not yet morning
    sent, _, tallies = run(s, cfg, clock("2026-01-06T08:00:00Z"))
    [out] = sent
    trig = out.to_trigger()
    assert trig["trigger_id"] == tid and trig["event_ts"] == "2026-01-05T22:30:00.000Z"
    assert trig["released_at"] == "2026-01-06T08:00:00.000Z"
    assert ("released", "abandoned_cart", "", False) in tallies


def test_held_marketing_is_dropped_when_its_reason_is_gone_by_morning():
    cfg = pcfg(consent={"default": "opt_out"})
    # bought overnight
    s = PolicyState()
    _, sup, _ = run(s, cfg, cand(ts="2026-01-05T22:30:00Z"), Notice("order_placed", "c1", parse_ts("2026-01-06T06:00:00Z"), "o1"),
                    clock("2026-01-06T08:00:00Z"))
    assert sup == [("abandoned_cart", "quiet_purchased")]
    # back on the site at night: the cart is in front of them
    _, sup, _ = run(PolicyState(), cfg, cand(ts="2026-01-05T22:30:00Z"),
                    clock("2026-01-06T08:00:00Z", last_night_click="2026-01-05T23:10:00Z"))
    assert sup == [("abandoned_cart", "quiet_returned")]
    # a click before the candidate is not a return
    sent, sup, _ = run(PolicyState(), cfg, cand(ts="2026-01-05T22:30:00Z"),
                       clock("2026-01-06T08:00:00Z", last_night_click="2026-01-05T22:00:00Z"))
    assert len(sent) == 1 and sup == []
    # outreach: only a new session (session_gap after it) is a return
    sent, _, _ = run(PolicyState(), cfg, cand("proactive_outreach", "2026-01-05T22:30:00Z"),
                     clock("2026-01-06T08:00:00Z", last_night_click="2026-01-05T22:45:00Z"))
    assert len(sent) == 1
    _, sup, _ = run(PolicyState(), cfg, cand("proactive_outreach", "2026-01-05T22:30:00Z"),
                    clock("2026-01-06T08:00:00Z", last_night_click="2026-01-06T02:00:00Z"))
    assert sup == [("proactive_outreach", "quiet_returned")]
    # consent revoked overnight
    _, sup, _ = run(PolicyState(), pcfg(), consent("2026-01-05T09:00:00Z"), cand(ts="2026-01-05T22:30:00Z"),
                    consent("2026-01-06T01:00:00Z", granted=False), clock("2026-01-06T08:00:00Z"))
    assert sup == [("abandoned_cart", "no_consent")]


def test_the_customers_zone_moves_the_night():
    cfg, s = pcfg(consent={"default": "opt_out"}), PolicyState()
    run(s, cfg, PolicyNote("zone", "c1", parse_ts("2026-01-05T00:00:00Z"), (2, "America/New_York")))
    sent, _, _ = run(s, cfg, cand(ts="2026-01-05T23:30:00Z"))  # 18:30 in New York: daytime
    assert len(sent) == 1
    _, _, tallies = run(s, cfg, cand("proactive_outreach", ts="2026-01-06T03:00:00Z"))  # 22:00 in New York
    assert tallies == [("held", "proactive_outreach", "", False)]
    assert s.held[0][0] == parse_ts("2026-01-06T13:00:00Z")  # 08:00 New York


# ----------------------------------------------------------------------------- holdouts and outcomes


def test_holdout_assignment_is_stable_keyed_and_has_its_share():
    key = b"k"
    ids = [f"c{i}" for i in range(20000)]
    held = [i for i in ids if in_holdout(i, "abandoned_cart", 0.05, key)]
    assert 0.045 < len(held) / len(ids) < 0.055
    assert held == [i for i in ids if in_holdout(i, "abandoned_cart", 0.05, key)]
    assert held != [i for i in ids if in_holdout(i, "abandoned_cart", 0.05, b"other key")]
    assert held != [i for i in ids if in_holdout(i, "proactive_outreach", 0.05, key)]
    assert not any(in_holdout(i, "delay_apology", 0.0, key) for i in ids)


def test_holdout_suppresses_and_both_groups_track_orders_in_the_window():
    cfg = pcfg(consent={"default": "opt_out"}, quiet_hours={"enabled": False},
               holdout={"share": {"abandoned_cart": 0.5}, "attribution": {"abandoned_cart": 86400}})
    key = cfg.contact.key
    ids = [f"c{i}" for i in range(40)]
    inside = next(i for i in ids if in_holdout(i, "abandoned_cart", 0.5, key))
    outside = next(i for i in ids if not in_holdout(i, "abandoned_cart", 0.5, key))
    results = {}
    for cid in (inside, outside):
        s = PolicyState()
        c = cand(ts="2026-01-05T12:00:00Z", customer=cid)
        sent, sup, tallies = run(s, cfg, c, Notice("order_placed", cid, parse_ts("2026-01-06T11:00:00Z"), "o1"),
                                 clock("2026-01-06T12:00:00Z", customer=cid))
        results[cid] = (len(sent), sup, tallies)
    assert results[inside][1] == [("abandoned_cart", "holdout")]
    assert results[outside][0] == 1
    assert ("outcome", "abandoned_cart", "holdout", True) in results[inside][2]
    assert ("outcome", "abandoned_cart", "sent", True) in results[outside][2]
    # an order after the window is no conversion
    s = PolicyState()
    _, _, tallies = run(s, cfg, cand(ts="2026-01-05T12:00:00Z", customer=outside),
                        clock("2026-01-06T12:00:00Z", customer=outside),
                        Notice("order_placed", outside, parse_ts("2026-01-06T12:30:00Z"), "o2"))
    assert ("outcome", "abandoned_cart", "sent", False) in tallies


def test_newcombe_interval_matches_the_published_examples():
    # Newcombe (1998), Table II, method 10: 56/70 - 48/80 and 9/10 - 3/10
    lo, hi = newcombe(56, 70, 48, 80)
    assert round(lo, 4) == 0.0524 and round(hi, 4) == 0.3339
    lo, hi = newcombe(9, 10, 3, 10)
    assert round(lo, 4) == 0.1705 and round(hi, 4) == 0.8090
    assert wilson(0, 10, 1.96)[0] == 0.0 and newcombe(1, 0, 1, 2) is None
    u = uplift({"sent": {"n": 100, "converted": 30, "open": 4}, "holdout": {"n": 0, "converted": 0}})
    assert u["sent"]["rate"] == 0.3 and u["difference"] is None and u["ci95"] is None


# ----------------------------------------------------------------------------- the two steps, any arrival order


class _End:
    drain = False

    def __init__(self):
        self.latest = 0

    def read(self) -> int:
        return self.latest


class Steps:
    """Profile and policy steps (flows/dataflow.py) of each customer, chained as the flow chains
    them (no models: every candidate goes straight on), fed one event a batch, then end of input."""

    def __init__(self, **groups):
        s = load_settings(**{**ON, **groups})
        self.rules, self.pcfg, self.t = RuleConfig(s), PolicyConfig(s), Telemetry()
        self.rules.contact = self.pcfg.contact
        self.end = _End()
        self.profiles: dict = {}
        self.policies: dict = {}
        self.out: list = []

    def _down(self, items: list) -> None:
        from operators.messages import ScoreRequest

        for o in items:
            if type(o) is ScoreRequest:
                o = o.candidate
            if type(o) not in (Candidate, Notice, PolicyNote):
                continue
            p = self.policies.get(o.customer_id)
            if p is None:
                p = self.policies[o.customer_id] = PolicyLogic(self.pcfg, self.t, None, recovery=False)
            for r in p.on_batch([o])[0]:
                if type(r) is Candidate:
                    trig = r.to_trigger("")
                    self.out.append(("sent", trig["type"], trig["customer_id"], trig["trigger_id"], trig["event_ts"],
                                     trig.get("released_at"), tuple(trig["channels"])))
                elif type(r) is Suppressed:
                    self.out.append(("suppressed", r.candidate.type, r.candidate.customer_id,
                                     r.candidate.trigger_id, r.reason))

    def feed(self, events) -> "Steps":
        for e in events:
            self.end.latest = max(self.end.latest, e.ts)
            logic = self.profiles.get(e.customer_id)
            if logic is None:
                logic = self.profiles[e.customer_id] = ProfileLogic(self.rules, False, self.t, None, self.end, "none",
                                                                    False)
            self._down(logic.on_batch([e])[0])
        for logic in self.profiles.values():
            self._down(logic.on_eof()[0])
        return self

    def result(self) -> list:
        return sorted(self.out, key=repr)


_n = iter(range(10**9))


def _e(type, ts_ms, customer, **fields) -> object:
    base = {"event_id": f"x{next(_n)}", "type": type, "customer_id": customer, "ts": format_ts(ts_ms), **fields}
    if type in ("page_view", "add_to_cart", "checkout_started"):
        base["session_id"] = "s"
    if type == "add_to_cart":
        base.update(product_id="p1", price=5.0)
    if type == "order_placed":
        base.update(order_id=f"o{next(_n)}", total=5.0)
    return validate(base)


@st.composite
def night_histories(draw):
    """Two customers over two days: consent changes, carts (some at night), orders and visits at
    any hour; one customer writes ts with a +02:00 offset."""
    start = parse_ts("2026-03-02T16:00:00Z")
    events = []
    for cust in ("a", "b"):
        t = start
        for _ in range(draw(st.integers(3, 12))):
            t += draw(st.integers(1, 240)) * 60_000
            kind = draw(st.sampled_from(["add_to_cart", "add_to_cart", "page_view", "order_placed", "consent"]))
            if kind == "consent":
                events.append(_e("consent_updated", t, cust, channel=draw(st.sampled_from(["email", "all", "sms"])),
                                 purpose="marketing", granted=draw(st.booleans())))
            else:
                e = _e(kind, t, cust)
                if cust == "b" and kind != "order_placed":  # the same instant written in local time
                    local = format_ts(t + 2 * 3600_000)[:-1] + "+02:00"
                    e = validate({**e.data, "ts": local})
                events.append(e)
    events.append(_e("page_view", start + 3 * 86400_000, "z"))  # the replay's end: every night is over
    return sorted(events, key=lambda e: e.ts)


@st.composite
def arrivals(draw):
    events = draw(night_histories())
    delays = [draw(st.integers(0, 5 * 60_000)) for _ in events]
    arrival = [e for _, _, e in sorted(zip((e.ts + d for e, d in zip(events, delays)), range(len(events)), events))]
    return events, arrival


@settings(max_examples=int(os.environ.get("ARRIVAL_EXAMPLES", 150)) // 2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(arrivals())
def test_consent_quiet_hours_and_holdouts_do_not_depend_on_arrival_order(case):
    in_order, arrival = case
    groups = dict(holdout={"share": {"abandoned_cart": 0.3}})
    a = Steps(**groups).feed(in_order)
    b = Steps(**groups).feed(arrival)
    assert a.result() == b.result()
    assert {k: v for k, v in a.t.counts.items() if ":" in k} == {k: v for k, v in b.t.counts.items() if ":" in k}


def test_the_steps_hold_a_night_cart_until_local_morning_and_release_it_once():
    a = parse_ts("2026-03-02T19:30:00Z")  # 21:30 at +02:00
    events = [
        _e("consent_updated", a - 3600_000, "b", channel="email", purpose="marketing", granted=True),
        validate({**_e("add_to_cart", a, "b").data, "ts": "2026-03-02T21:30:00+02:00"}),
        _e("page_view", a + 2 * 86400_000, "z"),
    ]
    steps = Steps().feed(events)
    [sent] = [o for o in steps.out if o[0] == "sent"]
    assert sent[4] == "2026-03-02T20:00:00.000Z" and sent[5] == "2026-03-03T06:00:00.000Z"  # 08:00 at +02:00
    assert sent[6] == ("email",)
    assert steps.t.counts["quiet:abandoned_cart:held"] == 1 and steps.t.counts["quiet:abandoned_cart:released"] == 1
