"""The engine against a redis-server that serves TLS only (``--tls-port``, certificates made here)
and lets in one ACL user with a password; a wrong password stops ``run`` with one clear line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import redis
from infra import RedisServer, TlsFiles
from test_live import iso, live_settings, make_topics, produce

from config.settings import load_settings
from connectors.redis_sink import RedisRefused, check_redis, read_profile
from flows.live import run_live

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Redis-pw"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    tls = TlsFiles(tmp_path_factory.mktemp("tls"))
    server = RedisServer(tls=tls, users=[f"crm on >{PASSWORD} ~crm:* +@all"])
    try:
        server.start()
        yield server
    finally:
        server.close()


def secure(tls_redis, password: str = PASSWORD) -> dict:
    return {"url": tls_redis.url, "username": "crm", "password": password, "ssl_ca_certs": str(tls_redis.tls.ca)}


def admin(tls_redis) -> redis.Redis:
    return redis.Redis.from_url(tls_redis.url, **{k: v for k, v in secure(tls_redis).items() if k != "url"})


def test_live_engine_writes_over_tls_as_an_acl_user(kafka_broker, kafka_topics, tls_redis, caplog):
    assert tls_redis.url.startswith("rediss://")
    with pytest.raises(redis.ConnectionError):  # the server takes no plain connections
        redis.Redis(host=tls_redis.host, port=tls_redis.port, socket_timeout=2).ping()
    client = admin(tls_redis)
    client.flushall()
    topics = make_topics(kafka_topics)
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    produce(kafka_broker, topics["clickstream_topic"], [
        {"event_id": "a1", "type": "add_to_cart", "customer_id": "c1", "ts": iso(t0), "session_id": "s",
         "product_id": "p1", "price": 12.5},
        {"event_id": "a2", "type": "page_view", "customer_id": "c1", "ts": iso(t0 + timedelta(minutes=45)),
         "session_id": "s"}])
    settings = live_settings(kafka_broker, tls_redis.url, topics)
    settings.redis = settings.redis.model_validate({**settings.redis.model_dump(), **secure(tls_redis)})
    with caplog.at_level(logging.DEBUG):
        run_live(settings, tail=False)
    [(_, fields)] = client.xrange("crm:triggers")
    assert fields[b"type"] == b"abandoned_cart"
    assert client.exists(f"crm:trigger:{fields[b'trigger_id'].decode()}")
    assert read_profile(client, "c1")["cart"][0]["product_id"] == "p1"
    assert PASSWORD not in caplog.text
    client.close()


def test_a_wrong_password_is_one_clear_line_without_the_password(tls_redis, caplog):
    cfg = load_settings(redis=secure(tls_redis, "not-the-password")).redis
    with pytest.raises(RedisRefused) as info:
        check_redis(cfg)
    msg = str(info.value)
    assert "refused user 'crm'" in msg and "wrong username or password" in msg and "\n" not in msg
    assert "not-the-password" not in msg + caplog.text


def test_an_untrusted_certificate_is_named(tls_redis, tmp_path):
    other = TlsFiles(tmp_path / "other")  # a CA that did not sign the server's certificate
    cfg = load_settings(
        redis={**secure(tls_redis), "ssl_ca_certs": str(other.ca)}).redis
    with pytest.raises(RedisRefused, match="certificate does not verify"):
        check_redis(cfg)


def test_run_stops_at_once_on_a_wrong_password(kafka_broker, kafka_topics, tls_redis, tmp_path):
    topics = make_topics(kafka_topics)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CRM_") or k.startswith("CRM_TEST_")},
           "CRM_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "CRM_METRICS_PORT": "0",
           "CRM_REDIS__URL": tls_redis.url.replace("rediss://", f"rediss://crm:wrong-{PASSWORD}@"),
           "CRM_REDIS__SSL_CA_CERTS": str(tls_redis.tls.ca),
           **{f"CRM_KAFKA__{k.upper()}": v for k, v in topics.items()}}
    res = subprocess.run([sys.executable, "-m", "flows.cli", "run"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-2000:]
    assert "wrong username or password" in out and "rediss://crm:***@" in out
    assert f"wrong-{PASSWORD}" not in out
    assert "refused user 'crm'" in out  # the user in the URL
