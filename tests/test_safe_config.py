"""Safe configuration: Kafka security settings reach librdkafka, secrets never shown, unknown CRM_*
variables stop the command, `crm-stream settings` shows effective values, safe live defaults."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import at, ms_at
from infra import TlsFiles

import bytewax.connectors.kafka as bytewax_kafka
import confluent_kafka.admin
import connectors.kafka as kafka
from config.settings import SettingsError, check_environment, load_settings, mask_url
from flows.live import recovery_config, resume_note
from flows.replay import ReplayOutputs, replay
from operators.policy import PolicyConfig, PolicyState
from operators.triggers import Candidate, Suppressed

SASL_PW, KEY_PW, REDIS_PW = "sasl-Secret-1", "key-Secret-2", "redis-Secret-3"


class Recorded(Exception):
    """Raised by a client stand-in once it has recorded the config it was given."""


def recorder(seen: list):
    def make(config, *a, **kw):
        seen.append(dict(config))
        raise Recorded()
    return make


@pytest.fixture
def sasl_settings(tmp_path):
    ca = TlsFiles(tmp_path / "tls").ca  # librdkafka reads it when a client is made
    return load_settings(kafka={"bootstrap_servers": "127.0.0.1:1", "security_protocol": "SASL_SSL",
                                "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "crm",
                                "sasl_password": SASL_PW, "ssl_ca_location": str(ca),
                                "ssl_key_password": KEY_PW,
                                "extra": {"ssl.endpoint.identification.algorithm": "none"}})


def test_kafka_security_settings_reach_consumer_producer_and_admin(sasl_settings, monkeypatch):
    want = {"security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "crm",
            "sasl.password": SASL_PW, "ssl.key.password": KEY_PW,
            "ssl.endpoint.identification.algorithm": "none",
            "ssl.ca.location": str(sasl_settings.kafka.ssl_ca_location)}
    seen: list[dict] = []
    monkeypatch.setattr(bytewax_kafka, "Consumer", recorder(seen))  # the live source's consumer
    monkeypatch.setattr(kafka, "Producer", recorder(seen))          # triggers and dead letters
    monkeypatch.setattr(kafka, "Consumer", recorder(seen))          # replay --kafka export
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", recorder(seen))  # the start-up broker check
    source = kafka.KafkaEventSource(sasl_settings.kafka, tail=False, topics=["t"])
    sink = kafka.kafka_sink(sasl_settings.kafka, "triggers")
    for build in (lambda: source.inner.build_part("s", "0-t", None), lambda: sink.build_part("s", "producer", None),
                  lambda: kafka.export_range(sasl_settings.kafka, 0, 1, Path("/nonexistent")),
                  lambda: kafka.wait_for_brokers(sasl_settings.kafka)):
        with pytest.raises(Recorded):
            build()
    assert len(seen) == 4
    for config in seen:
        assert want.items() <= config.items(), config
    # and librdkafka itself accepts them (an unknown or misspelt property would raise here)
    monkeypatch.undo()
    from confluent_kafka import Consumer, Producer

    Producer(seen[1]).flush(0)
    Consumer(seen[0]).close()


def test_sasl_credentials_without_a_sasl_protocol_are_refused():
    with pytest.raises(SettingsError) as info:
        load_settings(kafka={"sasl_username": "crm", "sasl_password": SASL_PW})
    assert "CRM_KAFKA__SECURITY_PROTOCOL" in str(info.value) and SASL_PW not in str(info.value)


def test_redis_tls_files_need_rediss():
    with pytest.raises(SettingsError, match="rediss"):
        load_settings(redis={"url": "redis://h:6379/0", "ssl_ca_certs": "/ca.pem"})
    kw = load_settings(redis={"url": "rediss://h:6380/0", "username": "crm", "password": REDIS_PW,
                              "ssl_ca_certs": "/ca.pem"}).redis.client_kwargs()
    assert kw == {"username": "crm", "password": REDIS_PW, "ssl_ca_certs": "/ca.pem", "ssl_check_hostname": True}


def test_urls_are_masked():
    assert mask_url("rediss://crm:pw@h:6380/0") == "rediss://crm:***@h:6380/0"
    assert mask_url("redis://:pw@h/0") == "redis://:***@h/0"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


def crm(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRM_") or k.startswith("CRM_TEST_")}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_settings_shows_effective_values_and_their_source_with_secrets_masked(tmp_path):
    cfg = tmp_path / "crm.toml"
    cfg.write_text(f'metrics_port = 9000\n[redis]\nurl = "rediss://crm:{REDIS_PW}@r:6380/0"\n'
                   f'[kafka.extra]\n"sasl.oauthbearer.client.secret" = "{KEY_PW}"\n')
    res = crm("settings", "--config", str(cfg), cwd=tmp_path,
              env={"CRM_KAFKA__BOOTSTRAP_SERVERS": "k1:9093", "CRM_KAFKA__SECURITY_PROTOCOL": "sasl_ssl",
                   "CRM_KAFKA__SASL_USERNAME": "crm", "CRM_KAFKA__SASL_PASSWORD": SASL_PW,
                   "CRM_REDIS__PASSWORD": REDIS_PW})
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in res.stdout.splitlines()}
    assert rows["CRM_KAFKA__BOOTSTRAP_SERVERS"] == ["environment", "k1:9093"]
    assert rows["CRM_METRICS_PORT"] == ["file", "9000"]
    assert rows["CRM_REDIS__URL"] == ["file", "rediss://crm:***@r:6380/0"]
    assert rows["CRM_ABANDONED_CART__IDLE"] == ["default", "1800 s"]
    assert rows["CRM_KAFKA__SASL_PASSWORD"] == ["environment", "***"]
    assert rows["CRM_REDIS__PASSWORD"] == ["environment", "***"]
    assert rows["CRM_KAFKA__EXTRA"] == ["file", "sasl.oauthbearer.client.secret=***"]
    assert rows["CRM_RECOVERY"] == ["default", "True"]
    for secret in (SASL_PW, KEY_PW, REDIS_PW):
        assert secret not in res.stdout + res.stderr


def test_an_invalid_value_next_to_a_secret_never_quotes_it(tmp_path):
    res = crm("settings", cwd=tmp_path, env={"CRM_REDIS__URL": f"http://crm:{REDIS_PW}@r/0"})
    assert res.returncode == 2 and "CRM_REDIS__URL" in res.stderr
    assert REDIS_PW not in res.stderr + res.stdout and len(res.stderr.strip().splitlines()) == 1


def test_an_unknown_crm_variable_stops_any_command_naming_the_closest(tmp_path):
    res = crm("settings", cwd=tmp_path, env={"CRM_KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert "CRM_KAFKA_BOOTSTRAP_SERVERS" in line and "did you mean CRM_KAFKA__BOOTSTRAP_SERVERS" in line
    res = crm("generate", "--out", str(tmp_path / "g"), "--customers", "1", cwd=tmp_path,
              env={"CRM_REDIS__PASWORD": "x"})  # a command that reads no settings stops too
    assert res.returncode == 2 and "did you mean CRM_REDIS__PASSWORD" in res.stderr
    assert not (tmp_path / "g").exists()


def test_known_variables_maps_groups_and_test_variables_pass():
    check_environment({"CRM_KAFKA__BOOTSTRAP_SERVERS": "k", "CRM_POLICY__COOLDOWN__ABANDONED_CART": "60",
                       "CRM_KAFKA": "{}", "CRM_TEST_BROKER": "mock", "PATH": "/bin"})
    with pytest.raises(SettingsError, match="did you mean CRM_POLICY__MAX_TRIGGER_AGE"):
        check_environment({"CRM_POLICY__MAX_TRIGGER_AGES": "1"})
    with pytest.raises(SettingsError, match="no setting is named like it"):
        check_environment({"CRM_WHATEVER_ELSE_ENTIRELY": "1"})


# ---------------------------------------------------------------------------- safe live defaults


def cand(type, ts):
    return Candidate(type, "c1", ts, ["r"], {}, f"{type}|{ts}", tier="regular")


def test_live_policy_suppresses_old_marketing_as_stale_but_never_service():
    cfg = PolicyConfig(load_settings(policy={"max_trigger_age": 3600}))
    now = ms_at(days=4)
    state = PolicyState()
    [out] = state.decide(cand("abandoned_cart", ms_at(0)), cfg, now)
    assert isinstance(out, Suppressed) and out.reason == "stale"
    [out] = state.decide(cand("proactive_outreach", ms_at(days=3)), cfg, now)
    assert isinstance(out, Suppressed) and out.reason == "stale"
    assert not state.marketing  # a stale one does not count towards the cap
    assert isinstance(state.decide(cand("delay_apology", ms_at(0)), cfg, now)[0], Candidate)
    fresh = state.decide(cand("abandoned_cart", now - 3599_000), cfg, now)
    assert isinstance(fresh[0], Candidate)
    replayed = PolicyState().decide(cand("abandoned_cart", ms_at(0)), cfg)  # no wall clock: replay
    assert isinstance(replayed[0], Candidate)


def test_replay_reports_how_many_live_would_drop_as_stale(tmp_path):
    def cart(eid, cust, ts):
        return {"event_id": eid, "type": "add_to_cart", "customer_id": cust, "ts": ts, "session_id": "s",
                "product_id": "p1", "price": 3.0}

    log = tmp_path / "a.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in [
        cart("1", "old", at(0)),     # due +30 min, 4 h before the last event: stale live
        cart("2", "new", at(240)),   # due +270 min, 0 min before it: not stale
        {"event_id": "3", "type": "page_view", "customer_id": "x", "ts": at(270), "session_id": "s"},
    ]))
    out = ReplayOutputs(tmp_path / "t.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json")
    summary = replay(load_settings(policy={"max_trigger_age": 3600}), [log], out)
    assert summary["triggers"]["abandoned_cart"] == 2  # a replay drops none
    assert summary["stale_if_live"] == {"abandoned_cart": 1, "proactive_outreach": 0}
    assert orjson.loads(out.summary.read_bytes())["stale_if_live"]["abandoned_cart"] == 1


def test_recovery_is_on_by_default_and_the_stop_message_names_no_missing_snapshot(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.recovery and settings.recovery_dir == Path("crm-recovery")
    assert "no snapshot was taken yet" in resume_note(settings)  # nothing there: claim nothing
    assert recovery_config(settings, 2) is not None
    assert len(list((tmp_path / "crm-recovery").glob("part-*.sqlite3"))) == 2
    assert "no snapshot was taken yet" in resume_note(settings)  # initialised, still no snapshot
    with caplog.at_level(logging.WARNING):
        assert recovery_config(load_settings(recovery=False), 1) is None
    assert "RECOVERY IS OFF" in caplog.text
    assert "recovery is off" in resume_note(load_settings(recovery=False))
