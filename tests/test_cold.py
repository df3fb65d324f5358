"""Cold compaction (operators/cold.py, issue 19): a quiet customer packed into one record and
expanded again behaves exactly as if it had never been packed; pending churn decisions keep
their features packed without changing a bit; rules say when their slice is quiet."""

from __future__ import annotations

import os
import pickle
import time
from array import array

from hypothesis import HealthCheck, given, settings, strategies as st

from config.settings import load_settings
from operators.cold import compact, expand, next_deadline, quiet
from operators.contract_rules import CartEpisode
from operators.customer import CustomerState, pack_features, unpack_features
from operators.events import format_ts, validate
from operators.rules import RuleConfig

DAY = 86_400_000
T0 = 1_767_225_600_000
GAPS = [0, 20_000, 120_000, 1_900_000, 3 * 3_600_000, DAY, 3 * DAY, 9 * DAY, 40 * DAY, 100 * DAY, 200 * DAY]


@st.composite
def histories(draw):
    """One customer's events with gaps from seconds to months (so that quiet moments come), and
    for each event how far the clock moves past it before the next one (as a live timer would)."""
    n = draw(st.integers(2, 18))
    events, t, orders, conv = [], T0, 0, 0
    for i in range(n):
        t += draw(st.sampled_from(GAPS))
        kind = draw(st.sampled_from(["product_view", "add_to_cart", "remove_from_cart", "page_view", "help_view",
                                     "search", "order_placed", "order_life", "chat_message", "chat_closed",
                                     "duplicate"]))
        base = {"event_id": f"h{i}", "customer_id": "c1", "ts": format_ts(t)}
        pid = draw(st.sampled_from(["p1", "p2", "p3"]))
        if kind == "duplicate" and events:  # an earlier event again (inside or outside the duplicate window)
            obj = dict(events[draw(st.integers(0, len(events) - 1))].data)
        elif kind in ("product_view", "add_to_cart", "remove_from_cart", "page_view", "help_view", "search"):
            obj = {**base, "type": kind, "session_id": f"s{i // 3}"}
            if kind != "page_view" and kind not in ("help_view", "search"):
                obj["product_id"] = pid
            if kind == "add_to_cart":
                obj.update(price=draw(st.sampled_from([5.0, 12.5])), quantity=draw(st.integers(1, 2)))
            if kind == "search":
                obj["query"] = draw(st.sampled_from(["shoes", "cancel my order"]))
        elif kind in ("order_placed", "duplicate"):
            orders += 1
            obj = {**base, "type": "order_placed", "order_id": f"o{orders}", "total": 40.0,
                   "items": [{"product_id": pid, "quantity": 1, "price": 40.0}],
                   "promised_delivery_ts": format_ts(t + draw(st.sampled_from([600_000, 3 * DAY])))}
        elif kind == "order_life":
            life = draw(st.sampled_from(["order_shipped", "order_delayed", "order_delivered", "order_cancelled"]))
            obj = {**base, "type": life, "order_id": f"o{draw(st.integers(1, max(1, orders)))}"}
        elif kind == "chat_message":
            obj = {**base, "type": "chat_message", "conversation_id": f"cv{conv}",
                   "sender": draw(st.sampled_from(["customer", "agent"])),
                   "text": draw(st.sampled_from(["hello", "can I speak with a person", "thanks"]))}
        else:
            obj = {**base, "type": "chat_closed", "conversation_id": f"cv{conv}", "csat": draw(st.integers(1, 5))}
            conv += 1
        events.append(validate(obj))
    waits = [draw(st.sampled_from([0, 3_600_000, 8 * DAY, 60 * DAY, 400 * DAY])) for _ in events]
    return events, waits


