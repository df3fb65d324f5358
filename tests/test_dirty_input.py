"""Issue 13, section 4: no value that passes validation may stop the flow.

A hypothesis fuzz drives extreme but schema-valid events (and some invalid ones) through decode ->
the profile step (``CustomerState.process``/``advance`` via the flow's own ``ProfileLogic``, live,
with its timer path ``notify_at``/``on_notify``) -> the model step -> policy -> every sink encoder
(JSONL files, Kafka messages, Redis commands as redis-py packs them), and asserts: nothing raises
(no ``processing_error`` either: the safety net is not the fix), ``events_read = valid + invalid +
duplicate``, every output line is strict JSON, and the models' state stays finite. An end-to-end
replay of a small log of such values completes with a summary and triggers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from config.settings import Settings
from connectors.files import JsonlSink, ProfilesFileSink, customer_of
from connectors.kafka import encode_keyed, encode_unkeyed
from connectors.metrics import Telemetry
from connectors.redis_sink import RedisProfileSink, RedisRecsSink, RedisTriggerSink
from flows.dataflow import ModelLogic, PolicyLogic, ProfileLogic, make_decoder, _wall_datetime
from models.shard import ModelShard, finite
from operators.events import DeadLetter, Event, decode, format_ts
from operators.features import churn_features, message_features
from operators.policy import PolicyConfig
from operators.rules import RuleConfig
from operators.messages import Candidate, Label, PairMsg, ProfileUpdate, RecsTop, ScoreRequest, Suppressed

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "config" / "schemas"
EVENT_SCHEMA = Draft202012Validator(json.loads((SCHEMAS / "event.schema.json").read_text()))
TRIGGER_SCHEMA = Draft202012Validator(json.loads((SCHEMAS / "trigger.schema.json").read_text()))
DEAD_SCHEMA = Draft202012Validator(json.loads((SCHEMAS / "deadletter.schema.json").read_text()))

# ----------------------------------------------------------------------------- extreme values

ODD = ["\ud83d", "\ude00", "a\ud83d", "\ud83d\ude00", "\u0000", "\u200b\u202e", "e\u0301\u0301\u0301",
       "\uffff", "\U0010ffff", "ﷺ" * 40, "İstanbul", "ß", "x" * 5000, "", " ", "\n\t"]
odd_text = st.one_of(st.sampled_from(ODD), st.text(max_size=30),
                     st.text(st.characters(codec=None, categories=None), max_size=30),  # surrogates included
                     st.lists(st.sampled_from(ODD), max_size=4).map("".join))
clean_ids = st.one_of(st.sampled_from(["c1", "c2", "ﷺ", "İ", "\u0000", "x" * 128, "1"]), st.text(min_size=1, max_size=12))
int_ids = st.sampled_from([0, 1, 2**53 + 1, 2**63, 2**64 - 1, 1, 1])
ids = st.one_of(clean_ids, int_ids, odd_text.filter(lambda s: 0 < len(s) <= 128))
amounts = st.one_of(st.sampled_from([0, 0.0, -0.0, 5e-324, 1e-300, 0.01, 1e12, 999_999_999_999.99, 10**12]),
                    st.floats(0, 1e12, allow_nan=False), st.integers(0, 10**12))
quantities = st.one_of(st.sampled_from([1, 10**6, 1.0, 1e6]), st.integers(1, 10**6))
EDGE_TS = ["2000-01-01T00:00:00+23:59", "2000-01-01T00:00Z", "2199-12-31T23:59:59.999999999-23:59",
           "2199-12-31T23:59:59Z", "2026-11-23T10:00:00Z", "2026-11-23T10:03:00+01:00",
           946_684_800, 946_684_800_000, 7_258_118_399, 7_258_118_399_999, 7_258_118_399.999, 1_764_000_000_000]
SENTINELS = ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "0000-01-01T00:00Z", "1970-01-01T00:00:00Z",
             "2200-01-01T00:00:00Z", "1999-12-31T23:59:59Z"]
T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z
near_ts = st.integers(T0 - 86_400_000, T0 + 40 * 86_400_000).map(format_ts)
times = st.one_of(near_ts, near_ts, st.sampled_from(EDGE_TS))
promises = st.one_of(near_ts, st.sampled_from(EDGE_TS + SENTINELS))
HUMAN = ["I want a human", "agent please", "No need for an agent", "talk to a person \ud83d", "supervisor!!!"]


def deep(depth: int):
    value: object = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


extras = st.one_of(st.just({}), st.builds(lambda d: {"nested": deep(d)}, st.integers(1, 600)),
                   st.builds(lambda s: {"note": s, "currency": s}, odd_text),
                   st.just({"big": 1e300, "tiny": -1e300, "many": list(range(50))}),
                   st.builds(lambda k: {k: 1}, odd_text))


@st.composite
def extreme_event(draw) -> dict:
    t = draw(st.sampled_from(["add_to_cart", "add_to_cart", "remove_from_cart", "checkout_started", "page_view",
                              "search", "help_view", "product_view", "order_placed", "order_shipped",
                              "order_delayed", "order_delivered", "order_cancelled", "return_requested",
                              "refund_issued", "chat_message", "chat_message", "chat_closed"]))
    obj: dict = {"event_id": draw(ids), "type": t, "customer_id": draw(st.sampled_from(["c1", "c2", 7, "ﷺ"])),
                 "ts": draw(times)}
    product = draw(st.one_of(st.sampled_from(["p1", "p2", 42]), ids))
    if t in ("add_to_cart", "remove_from_cart", "checkout_started", "page_view", "search", "help_view",
             "product_view"):
        obj["session_id"] = draw(st.one_of(st.just("s1"), ids))
        if t in ("add_to_cart", "remove_from_cart", "product_view"):
            obj["product_id"] = product
        if t == "add_to_cart" or draw(st.booleans()):
            obj["price"] = draw(amounts)
        if draw(st.booleans()):
            obj["quantity"] = draw(quantities)
        if t == "search":
            obj["query"] = draw(st.one_of(odd_text, st.just("cancel my account \ud83d")))
    elif t.startswith("order_") or t in ("return_requested", "refund_issued"):
        obj["order_id"] = draw(st.one_of(st.sampled_from(["o1", "o2", 5551234]), ids))
        if t == "order_placed" or draw(st.booleans()):
            obj["total"] = draw(amounts)
        if t == "order_placed" or draw(st.booleans()):
            obj["promised_delivery_ts"] = draw(promises)
        if draw(st.booleans()):
            obj["items"] = draw(st.lists(st.fixed_dictionaries(
                {"product_id": st.one_of(st.sampled_from(["p1", "p2", 42]), ids)},
                optional={"quantity": quantities, "price": amounts}), max_size=3))
        if draw(st.booleans()):
            obj["reason"] = draw(odd_text)
    else:
        obj["conversation_id"] = draw(st.one_of(st.sampled_from(["conv1", "conv2", 99]), ids))
        if t == "chat_message":
            obj["sender"] = draw(st.sampled_from(["customer", "customer", "agent", "bot"]))
            obj["text"] = draw(st.one_of(odd_text, st.sampled_from(HUMAN)))
        else:
            if draw(st.booleans()):
                obj["csat"] = draw(st.sampled_from([1, 2, 5, 3.0]))
            if draw(st.booleans()):
                obj["escalated"] = draw(st.booleans())
    obj.update(draw(extras))
    return obj


INVALID = [b"", b"{", b"[]", b'{"type":"page_view"}', b'{"event_id":"e","type":"search","customer_id":"c1",'
           b'"ts":"9999-12-31T23:59:59Z","session_id":"s"}', b'{"price":NaN}',
           json.dumps({"event_id": "e", "type": "add_to_cart", "customer_id": "c1", "ts": "2026-01-01T00:00Z",
                       "session_id": "s", "product_id": "p", "price": 1, "quantity": 2**64}).encode(),
           json.dumps({"event_id": "e", "type": "order_placed", "customer_id": "c\ud83d", "ts": "2026-01-01T00:00Z",
                       "order_id": "o", "total": 1.5e308, "promised_delivery_ts": "2026-01-02T00:00Z"}).encode()]


def raw_of(obj: dict, ascii_only: bool) -> bytes:
    """The stdlib writes what orjson refuses (lone surrogates as \\uXXXX escapes)."""
    return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass") if ascii_only else \
        json.dumps(obj, ensure_ascii=True).encode()


# ----------------------------------------------------------------------------- the sinks, offline

class PackingPipeline(redis.client.Pipeline):
    """A real redis-py pipeline whose execute packs every command with redis-py's own encoder
    (where a lone surrogate or an unencodable value would raise) instead of sending it."""

    def execute(self, raise_on_error: bool = True):
        conn = redis.connection.Connection()
        for args, _ in self.command_stack:
            conn.pack_command(*args)
        out = [1] * len(self.command_stack)
        self.reset()
        return out


def offline_redis_partitions(cfg):
    parts = []
    for sink in (RedisTriggerSink(cfg), RedisProfileSink(cfg), RedisRecsSink(cfg)):
        part = sink.build("s", 0, 1)
        client = part.client
        client.pipeline = lambda transaction=True, c=client: PackingPipeline(
            c.connection_pool, c.response_callbacks, transaction, None)
        parts.append(part)
    return parts


class Outputs:
    """Every sink encoder of the flow, fed what the steps emit."""

    def __init__(self, tmp: Path, settings: Settings):
        self.triggers = JsonlSink(tmp / "t.jsonl").build_part("s", "file", None)
        self.dead = JsonlSink(tmp / "d.jsonl").build_part("s", "file", None)
        self.suppressed = JsonlSink(tmp / "s.jsonl").build_part("s", "file", None)
        self.profiles_path = tmp / "p.jsonl"
        self.profiles = ProfilesFileSink(self.profiles_path).build_part("s", "profiles", None)
        self.redis_triggers, self.redis_profiles, self.redis_recs = offline_redis_partitions(settings.redis)
        self.kafka_values: list[bytes] = []
        self.trigger_records: list[dict] = []
        self.dead_records: list[dict] = []

    def dead_letter(self, d: DeadLetter) -> None:
        record = d.to_json()
        self.dead_records.append(record)
        self.dead.write_batch([record])
        self.kafka_values.append(encode_unkeyed(("dlq", record))[1].value)

    def emit(self, items: list) -> None:
        for o in items:
            k = type(o)
            if k is Candidate:
                trig = o.to_trigger(format_ts(T0))
                self.trigger_records.append(trig)
                self.triggers.write_batch([trig])
                self.redis_triggers.write_batch([(o.customer_id, trig)])
                key, msg = encode_keyed((o.customer_id, trig))
                self.kafka_values.append(msg.value)
                assert type(msg.key) is bytes
            elif k is Suppressed:
                self.suppressed.write_batch([{**o.candidate.to_trigger(""), "suppressed": o.reason}])
            elif k is ProfileUpdate:
                item = (o.customer_id, o.fields, o.defaults)
                self.profiles.write_batch([item])
                self.redis_profiles.write_batch([(o.customer_id, item)])
            elif k is RecsTop:
                self.redis_recs.write_batch([(o.product_id, o.top)])
            elif k is DeadLetter:
                self.dead_letter(o)

    def close(self, tmp: Path) -> None:
        self.profiles.close()
        for part in (self.triggers, self.dead, self.suppressed):
            part.close()


class Pipeline:
    """decode -> profile (live: timers through notify_at/on_notify) -> products skipped -> models -> policy."""

    def __init__(self, settings: Settings, tmp: Path):
        self.t = Telemetry()
        self.settings = settings
        self.rules, self.policy_cfg = RuleConfig(settings), PolicyConfig(settings)
        self.decode = make_decoder(settings, self.t)
        self.profiles: dict[str, ProfileLogic] = {}
        self.model = ModelLogic(settings, self.rules, self.t, None, recovery=False)
        self.policies: dict[str, PolicyLogic] = {}
        self.out = Outputs(tmp, settings)
        self.decoded_invalid = 0
        self.events = 0

    def feed(self, raw: bytes, pos: int) -> None:
        item = self.decode((raw, f"fuzz/0/{pos}", pos))
        if type(item) is DeadLetter:
            self.decoded_invalid += 1
            self.out.dead_letter(item)
            return
        self.events += 1
        logic = self.profiles.get(item.customer_id)
        if logic is None:
            logic = self.profiles[item.customer_id] = ProfileLogic(self.rules, True, self.t, None)
        self.downstream(logic.on_batch([item])[0])
        logic.notify_at()  # the live timer path: a wall-clock time for Bytewax, never an error

    def timers(self, advance_s: float) -> None:
        """Live: wall-clock time passes (``advance_s``), every customer's due timers fire."""
        for logic in self.profiles.values():
            when = logic.notify_at()
            if when is not None:
                logic.wall_at_clock -= advance_s
                self.downstream(logic.on_notify()[0])
                logic.notify_at()

    def downstream(self, outputs: list) -> None:
        to_model = []
        for o in outputs:
            k = type(o)
            if k is PairMsg:
                continue  # product shards: their own tests (test_recs); nothing here reaches a sink
            if k is ProfileUpdate or k is DeadLetter:
                self.out.emit([o])
            else:
                to_model.append(o)
        for o in self.model.on_batch(to_model)[0]:
            if type(o) in (ProfileUpdate, RecsTop):
                self.out.emit([o])
                continue
            p = self.policies.get(o.customer_id)
            if p is None:
                p = self.policies[o.customer_id] = PolicyLogic(self.policy_cfg, self.t, None, recovery=False)
            self.out.emit(p.on_batch([o])[0])


