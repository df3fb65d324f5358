"""Secure connections and safe configuration: Redis with an ACL user over TLS, Kafka security
properties reaching librdkafka, secrets never printed, unknown CRM_* variables, effective settings."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
import redis
from infra import RedisServer, TlsFiles
from test_live import HISTORY_AGE, iso, make_topics, produce

from config.settings import SettingsError, check_environment, effective_table, load_settings, mask_url

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-Pa55word"
SASL_PASSWORD = "sasl-Pa55word-xyz"


def cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 120):
    full = {k: v for k, v in os.environ.items() if not k.startswith("CRM_") or k.startswith("CRM_TEST_")}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env={**full, **(env or {})},
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=timeout)


# ---------------------------------------------------------------------------- Redis: ACL user + TLS


@pytest.fixture
def tls_redis(tmp_path):
    tls = TlsFiles(tmp_path / "tls")
    server = RedisServer(tls=tls, users=[f"crm on >{PASSWORD} ~crm:* +@all -@dangerous"])
    server.start()
    yield server
    server.close()


def _cart_events(customer: str, t0: datetime) -> list[dict]:
    return [{"event_id": f"{customer}-a", "type": "add_to_cart", "customer_id": customer, "ts": iso(t0),
             "session_id": "s", "product_id": "p1", "price": 10.0},
            {"event_id": f"{customer}-v", "type": "page_view", "customer_id": customer,
             "ts": iso(t0 + timedelta(minutes=45)), "session_id": "s"}]


@pytest.mark.integration
def test_engine_writes_to_a_tls_redis_as_an_acl_user(tls_redis, kafka_broker, kafka_topics, tmp_path, caplog):
    from connectors.redis_sink import RedisRefused
    from flows.live import run_live

    topics = make_topics(kafka_topics)
    produce(kafka_broker, topics["clickstream_topic"], _cart_events("c1", datetime(2026, 3, 1, 12, tzinfo=timezone.utc)))
    assert tls_redis.url.startswith("rediss://")
    redis_cfg = {"url": tls_redis.url, "username": "crm", "password": PASSWORD,
                 "ssl_ca_certs": str(tls_redis.tls.ca)}

    def settings(**redis_over):
        return load_settings(kafka={"bootstrap_servers": kafka_broker.bootstrap, **topics},
                             redis={**redis_cfg, **redis_over}, metrics_port=0, recovery=False,
                             policy={"max_trigger_age": HISTORY_AGE})

    caplog.set_level(logging.DEBUG)
    run_live(settings(), tail=False)
    client = redis.Redis.from_url(tls_redis.url, username="crm", password=PASSWORD, ssl_ca_certs=str(tls_redis.tls.ca))
    [(_, fields)] = client.xrange("crm:triggers")
    trig = orjson.loads(fields[b"trigger"])
    assert trig["type"] == "abandoned_cart" and trig["customer_id"] == "c1"
    assert client.exists(f"crm:trigger:{trig['trigger_id']}") and client.exists("crm:customer:c1")
    with pytest.raises(redis.AuthenticationError):  # and the server does ask for the password
        redis.Redis.from_url(tls_redis.url, ssl_ca_certs=str(tls_redis.tls.ca)).ping()

    with pytest.raises(RedisRefused) as wrong:
        run_live(settings(password="not-the-" + PASSWORD), tail=False)
    assert "refused user 'crm': wrong username or password" in str(wrong.value)
    assert tls_redis.url in str(wrong.value) and PASSWORD not in str(wrong.value)
    with pytest.raises(RedisRefused) as unverified:  # the system CAs do not know the test CA
        run_live(settings(ssl_ca_certs=None), tail=False)
    assert "TLS certificate does not verify" in str(unverified.value)
    assert PASSWORD not in caplog.text and "not-the-" not in caplog.text


@pytest.mark.integration
def test_run_with_a_wrong_redis_password_stops_with_one_clear_line(tls_redis, kafka_broker, kafka_topics, tmp_path):
    topics = make_topics(kafka_topics)
    url = tls_redis.url.replace("rediss://", f"rediss://crm:{PASSWORD}-typo@")  # credentials in the URL
    env = {"CRM_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "CRM_REDIS__URL": url,
           "CRM_REDIS__SSL_CA_CERTS": str(tls_redis.tls.ca), "CRM_METRICS_PORT": "0", "CRM_RECOVERY": "false",
           **{f"CRM_KAFKA__{k.upper()}": v for k, v in topics.items()}}
    res = cli("run", env=env, cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert PASSWORD not in out  # not in the error line, the traceback, the warning or anything else
    errors = [line for line in out.splitlines() if "worker stopped" in line]
    assert len(errors) == 1 and "RedisRefused" in errors[0] and "crm:***@127.0.0.1" in errors[0]
    assert "refused user 'crm'" in errors[0] and "recovery is off: a restart re-reads" in errors[0]
    assert "warning: recovery is off (CRM_RECOVERY=false)" in res.stderr


def test_mask_url():
    assert mask_url("rediss://crm:pw@h:6380/0") == "rediss://crm:***@h:6380/0"
    assert mask_url("redis://:pw@h/0") == "redis://:***@h/0"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


def test_tls_files_need_a_rediss_url(monkeypatch):
    monkeypatch.setenv("CRM_REDIS__SSL_CA_CERTS", "/etc/ca.pem")
    with pytest.raises(SettingsError, match="bad setting CRM_REDIS__SSL_CA_CERTS: is set but CRM_REDIS__URL is not rediss://"):
        load_settings()


# ---------------------------------------------------------------------------- Kafka: SASL/SSL properties


class _Recorder:
    configs: list[tuple[str, dict]] = []

    def __init__(self, config: dict):
        self.configs.append((type(self).__name__, dict(config)))

    def list_topics(self, topic=None, timeout=None):
        meta = SimpleNamespace(error=None, partitions={0: None})
        return SimpleNamespace(topics={topic: meta}, brokers={1: None})

    def assign(self, parts):
        pass

    def close(self):
        pass

    def offsets_for_times(self, parts, timeout=None):
        return parts

    def consume(self, n, timeout):
        return []


class FakeConsumer(_Recorder):
    pass


class FakeProducer(_Recorder):
    pass


class FakeAdmin(_Recorder):
    pass


def test_kafka_security_settings_reach_every_librdkafka_client(monkeypatch, tmp_path):
    import bytewax.connectors.kafka as bk
    import confluent_kafka.admin

    import connectors.kafka as ck

    ca = TlsFiles(tmp_path / "tls").ca  # librdkafka loads it when a client is made
    monkeypatch.setenv("CRM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CRM_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CRM_KAFKA__SASL_USERNAME", "crm-engine")
    monkeypatch.setenv("CRM_KAFKA__SASL_PASSWORD", SASL_PASSWORD)
    monkeypatch.setenv("CRM_KAFKA__SSL_CA_LOCATION", str(ca))
    monkeypatch.setenv("CRM_KAFKA__EXTRA", '{"ssl.endpoint.identification.algorithm": "none"}')
    k = load_settings().kafka
    expected = {"security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "crm-engine",
                "sasl.password": SASL_PASSWORD, "ssl.ca.location": str(ca),
                "ssl.endpoint.identification.algorithm": "none", "bootstrap.servers": k.bootstrap_servers}
    assert expected.items() <= k.client_config().items()

    # librdkafka itself takes every property (a misspelt one raises here)
    from confluent_kafka import Consumer, Producer

    Producer(k.client_config()).flush(0)
    Consumer({**k.client_config(), "group.id": "g"}).close()

    _Recorder.configs = []
    monkeypatch.setattr(bk, "Consumer", FakeConsumer)
    monkeypatch.setattr(bk, "AdminClient", FakeAdmin)
    monkeypatch.setattr(ck, "Producer", FakeProducer)
    monkeypatch.setattr(ck, "Consumer", FakeConsumer)
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", FakeAdmin)
    source = ck.KafkaEventSource(k)
    part = source.list_parts()[0]  # the admin client bytewax lists partitions with
    source.build_part("input", part, None)  # the consumer of a partition
    ck.kafka_sink(k, k.triggers_topic).build_part("out", "producer", None)  # triggers / dead letters
    ck.export_range(k, 0, 1, tmp_path / "range", idle_timeout=0.01)  # replay --kafka
    ck.wait_for_brokers(k)  # the start-up check
    kinds = [kind for kind, _ in _Recorder.configs]
    assert sorted(set(kinds)) == ["FakeAdmin", "FakeConsumer", "FakeProducer"] and len(kinds) == 5
    for kind, config in _Recorder.configs:
        assert expected.items() <= config.items(), kind


def test_sasl_credentials_without_a_sasl_protocol_are_an_error(monkeypatch):
    monkeypatch.setenv("CRM_KAFKA__SASL_PASSWORD", SASL_PASSWORD)
    with pytest.raises(SettingsError) as info:
        load_settings()
    msg = str(info.value)
    assert "bad setting CRM_KAFKA__SASL_PASSWORD: is set but CRM_KAFKA__SECURITY_PROTOCOL is plaintext" in msg
    assert SASL_PASSWORD not in msg and "\n" not in msg


def test_unreachable_sasl_broker_error_names_no_secret(monkeypatch, caplog):
    from connectors.kafka import KafkaUnavailable, wait_for_brokers
    from infra import free_port

    caplog.set_level(logging.DEBUG)
    k = load_settings(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}", "security_protocol": "sasl_plaintext",
                             "sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": SASL_PASSWORD,
                             "retry_give_up": 1}).kafka
    with pytest.raises(KafkaUnavailable) as info:
        wait_for_brokers(k, step_s=0.2)
    assert SASL_PASSWORD not in str(info.value) and SASL_PASSWORD not in caplog.text
    assert SASL_PASSWORD not in repr(k)  # a settings object printed by mistake shows ***


# ---------------------------------------------------------------------------- settings output


def test_settings_shows_effective_values_and_sources_with_secrets_masked(tmp_path):
    cfg = tmp_path / "crm.toml"
    cfg.write_text(f'[kafka]\nbootstrap_servers = "file:9092"\n[redis]\npassword = "{PASSWORD}"\n')
    env = {"CRM_REDIS__URL": f"rediss://crm:{PASSWORD}x@r.example:6380/0", "CRM_ABANDONED_CART__IDLE": "PT45M",
           "CRM_KAFKA__SECURITY_PROTOCOL": "sasl_ssl", "CRM_KAFKA__SASL_MECHANISM": "PLAIN",
           "CRM_KAFKA__SASL_PASSWORD": SASL_PASSWORD, "CRM_KAFKA__EXTRA": '{"sasl.oauthbearer.client.secret": "zz9"}'}
    res = cli("settings", "--config", str(cfg), env=env)
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in res.stdout.splitlines() if line.strip()}
    assert rows["CRM_ABANDONED_CART__IDLE"] == ["environment", "45m"]
    assert rows["CRM_KAFKA__BOOTSTRAP_SERVERS"] == ["file", "file:9092"]
    assert rows["CRM_TIME__LATENESS"] == ["default", "5m"]
    assert rows["CRM_REDIS__PASSWORD"] == ["file", "***"]
    assert rows["CRM_KAFKA__SASL_PASSWORD"] == ["environment", "***"]
    assert rows["CRM_REDIS__URL"] == ["environment", "rediss://crm:***@r.example:6380/0"]
    assert rows["CRM_KAFKA__EXTRA"] == ["environment", "sasl.oauthbearer.client.secret=***"]
    assert rows["CRM_RECOVERY"] == ["default", "True"]
    for secret in (PASSWORD, SASL_PASSWORD, "zz9"):
        assert secret not in res.stdout + res.stderr
    markdown = cli("settings", "--markdown").stdout
    assert "| `CRM_KAFKA__SASL_PASSWORD` | `None` |" in markdown


def test_effective_table_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_POLICY__COOLDOWN__ABANDONED_CART", "3600")  # one entry of a map
    s = load_settings()
    assert s.policy.cooldown["abandoned_cart"] == timedelta(hours=1)
    rows = {env: (value, source) for env, value, source in effective_table(s)}
    assert rows["CRM_POLICY__COOLDOWN"] == ("abandoned_cart=1h, proactive_outreach=7d", "environment+default")


# ---------------------------------------------------------------------------- unknown CRM_* variables


@pytest.mark.parametrize("name,closest", [
    ("CRM_KAFKA_BOOTSTRAP_SERVERS", "CRM_KAFKA__BOOTSTRAP_SERVERS"),
    ("CRM_RECOVERY_DIRECTORY", "CRM_RECOVERY_DIR"),
    ("crm_abandoned_cart_idle", "CRM_ABANDONED_CART__IDLE"),
    ("CRM_REDIS__PASSWORT", "CRM_REDIS__PASSWORD"),
])
def test_unknown_variable_names_the_closest_setting(name, closest):
    with pytest.raises(SettingsError) as info:
        check_environment({name: "x", "CRM_TEST_BROKER": "mock", "CRM_KAFKA__BOOTSTRAP_SERVERS": "k:1"})
    assert f"bad setting {name}: names no setting; did you mean {closest}?" in str(info.value)


def test_known_test_and_map_variables_pass():
    check_environment({"CRM_TEST_BROKER": "mock", "CRM_TEST_KEEP_TOPICS": "1", "CRM_KAFKA": "{}",
                       "CRM_POLICY__COOLDOWN__ABANDONED_CART": "60", "CRM_REDIS__URL": "redis://h/0", "PATH": "/"})


@pytest.mark.parametrize("command", [["generate", "--out", "OUT", "--customers", "1"], ["settings"],
                                     ["run"]])
def test_unknown_variable_stops_any_command_in_one_line(command, tmp_path):
    args = [str(tmp_path / "g") if a == "OUT" else a for a in command]
    res = cli(*args, env={"CRM_KAFKA_BOOTSTRAP_SERVERS": "other:9092"}, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == ("error: bad setting CRM_KAFKA_BOOTSTRAP_SERVERS: names no setting; did you mean "
                                  "CRM_KAFKA__BOOTSTRAP_SERVERS? (`crm-stream settings` lists them all)")
    assert not (tmp_path / "g").exists()