def canon(o):
    """An output as plain, comparable values (features dicts included, in their order)."""
    if isinstance(o, dict):
        return tuple((k, canon(v)) for k, v in o.items())
    if isinstance(o, (list, tuple)):
        return tuple(canon(v) for v in o)
    if hasattr(o, "__slots__") or hasattr(o, "__dict__"):
        names = [s for c in type(o).__mro__ for s in getattr(c, "__slots__", ())] + sorted(getattr(o, "__dict__", {}))
        return (type(o).__name__,) + tuple((n, canon(getattr(o, n))) for n in names if hasattr(o, n))
    return o


def run(events, waits, cfg: RuleConfig, compacting: bool) -> tuple[list, dict, int]:
    """Feed ``events``; after each, move the frontier ``wait`` past it (timers due by then fire),
    then, if ``compacting``, pack the customer whenever quiet and expand it for the next step."""
    st_: CustomerState | bytes = CustomerState("c1", cfg.recs)
    out, packed = [], 0
    for e, wait in zip(events, waits):
        if type(st_) is bytes:
            st_ = expand(st_, "c1", cfg)
        res, status = st_.process(e, cfg)
        out.append((status, canon(res)))
        out.append(canon(st_.advance(max(st_.clock, e.ts) + wait, cfg)))
        if compacting:
            record = compact(st_, cfg)
            if record is not None:
                assert next_deadline(record) == st_.next_deadline(cfg)
                st_, packed = pickle.loads(pickle.dumps(record)), packed + 1  # as a snapshot would carry it
    if type(st_) is bytes:
        st_ = expand(st_, "c1", cfg)
    out.append(canon(st_.flush(st_.clock + 500 * DAY, cfg)))
    return out, st_.profile(cfg).fields, packed


CFG = RuleConfig(load_settings())