def model_state_is_finite(shard: ModelShard) -> bool:
    for model in shard.models.values():
        pipe = model.pipeline
        for step in getattr(pipe, "steps", {}).values():
            for name in ("_mean", "_var", "_n"):
                arr = getattr(step, name, None)
                if arr is not None and not np.all(np.isfinite(arr)):
                    return False
            weights = getattr(step, "weights", None)
            if weights is not None and not all(math.isfinite(w) for w in dict(weights).values()):
                return False
            intercept = getattr(step, "intercept", 0.0)
            if not math.isfinite(intercept):
                return False
    return True


def check_files(tmp: Path) -> int:
    lines = 0
    for name in ("t.jsonl", "d.jsonl", "s.jsonl", "p.jsonl"):
        for line in (tmp / name).read_bytes().splitlines():
            json.loads(line.decode("utf-8"))  # strict UTF-8 and strict JSON (no NaN)
            lines += 1
    return lines


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.data_too_large])


@FUZZ
@given(events=st.lists(st.tuples(extreme_event(), st.booleans()), min_size=1, max_size=25),
       invalid=st.lists(st.sampled_from(INVALID), max_size=3), repeats=st.integers(0, 3),
       advance=st.sampled_from([0.0, 1800.0, 86_400.0 * 40, 1e9]))
