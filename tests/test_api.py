"""Unit tests of `crm-stream serve`'s routes over fakeredis (the Redis layout of CONTRACT.md section 7)."""

from __future__ import annotations

import logging

import fakeredis
import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from config.settings import load_settings

KEY = "k-test-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
CUSTOMER = "cust-secret-42"


def trigger(tid: str, type_: str, ts: str, payload: dict, score=None) -> dict:
    return {"trigger_id": tid, "type": type_, "customer_id": CUSTOMER, "event_ts": ts, "emitted_at": ts,
            "priority": "high", "reasons": ["promise_missed"], "score": score, "payload": payload,
            "schema_version": 1}


@pytest.fixture
def redis():
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())


@pytest.fixture
def client(redis):
    settings = load_settings(api={"keys": [KEY, "other"]})
    with TestClient(create_app(settings, client=redis)) as c:
        yield c


@pytest.fixture
def seeded(client, redis):
    """One customer with an open late order, a cart, an open conversation and two triggers."""
    async def seed():
        await redis.hset(f"crm:customer:{CUSTOMER}", mapping={
            "tier": "regular", "lifetime_spend": "120.5", "order_count": "2",
            "first_seen": "2026-11-01T10:00:00.000Z", "last_seen": "2026-11-20T10:00:00.000Z",
            "updated_at": "2026-11-20T10:00:00.000Z",
            "open_orders": orjson.dumps([{"order_id": "o-1", "status": "shipped", "order_total": 80.0,
                                          "promised_delivery_ts": "2026-11-18T10:00:00.000Z"}]),
            "cart": orjson.dumps([{"product_id": "p1", "quantity": 1, "price": 9.5}]),
            "cart_value": "9.5", "open_conversations": orjson.dumps(["c-1"]),
            "churn_probability": "0.31", "frustration_probability": "0.72", "predicted_clv": "null",
            "last_trigger.delay_apology": orjson.dumps({"trigger_id": "t1", "event_ts": "2026-11-18T12:00:00.000Z"}),
            "last_suppressed.abandoned_cart": orjson.dumps({"reason": "apology_quiet",
                                                            "event_ts": "2026-11-18T13:00:00.000Z"}),
        })
        apology = trigger("t1", "delay_apology", "2026-11-18T12:00:00.000Z",
                          {"order_id": "o-1", "suggested_credit": 5.0})
        escalation = trigger("t2", "escalation", "2026-11-19T09:00:00.000Z",
                             {"conversation_id": "c-1", "frustration": 0.6,
                              "last_messages": [{"sender": "customer", "text": "where is my parcel <b>", "ts": "x"}]})
        await redis.zadd(f"crm:customer:{CUSTOMER}:triggers", {orjson.dumps(apology): 1, orjson.dumps(escalation): 2})
        await redis.zadd("crm:recs:p1", {"p2": 0.9, "p3": 0.5, "p1x": 0.1})
        for i, t in enumerate([apology, escalation] * 3):
            await redis.xadd("crm:triggers", {"trigger_id": f"id{i}", "type": t["type"], "customer_id": CUSTOMER,
                                              "trigger": orjson.dumps({**t, "trigger_id": f"id{i}"})})
    client.portal.call(seed)
    return client


