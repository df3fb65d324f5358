"""The contact policy live (issue 15): `crm-stream run` against a real Kafka-protocol broker and a
real redis-server sends what a replay of the same events sends: consent from `crm.profile`, a
night cart released at morning, a held-out customer, a customer without consent."""

from __future__ import annotations

import orjson
import pytest
from test_live import live_settings, make_topics, produce

from config.settings import load_settings
from flows.live import run_live
from flows.replay import ReplayOutputs, replay
from operators.outcomes import in_holdout

pytestmark = pytest.mark.integration

GROUPS = dict(consent={"default": "opt_in"}, quiet_hours={"enabled": True},
              holdout={"share": {"abandoned_cart": 0.5}})


def test_live_consent_quiet_hours_and_holdout_match_the_replay(kafka_broker, kafka_topics, redis_client, redis_url,
                                                               tmp_path):
    key = load_settings(**GROUPS).holdout.key.encode()
    pool = [f"k{i}" for i in range(50)]
    held = next(c for c in pool if in_holdout(c, "abandoned_cart", 0.5, key))
    sent = [c for c in pool if not in_holdout(c, "abandoned_cart", 0.5, key)][:3]
    yes, night, nobody = sent
    n = iter(range(1000))

    def e(type, customer, ts, **f):
        base = {"event_id": f"e{next(n)}", "type": type, "customer_id": customer, "ts": ts}
        if type in ("add_to_cart", "page_view"):
            base["session_id"] = "s"
        if type == "add_to_cart":
            base.update(product_id="p1", price=9.0)
        return {**base, **f}

    profile = [e("consent_updated", c, "2026-03-02T08:00:00Z", channel="email", purpose="marketing", granted=True)
               for c in (yes, night, held)]
    profile.append(e("consent_updated", night, "2026-03-02T08:00:01Z", channel="push", purpose="marketing",
                     granted=True, timezone="Europe/Paris"))
    clicks = [e("add_to_cart", c, "2026-03-02T12:00:00Z") for c in (yes, held, nobody)]
    clicks.append(e("add_to_cart", night, "2026-03-02T21:00:00Z"))  # due 22:30 in Paris
    clicks += [e("page_view", c, "2026-03-03T09:00:00Z") for c in (yes, held, nobody, night)]
    topics = {**make_topics(kafka_topics), "profile_topic": kafka_topics("profile", partitions=1)}
    produce(kafka_broker, topics["profile_topic"], profile)
    produce(kafka_broker, topics["clickstream_topic"], clicks)

    run_live(live_settings(kafka_broker, redis_url, topics, **GROUPS), tail=False)
    live = sorted((orjson.loads(x[1][b"trigger"]) for x in redis_client.xrange("crm:triggers")),
                  key=lambda t: t["customer_id"])
    got = {t["customer_id"]: (t["channels"], t.get("released_at")) for t in live}
    assert got == {yes: (["email"], None), night: (["email", "push"], "2026-03-03T07:00:00.000Z")}

    log = tmp_path / "events.jsonl"
    log.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in sorted(profile + clicks, key=lambda x: x["ts"])))
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json", None, tmp_path / "sup.jsonl")
    summary = replay(load_settings(**GROUPS), [log], out)
    replayed = sorted((orjson.loads(x) for x in out.triggers.read_bytes().splitlines()), key=lambda t: t["customer_id"])
    strip = lambda ts: [{k: v for k, v in t.items() if k != "emitted_at"} for t in ts]  # noqa: E731
    assert strip(live) == strip(replayed)
    assert summary["suppressed_by_reason"]["abandoned_cart"] == {"holdout": 1, "no_consent": 1}