def test_extreme_valid_values_never_stop_the_flow(tmp_path_factory, events, invalid, repeats, advance):
    tmp = tmp_path_factory.mktemp("fuzz")
    settings_ = Settings(models={"warmup": 0})  # predict and learn from the first label on
    flow = Pipeline(settings_, tmp)
    raws = [raw_of(obj, ascii_only) for obj, ascii_only in events] + list(invalid)
    raws += raws[:repeats]  # exact repeats: duplicates
    for pos, raw in enumerate(raws, 1):
        flow.feed(raw, pos)
    flow.timers(advance)
    flow.timers(1e10)  # centuries later: every timer due fires, notify_at stays in datetime's range
    flow.out.close(tmp)

    summary = flow.t.summary()
    assert summary["events_read"] == len(raws)
    assert summary["events_read"] == summary["events_valid"] + summary["events_invalid"] + summary["events_duplicate"]
    assert "processing_error" not in summary["invalid_by_reason"], summary["invalid_by_reason"]
    assert summary["events_invalid"] == flow.decoded_invalid
    assert flow.events == summary["events_valid"] + summary["events_duplicate"]
    assert check_files(tmp) >= len(flow.out.dead_records)
    for value in flow.out.kafka_values:
        json.loads(value.decode("utf-8"))
    for trig in flow.out.trigger_records:
        assert not list(TRIGGER_SCHEMA.iter_errors(orjson.loads(orjson.dumps(trig))))
    for record in flow.out.dead_records:
        DEAD_SCHEMA.validate(record)
    assert model_state_is_finite(flow.model.shard)
    for obj, _ in events:  # the generator makes schema-valid events: the decoder must accept them too
        if not any(isinstance(v, str) and any("\ud800" <= c <= "\udfff" for c in v)
                   for v in (obj.get("event_id"), obj.get("customer_id"), obj.get("session_id"),
                             obj.get("product_id"), obj.get("order_id"), obj.get("conversation_id"))):
            assert EVENT_SCHEMA.is_valid(obj) or "items" in obj, obj