@settings(max_examples=int(os.environ.get("COLD_EXAMPLES", 300)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_compaction_at_any_quiet_moment_changes_no_output_or_profile(case):
    events, waits = case
    plain, profile, _ = run(events, waits, CFG, False)
    packed, profile_packed, _ = run(events, waits, CFG, True)
    assert packed == plain  # triggers, score requests with their features, labels, pairs, notices, in order
    assert profile_packed == profile


def test_a_customer_away_long_enough_is_quiet_and_small():
    cfg = CFG
    events = [validate({"event_id": f"e{i}", "customer_id": "c1", "ts": format_ts(T0 + i * 60_000), **fields})
              for i, fields in enumerate([
                  {"type": "page_view", "session_id": "s"},
                  {"type": "product_view", "session_id": "s", "product_id": "p1"},
                  {"type": "order_placed", "order_id": "o1", "total": 20.0, "promised_delivery_ts": format_ts(T0 + DAY)},
                  {"type": "order_delivered", "order_id": "o1"}])]
    st_ = CustomerState("c1", cfg.recs)
    for e in events:
        st_.process(e, cfg)
    assert compact(st_, cfg) is None  # the session, the order and the reorder buffer are open
    st_.advance(st_.clock + 30 * DAY, cfg)
    assert st_.churn_pending and not quiet(st_, cfg)  # churn decisions wait for their labels
    st_.advance(st_.clock + 365 * DAY, cfg)
    record = compact(st_, cfg)
    assert record is not None and len(record) < 400
    back = expand(record, "c1", cfg)
    assert back.profile(cfg).fields == st_.profile(cfg).fields
    assert back.history.sessions == st_.history.sessions and list(back.recent.recent) == list(st_.recent.recent)


def test_rules_say_whether_their_slice_is_quiet():
    rule = CFG.named["abandoned_cart"]
    st_ = CustomerState("c1")
    assert rule.quiet(st_, None) and rule.quiet(st_, CartEpisode())
    armed = CartEpisode()
    armed.armed = True
    assert not rule.quiet(st_, armed)


def test_pending_features_pack_exactly_and_a_dict_from_an_older_snapshot_still_reads():
    feats = {"a": 0.1, "b": -0.0, "c": float("inf"), "d": 1e-300}
    packed = pack_features(feats)
    assert type(packed) is tuple and type(packed[1]) is array
    back = unpack_features(packed)
    assert list(back) == list(feats) and all(repr(back[k]) == repr(v) for k, v in feats.items())
    assert pack_features({"a": 1.0})[0] is pack_features({"a": 2.0})[0]  # one names tuple per layout
    again = pickle.loads(pickle.dumps(packed))
    assert again[0] is packed[0] and unpack_features(again) == back  # shared again when unpickled
    assert pack_features({"a": 1}) == {"a": 1}  # not all floats: kept as it is
    assert unpack_features(feats) is feats


def test_a_live_profile_step_packs_a_quiet_customer_keeps_it_packed_in_its_snapshot_and_thaws_it(monkeypatch):
    """The engine's side (flows.dataflow.ProfileLogic, live): once the timers that fire while the
    customer stays away leave it quiet, the step keeps the record only; a snapshot carries the
    record; the next event thaws it, with the same outputs as a step that never packed."""
    import flows.dataflow as dataflow
    from connectors.metrics import reset_telemetry
    from operators.policy import PolicyConfig

    settings = load_settings()
    rules, t = RuleConfig(settings), reset_telemetry()
    rules.contact = PolicyConfig(settings).contact
    events = [validate({"event_id": f"e{i}", "customer_id": "c1", "ts": format_ts(T0 + i * 60_000), **fields})
              for i, fields in enumerate([
                  {"type": "page_view", "session_id": "s"},
                  {"type": "add_to_cart", "session_id": "s", "product_id": "p1", "price": 5.0},
                  {"type": "order_placed", "order_id": "o1", "total": 5.0, "promised_delivery_ts": format_ts(T0 + DAY),
                   "items": [{"product_id": "p1", "quantity": 1, "price": 5.0}]},
                  {"type": "order_delivered", "order_id": "o1"}])]
    back = validate({"event_id": "e9", "customer_id": "c1", "ts": format_ts(T0 + 400 * DAY),
                     "type": "product_view", "session_id": "s2", "product_id": "p2"})
    for i, e in enumerate(events + [back]):
        e.pos = i

    def live(pack: bool):
        if not pack:
            monkeypatch.setattr(dataflow, "compact", lambda st, cfg: None)
        logic = dataflow.ProfileLogic(rules, True, t, None, None, "batch", True)
        for e in events:
            logic.on_batch([e])
        outs = []
        for days in (1, 30, 120, 390):  # the wall clock moves on while the customer stays away
            logic.wall_at_clock = time.time() - days * DAY / 1000
            outs.append(canon(logic.on_notify()[0]))
        monkeypatch.undo()
        return logic, outs

    packed, outs_packed = live(True)
    plain, outs_plain = live(False)
    assert outs_packed == outs_plain
    assert packed.state is None and packed.cold is not None and plain.cold is None
    assert packed.notify_at() == plain.notify_at()  # the rescore schedule, from the record's header
    resumed = dataflow.ProfileLogic(rules, True, t, packed.snapshot(), None, "batch", True)
    # smaller than even the full state compressed (flows.state_codec); in memory the gap is far larger
    assert resumed.cold == packed.cold and len(packed.snapshot()) < len(plain.snapshot())
    plain = dataflow.ProfileLogic(rules, True, t, plain.snapshot(), None, "batch", True)  # both resumed alike
    out_resumed, out_plain = resumed.on_batch([back])[0], plain.on_batch([back])[0]
    assert any(type(o).__name__ == "ProfileUpdate" for o in out_plain)
    assert canon(out_resumed) == canon(out_plain) and resumed.cold is None


def test_a_resumed_customer_stays_pickled_until_woken_and_then_behaves_as_an_eager_resume():
    """Lazy resume (issue 19, recovery at scale): a snapshot of a customer with a full state
    resumes as its pickle plus a header (customer, clock, due); ``notify_at`` reads the header, so
    Bytewax's resume of every key costs no unpickling; the first event unpickles it, with exactly
    the outputs, timers and next snapshot of a customer resumed from the older eager format."""
    import flows.dataflow as dataflow
    from connectors.metrics import reset_telemetry

    settings = load_settings()
    rules, t = RuleConfig(settings), reset_telemetry()
    events = [validate({"event_id": f"e{i}", "customer_id": "c1", "ts": format_ts(T0 + i * 60_000), **fields})
              for i, fields in enumerate([
                  {"type": "page_view", "session_id": "s"},
                  {"type": "add_to_cart", "session_id": "s", "product_id": "p1", "price": 5.0}])]
    nxt = validate({"event_id": "e9", "customer_id": "c1", "ts": format_ts(T0 + 2 * DAY),
                    "type": "product_view", "session_id": "s2", "product_id": "p2"})
    for i, e in enumerate(events + [nxt]):
        e.pos = i
    logic = dataflow.ProfileLogic(rules, True, t, None, None, "batch", True)
    logic.on_batch(events)
    snap = logic.snapshot()
    saved = pickle.loads(snap)
    assert saved[0] == dataflow.LAZY and saved[2:5] == ("c1", logic.state.clock, logic.state.next_deadline(rules))
    eager_snap = pickle.dumps((logic.state, saved[1]))  # the format snapshots had before
    lazy = dataflow.ProfileLogic(rules, True, t, snap, None, "batch", True)
    eager = dataflow.ProfileLogic(rules, True, t, eager_snap, None, "batch", True)
    assert lazy.state is None and lazy.frozen is not None and eager.state is not None
    assert abs(lazy.notify_at().timestamp() - eager.notify_at().timestamp()) < 0.05
    again = pickle.loads(lazy.snapshot())  # not woken: the same pickle, still lazy
    assert again[0] == dataflow.LAZY and again[5] == saved[5]
    out_lazy, out_eager = lazy.on_batch([nxt])[0], eager.on_batch([nxt])[0]
    assert lazy.frozen is None and canon(out_lazy) == canon(out_eager) and out_lazy
    assert canon(lazy.state) == canon(eager.state)
    assert abs(lazy.notify_at().timestamp() - eager.notify_at().timestamp()) < 0.05


def test_a_lazy_snapshot_holds_its_state_compressed_and_older_plain_pickles_still_resume():
    """The lazy snapshot's state is compressed (flows.state_codec; issue 19: a resumed active
    customer's bytes at rest); a snapshot written before that (the state as a plain pickle) resumes
    to the same customer, with the same outputs at its next event."""
    import flows.dataflow as dataflow
    from flows import state_codec
    from connectors.metrics import reset_telemetry

    settings = load_settings()
    rules, t = RuleConfig(settings), reset_telemetry()
    events = [validate({"event_id": f"e{i}", "customer_id": "c1", "ts": format_ts(T0 + i * 60_000),
                        "type": "product_view", "session_id": "s", "product_id": f"p{i}"}) for i in range(30)]
    nxt = validate({"event_id": "e99", "customer_id": "c1", "ts": format_ts(T0 + 2 * DAY),
                    "type": "add_to_cart", "session_id": "s2", "product_id": "p1", "price": 3.0})
    for i, e in enumerate(events + [nxt]):
        e.pos = i
    logic = dataflow.ProfileLogic(rules, True, t, None, None, "batch", True)
    logic.on_batch(events)
    saved = pickle.loads(logic.snapshot())
    plain = pickle.dumps(logic.state, protocol=pickle.HIGHEST_PROTOCOL)
    assert state_codec.loads(saved[5]).customer_id == "c1" and len(saved[5]) < len(plain) * 0.75
    older = pickle.dumps((*saved[:5], plain))  # the format of the previous release
    new, old = (dataflow.ProfileLogic(rules, True, t, s, None, "batch", True) for s in (logic.snapshot(), older))
    out_new, out_old = new.on_batch([nxt])[0], old.on_batch([nxt])[0]
    assert out_new and canon(out_new) == canon(out_old) and canon(new.state) == canon(old.state)