def test_a_request_without_a_valid_key_is_401(seeded):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        r = seeded.get(f"/v1/customers/{CUSTOMER}", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert seeded.get(f"/agent/customers/{CUSTOMER}").status_code == 401
    assert seeded.get(f"/v1/customers/{CUSTOMER}", headers={"Authorization": "Bearer other"}).status_code == 200
    seeded.cookies.set("crm_api_key", KEY)
    assert seeded.get(f"/agent/customers/{CUSTOMER}").status_code == 200


def test_no_configured_keys_means_every_request_is_401(redis):
    with TestClient(create_app(load_settings(), client=redis)) as c:
        assert c.get("/v1/customers/x", headers={"Authorization": "Bearer "}).status_code == 401
        assert c.get("/healthz").status_code == 200


def test_the_profile_decoded_with_last_triggers_grouped(seeded):
    p = seeded.get(f"/v1/customers/{CUSTOMER}", headers=AUTH).json()
    assert p["customer_id"] == CUSTOMER and p["tier"] == "regular" and p["lifetime_spend"] == 120.5
    assert p["open_orders"][0]["promised_delivery_ts"] == "2026-11-18T10:00:00.000Z"
    assert p["cart"][0]["product_id"] == "p1" and p["open_conversations"] == ["c-1"]
    assert p["churn_probability"] == 0.31 and p["predicted_clv"] is None and p["consent"] is None
    assert p["last_trigger"] == {"delay_apology": {"trigger_id": "t1", "event_ts": "2026-11-18T12:00:00.000Z"}}
    assert p["last_suppressed"]["abandoned_cart"]["reason"] == "apology_quiet"


def test_an_unknown_or_erased_customer_is_404(seeded):
    for path in ("/v1/customers/nobody", "/v1/customers/nobody/triggers", "/v1/customers/nobody/recommendations",
                 "/agent/customers/nobody"):
        assert seeded.get(path, headers=AUTH).status_code == 404, path


@pytest.mark.parametrize("bad", ["x" * 129, "a%00b", "a%0Ab"])
def test_customer_ids_are_validated(seeded, bad):
    assert seeded.get(f"/v1/customers/{bad}", headers=AUTH).status_code == 422
    assert seeded.get(f"/v1/customers/{'x' * 128}", headers=AUTH).status_code == 404


def test_customer_triggers_newest_first_with_a_limit(seeded):
    r = seeded.get(f"/v1/customers/{CUSTOMER}/triggers?limit=1", headers=AUTH).json()
    assert [t["trigger_id"] for t in r["triggers"]] == ["t2"]
    r = seeded.get(f"/v1/customers/{CUSTOMER}/triggers", headers=AUTH).json()
    assert [t["trigger_id"] for t in r["triggers"]] == ["t2", "t1"]
    assert seeded.get(f"/v1/customers/{CUSTOMER}/triggers?limit=0", headers=AUTH).status_code == 422
    assert seeded.get(f"/v1/customers/{CUSTOMER}/triggers?limit=501", headers=AUTH).status_code == 422


def test_product_and_customer_recommendations(seeded):
    r = seeded.get("/v1/products/p1/recommendations?limit=2", headers=AUTH).json()
    assert r == {"recommendations": [{"product_id": "p2", "score": 0.9}, {"product_id": "p3", "score": 0.5}],
                 "source": "product"}
    assert seeded.get("/v1/products/unseen/recommendations", headers=AUTH).json()["recommendations"] == []
    r = seeded.get(f"/v1/customers/{CUSTOMER}/recommendations?limit=1", headers=AUTH).json()
    assert r == {"recommendations": [{"product_id": "p2", "score": 0.9}], "source": "cart"}


def test_a_customers_own_list_comes_first(seeded):
    seeded.portal.call(lambda: seeded.app.state.redis.hset(f"crm:customer:{CUSTOMER}", "recommendations",
                                                            orjson.dumps(["p7", "p8"])))
    r = seeded.get(f"/v1/customers/{CUSTOMER}/recommendations", headers=AUTH).json()
    assert r == {"recommendations": [{"product_id": "p7", "score": None}, {"product_id": "p8", "score": None}],
                 "source": "profile"}


def test_the_trigger_cursor_pages_without_gaps_or_duplicates(seeded):
    seen, after = [], "0"
    while True:
        page = seeded.get(f"/v1/triggers?after={after}&limit=4", headers=AUTH).json()
        if not page["items"]:
            assert page["next"] == after  # at the end the cursor stays put: resume later from it
            break
        seen += page["items"]
        after = page["next"]
    assert [e["trigger"]["trigger_id"] for e in seen] == [f"id{i}" for i in range(6)]
    assert len({e["id"] for e in seen}) == 6
    again = seeded.get(f"/v1/triggers?after={seen[2]['id']}&limit=2", headers=AUTH).json()
    assert [e["id"] for e in again["items"]] == [seen[3]["id"], seen[4]["id"]]


def test_the_trigger_cursor_filters_by_type(seeded):
    page = seeded.get("/v1/triggers?type=escalation&limit=2", headers=AUTH).json()
    assert [e["trigger"]["trigger_id"] for e in page["items"]] == ["id1", "id3"]
    rest = seeded.get(f"/v1/triggers?type=escalation&after={page['next']}", headers=AUTH).json()
    assert [e["trigger"]["trigger_id"] for e in rest["items"]] == ["id5"]
    assert seeded.get("/v1/triggers?type=Not-A-Type", headers=AUTH).status_code == 422
    # the type is open (schema_version 2): a catalogue or shop type is a filter like any other
    assert seeded.get("/v1/triggers?type=win_back", headers=AUTH).json()["items"] == []
    assert seeded.get("/v1/triggers?after=abc", headers=AUTH).status_code == 422


def test_the_agent_page_shows_the_late_order_the_trigger_and_escapes_text(seeded):
    r = seeded.get(f"/agent/customers/{CUSTOMER}", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "o-1" in html and "late by 48.0 h" in html
    assert "delay_apology" in html and "escalation" in html and "promise_missed" in html
    assert "where is my parcel &lt;b&gt;" in html  # customer text is escaped
    assert "<svg" in html  # frustration over the conversation: 0.6 then 0.72 now
    assert "5.00" in html and "p2" in html  # the suggested credit and a recommendation
    assert "abandoned_cart: apology_quiet at 2026-11-18 13:00" in html  # held back, and why


def test_health_readiness_and_metrics_by_route(seeded):
    assert seeded.get("/healthz").json() == {"status": "ok"}
    assert seeded.get("/readyz").json() == {"status": "ready"}
    seeded.get(f"/v1/customers/{CUSTOMER}", headers=AUTH)
    text = seeded.get("/metrics").text
    assert 'crm_api_requests_total{method="GET",route="/v1/customers/{customer_id}",status="200"} 1.0' in text
    assert 'crm_api_request_seconds_count{route="/v1/customers/{customer_id}"} 1.0' in text
    assert CUSTOMER not in text


def test_readyz_is_503_when_redis_does_not_answer():
    dead = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    dead.connection_pool.connection_kwargs["server"].connected = False
    with TestClient(create_app(load_settings(api={"keys": [KEY]}), client=dead)) as c:
        assert c.get("/readyz").status_code == 503


def test_access_logs_name_the_route_never_the_customer(seeded, caplog):
    with caplog.at_level(logging.DEBUG):
        seeded.get(f"/v1/customers/{CUSTOMER}", headers=AUTH)
        seeded.get(f"/v1/customers/{CUSTOMER}/triggers?limit=3", headers=AUTH)
        seeded.get(f"/agent/customers/{CUSTOMER}", headers=AUTH)
        seeded.get("/v1/customers/nobody-else", headers=AUTH)
    access = [r.getMessage() for r in caplog.records if r.name == "crm.api.access"]
    assert "GET /v1/customers/{customer_id} 200" in access[0] and len(access) == 4
    server = [r for r in caplog.records if not r.name.startswith("httpx")]  # httpx: the test's own client
    everything = " ".join(r.getMessage() + repr(r.args) for r in server)
    assert CUSTOMER not in everything and "nobody-else" not in everything and KEY not in everything


def test_cors_is_off_by_default_and_on_for_configured_origins(redis):
    pre = {"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"}
    with TestClient(create_app(load_settings(api={"keys": [KEY]}), client=redis)) as c:
        assert "access-control-allow-origin" not in c.options("/v1/triggers", headers=pre).headers
    s = load_settings(api={"keys": [KEY], "cors_origins": ["https://shop.example"]})
    with TestClient(create_app(s, client=redis)) as c:
        assert c.options("/v1/triggers", headers=pre).headers["access-control-allow-origin"] == "https://shop.example"


def test_openapi_docs_list_every_route(client):
    assert client.get("/docs").status_code == 200
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/v1/customers/{customer_id}", "/v1/customers/{customer_id}/triggers",
            "/v1/customers/{customer_id}/recommendations", "/v1/products/{product_id}/recommendations",
            "/v1/triggers", "/agent/customers/{customer_id}", "/healthz", "/readyz"} <= paths


def test_api_keys_come_from_the_environment_as_a_json_list(monkeypatch):
    monkeypatch.setenv("CRM_API__KEYS", '["a", "b"]')
    assert load_settings().api.keys == ["a", "b"]