# ----------------------------------------------------------------------------- the issue's four cases


def _ev(**kw) -> bytes:
    base = {"event_id": kw.pop("event_id", "e1"), "customer_id": "c1", "ts": "2026-11-23T10:00:00Z"}
    return json.dumps({**base, **kw}).encode()


def test_the_issue_cases_are_dead_letters_or_harmless(tmp_path):
    flow = Pipeline(Settings(models={"warmup": 0}), tmp_path)
    cases = [
        _ev(type="add_to_cart", session_id="s", product_id="p", price=1, quantity=2**64 + 1),
        _ev(event_id="e2", type="order_placed", order_id="o1", total=10, items=[],
            promised_delivery_ts="9999-12-31T23:59:59Z"),
        _ev(event_id="e3", type="chat_message", conversation_id="k", sender="customer", text="cut \ud83d"),
        _ev(event_id="e4\ud83d", type="page_view", session_id="s"),
        _ev(event_id="e5", type="order_placed", order_id="o2", total=1.5e308, promised_delivery_ts="2026-11-25T00:00Z"),
    ]
    for pos, raw in enumerate(cases, 1):
        flow.feed(raw, pos)
    flow.timers(1e10)
    flow.out.close(tmp_path)
    reasons = [r["reason"] for r in flow.out.dead_records]
    assert reasons == ["out_of_range", "invalid_unicode", "out_of_range"]
    profile = orjson.loads((tmp_path / "p.jsonl").read_bytes().splitlines()[0])
    assert profile["order_count"] == 1 and profile["open_orders"] == [
        {"order_id": "o1", "status": "placed", "order_total": 10.0, "promised_delivery_ts": None}]
    assert check_files(tmp_path) > 0


def test_a_model_never_learns_from_a_non_finite_feature():
    shard = ModelShard(warmup=0, min_outcomes=0)  # no gate: one label, then scores
    good = {"a": 1.0, "b": 2.0}
    shard.learn(Label("churn", "c", "d0", 1, good, 1, 0))
    for bad in ({"a": float("inf"), "b": 1.0}, {"a": float("nan"), "b": 1.0}, {"a": 1e308, "b": 1e308}):
        assert shard.learn(Label("churn", "c", "d1", 2, bad, 0, 1)) is False
        assert shard.score(ScoreRequest("churn", "c", "d2", 3, bad)) is None
    assert shard.nonfinite == {"churn:learn": 3, "churn:predict": 3}
    assert shard.models["churn"].learned == 1
    p = shard.score(ScoreRequest("churn", "c", "d3", 3, good))
    assert p is not None and 0.0 < p < 1.0
    assert finite(good) and not finite({"x": "text"})
    assert finite({"a": 1.0, "_text": "hello"}) and not finite({"a": float("nan"), "_text": "hello"})


def test_the_nonfinite_counter_reaches_prometheus(tmp_path):
    flow = Pipeline(Settings(models={"warmup": 0}), tmp_path)
    label = Label("churn", "c", "d", 1, {"a": float("inf")}, 1, 0)
    flow.model.on_batch([label])
    flow.model.on_batch([Label("frustration", "c", "d", 1, {"a": float("nan")}, 0, 0)])
    assert flow.t.summary()["model_nonfinite_features"] == {"churn:learn": 1, "frustration:learn": 1}
    assert flow.t.registry.get_sample_value("crm_model_nonfinite_features_total",
                                            {"model": "churn", "call": "learn"}) == 1.0


@given(spend=st.floats(0, 1e12 * 10_000), orders=st.integers(0, 10_000), days=st.integers(0, 200 * 365))
@settings(max_examples=60, deadline=None)
def test_churn_features_stay_finite_at_the_bounds(spend, orders, days):
    from operators.customer import CustomerState

    state = CustomerState("c")
    first = 946_684_800_000
    state.first_seen = state.last_seen = state.clock = first
    state.spend, state.order_count = spend, orders
    state.history.orders = orders
    state.history.order_log = [(first // 60_000, 1e12)] * min(orders, 12)
    feats = churn_features(state, first + days * 86_400_000)
    assert finite(feats), {k: v for k, v in feats.items() if not math.isfinite(v)}


@pytest.mark.parametrize("text", ["x" * 20_000, "\ufffd" * 100, "!" * 5000, "", "e\u0301" * 300])
def test_message_features_stay_finite(text):
    assert finite(message_features(text, {"since_reply_s": 1e12, "conversation_age_s": 1e12, "in_a_row": 1e6}))


def test_timer_wall_clock_is_clamped():
    assert _wall_datetime(1e300).year == 9999
    assert _wall_datetime(-1e300).year == 1970
    assert _wall_datetime(float("nan")).year == 9999


def test_sink_encoders_survive_what_validation_keeps_out():
    """Defence in depth: a record the core should never produce still encodes, as valid JSON."""
    nasty = {"customer_id": "c\ud83d", "trigger_id": "t\udc00", "type": "escalation", "event_ts": "bad",
             "n": 2**70, "nan": float("nan"), "deep": deep(400), 3: "int key", "payload": {"k\ud800": "v"}}
    _, msg = encode_keyed(("c\ud83d", nasty))
    assert json.loads(msg.key.decode()) if False else msg.key == "c\ufffd".encode()
    json.loads(msg.value)
    cfg = Settings().redis
    trig_part, prof_part, recs_part = offline_redis_partitions(cfg)
    trig_part.write_batch([("c", nasty)])
    prof_part.write_batch([("c\ud83d", ("c\ud83d", {"cart\ud83d": nasty, "x": 2**80}, False))])
    recs_part.write_batch([("p\ud83d", [("q\ud83d", 1.0)])])


def test_customer_of_routes_integer_ids_like_their_string():
    assert customer_of(b'{"customer_id": 42, "ts": "x"}') == customer_of(b'{"customer_id":"42"}') == b"42"
    assert customer_of(b'{"customer_id":42.0}') == b"42"


# ----------------------------------------------------------------------------- end to end


def test_replay_of_a_dirty_log_completes_with_summary_and_triggers(tmp_path):
    from flows.replay import ReplayOutputs, replay

    lines = [
        {"event_id": "a1", "type": "add_to_cart", "customer_id": 7, "ts": 1_764_000_000_000, "session_id": 1,
         "product_id": 42, "price": 1e12, "quantity": 10**6},
        {"event_id": "a2", "type": "add_to_cart", "customer_id": "7", "ts": 1_764_000_060, "session_id": "1",
         "product_id": "43", "price": 5e-324, "quantity": 1, "deep": deep(500)},
        {"event_id": "o1", "type": "order_placed", "customer_id": "buyer", "ts": "2025-11-24T16:00:00Z",
         "order_id": 1, "total": 1e12, "promised_delivery_ts": "9999-12-31T23:59:59Z"},
        {"event_id": "o2", "type": "order_placed", "customer_id": "buyer", "ts": "2025-11-24T16:01:00Z",
         "order_id": 2, "total": 1e12, "promised_delivery_ts": "2025-11-24T17:00:00Z"},
        {"event_id": "c1", "type": "chat_message", "customer_id": "talker", "ts": "2025-11-24T16:00:00Z",
         "conversation_id": "k", "sender": "customer", "text": "I need a human \ud83d"},
        {"event_id": "x1", "type": "search", "customer_id": "late\ud83d", "ts": "2025-11-24T16:00:00Z",
         "session_id": "s"},
        {"event_id": "x2", "type": "search", "customer_id": "far", "ts": "9999-12-31T23:59:59Z", "session_id": "s"},
        {"event_id": "x3", "type": "add_to_cart", "customer_id": "big", "ts": "2025-11-24T16:00:00Z",
         "session_id": "s", "product_id": "p", "price": 1, "quantity": 2**64},
        {"event_id": "x4", "type": "page_view", "customer_id": "edge", "ts": "2199-12-31T23:59:59.999Z",
         "session_id": "s", "page": "\u202e" * 1000},
    ]
    log = tmp_path / "dirty.jsonl"
    log.write_bytes(b"".join(json.dumps(obj).encode() + b"\n" for obj in lines) + b"not json\n")
    out = ReplayOutputs(triggers=tmp_path / "t.jsonl", dlq=tmp_path / "d.jsonl", summary=tmp_path / "s.json",
                        profiles=tmp_path / "p.jsonl")
    replay(Settings(), [log], out, drain=True)
    summary = json.loads(out.summary.read_text())
    assert summary["events_read"] == len(lines) + 1
    assert summary["events_read"] == summary["events_valid"] + summary["events_invalid"] + summary["events_duplicate"]
    assert summary["invalid_by_reason"] == {"invalid_ts": 1, "invalid_unicode": 1, "malformed_json": 1,
                                            "out_of_range": 1}
    triggers = [json.loads(line) for line in out.triggers.read_text().splitlines()]
    kinds = sorted((t["type"], t["customer_id"]) for t in triggers)
    assert ("abandoned_cart", "7") in kinds and ("escalation", "talker") in kinds
    assert ("delay_apology", "buyer") in kinds  # order 2 missed its promise; order 1 promised nothing
    assert sum(1 for t in triggers if t["type"] == "delay_apology") == 1
    cart = next(t for t in triggers if t["type"] == "abandoned_cart")
    assert cart["payload"]["cart_value"] == 1e18 and math.isfinite(cart["payload"]["cart_value"])
    for line in out.profiles.read_text().splitlines():
        json.loads(line)
    for line in out.dlq.read_text().splitlines():
        DEAD_SCHEMA.validate(json.loads(line))


def test_one_event_id_with_two_contents_held_together_never_raises():
    """Found by the fuzz test: an id re-sent with other content at the same ts, both held in the
    reorder buffer, made the heap compare two events (TypeError)."""
    from config.settings import load_settings
    from operators.customer import CustomerState
    from operators.events import validate
    from operators.rules import RuleConfig

    cfg = RuleConfig(load_settings())
    cart = {"event_id": "c1", "type": "add_to_cart", "customer_id": "c1", "ts": "2025-11-23T16:00:00.000Z",
            "session_id": "s1", "product_id": "p1", "price": 0}
    chat = {"event_id": "c1", "type": "chat_message", "customer_id": "c1", "ts": "2025-11-30T16:00:00.001Z",
            "conversation_id": "conv1", "sender": "customer", "text": "x"}
    state = CustomerState("c1")
    for obj in (cart, chat, cart, chat):
        state.process(validate(dict(obj)), cfg)
    state.flush(None, cfg)


def test_an_id_reused_days_apart_then_repeated_is_a_duplicate():
    """An older reuse of an id must not reset when it was last seen: the repeat of the newer
    event is still a duplicate (it used to be applied twice and held twice)."""
    from config.settings import load_settings
    from operators.customer import CustomerState
    from operators.events import validate
    from operators.rules import RuleConfig

    cfg = RuleConfig(load_settings())
    old = {"event_id": "x", "type": "page_view", "customer_id": "c1", "ts": "2025-11-23T16:00:00.000Z",
           "session_id": "s1"}
    new = {**old, "ts": "2025-11-30T16:00:00.001Z"}
    state = CustomerState("c1")
    statuses = [state.process(validate(dict(o)), cfg)[1] for o in (old, new, old, new)]
    assert statuses[-1] == "duplicate"
