"""Operations files: Prometheus config and alerts, Grafana dashboard, Dockerfile, docker-compose.yml, logs.

Docker cannot run here, so the compose stack is checked against the repository instead:
services, env vars (real settings), mounted paths, ports, volumes, topics. ``promtool``
(Debian package ``prometheus``) checks the Prometheus files; it is installed with apt when
missing and running as root, otherwise the tests fail with a message saying so (never skip).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import infra  # noqa: E402 - tests/ is on sys.path (conftest)
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROM_DIR = ROOT / "config" / "prometheus"
GRAFANA_DIR = ROOT / "config" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "crm-stream.json"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
METRIC_RE = re.compile(r"\bcrm_[a-z_]+")


# --------------------------------------------------------------------------
# promtool (same pattern as infra.ensure_redis_server_binary)
# --------------------------------------------------------------------------


def ensure_promtool() -> str:
    """Path of ``promtool`` (``PROMTOOL_BIN`` overrides); the Debian package ``prometheus`` when missing."""
    return infra.ensure_binary("promtool", "prometheus", "PROMTOOL_BIN",
                               "Install it (`sudo apt-get install -y prometheus`, or a Prometheus release tarball)",
                               apt_args=("--no-install-recommends",))
    apt = shutil.which("apt-get")
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not (apt and is_root):
        raise RuntimeError(
            "promtool is not on PATH and cannot be installed automatically "
            f"(apt-get {'found' if apt else 'missing'}, running as {'root' if is_root else 'non-root'}). "
            "Install it (`sudo apt-get install -y prometheus`, or a Prometheus release tarball) "
            "or point PROMTOOL_BIN at a promtool binary. These tests never skip."
        )
    print("[crm-stream tests] promtool not found: apt-get update && apt-get install -y prometheus",
          file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed with exit code {res.returncode}:\n"
                               f"{(res.stdout + res.stderr)[-3000:]}")
    found = shutil.which("promtool") or ("/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None)
    if not found:
        raise RuntimeError("apt-get install prometheus succeeded but promtool is still not found")
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    try:
        return ensure_promtool()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


def run_promtool(promtool: str, *args: str, stdin: bytes | None = None, cwd: Path | None = None):
    res = subprocess.run([promtool, *args], input=stdin, capture_output=True, cwd=cwd, timeout=120)
    return res.returncode, (res.stdout + res.stderr).decode(errors="replace")


# --------------------------------------------------------------------------
# what the engine really exports
# --------------------------------------------------------------------------


def sampled_telemetry():
    """A real Telemetry with one sample in every metric (labelled ones too), so all families render."""
    from prometheus_client import Counter, Gauge, Histogram, Summary
    from prometheus_client.metrics import MetricWrapperBase

    from connectors.metrics import Telemetry

    t = Telemetry()
    touched = 0
    for metric in vars(t).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        child = metric.labels(*["x"] * len(metric._labelnames)) if metric._labelnames else metric
        if isinstance(metric, Counter):
            child.inc()
        elif isinstance(metric, Gauge):
            child.set(1)
        elif isinstance(metric, (Histogram, Summary)):
            child.observe(1.5)
        else:  # pragma: no cover - a new metric type: make the test say so
            raise AssertionError(f"don't know how to sample {type(metric).__name__}")
        touched += 1
    assert touched >= 15, f"only {touched} metrics found on Telemetry"
    return t


@pytest.fixture(scope="module")
def exported_names() -> set[str]:
    """Every sample name in the scrape output (``_total``, ``_bucket``, ``_sum``... included)."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(sampled_telemetry().registry).decode()
    names = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert {"crm_events_consumed_total", "crm_event_time_lag_seconds_bucket", "crm_model_roc_auc"} <= names
    return names


def load_yaml(path: Path):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


# --------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------


def alert_rules() -> list[dict]:
    doc = load_yaml(PROM_DIR / "alerts.yml")
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules(promtool):
    rc, out = run_promtool(promtool, "check", "rules", str(PROM_DIR / "alerts.yml"))
    assert rc == 0, out
    assert "SUCCESS" in out, out


def test_promtool_check_config(promtool, tmp_path):
    # A copy with the same layout, checked from an unrelated cwd: rule_files must resolve
    # relative to the config file, as they do under /etc/prometheus in the container.
    dest = tmp_path / "etc" / "prometheus"
    shutil.copytree(PROM_DIR, dest)
    rc, out = run_promtool(promtool, "check", "config", str(dest / "prometheus.yml"), cwd=tmp_path)
    assert rc == 0, out
    assert "SUCCESS: 1 rule files found" in out, out


def test_promtool_alert_unit_tests(promtool):
    """config/prometheus/alerts_test.yml: each alert fires on a synthetic bad situation, not on a healthy one."""
    rc, out = run_promtool(promtool, "test", "rules", str(PROM_DIR / "alerts_test.yml"), cwd=PROM_DIR)
    assert rc == 0, out
    tested = set(re.findall(r"alertname:\s*(\w+)", (PROM_DIR / "alerts_test.yml").read_text()))
    assert {r["alert"] for r in alert_rules()} <= tested


def test_alerts_cover_the_issue_and_are_annotated():
    rules = {r["alert"]: r for r in alert_rules()}
    wanted = {
        "CrmKafkaConsumerLagGrowing": ("crm_kafka_consumer_lag_messages", "deriv("),
        "CrmDeadLetterRateHigh": ("crm_events_invalid_total", "0.01"),
        "CrmSinkErrors": ("crm_sink_errors_total", "rate("),
        "CrmNoEvents": ("crm_events_consumed_total", "10m"),
        "CrmModelAucLow": ("crm_model_roc_auc", "< 0.7"),
        "CrmEventTimeLagHigh": ("crm_event_time_lag_seconds_bucket", "histogram_quantile(0.99"),
    }
    assert set(wanted) <= set(rules), sorted(rules)
    for name, needles in wanted.items():
        for needle in needles:
            assert needle in rules[name]["expr"], (name, needle)
    expected_for = {"CrmKafkaConsumerLagGrowing": "10m", "CrmDeadLetterRateHigh": "5m", "CrmSinkErrors": "5m",
                    "CrmModelAucLow": "30m", "CrmEventTimeLagHigh": "10m"}
    for name, dur in expected_for.items():
        assert rules[name]["for"] == dur, name
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"].get("summary") and rule["annotations"].get("description"), name
    assert "mirrors a setting" in (PROM_DIR / "alerts.yml").read_text()


def test_alert_metric_names_exist(exported_names):
    for rule in alert_rules():
        names = set(METRIC_RE.findall(rule["expr"]))
        assert names, f"{rule['alert']} uses no crm_* metric"
        assert names <= exported_names, f"{rule['alert']}: unknown metrics {sorted(names - exported_names)}"


def test_scrape_config_targets_the_compose_engine():
    prom = load_yaml(PROM_DIR / "prometheus.yml")
    assert prom["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    targets = [t for sc in jobs["crm-stream"]["static_configs"] for t in sc["targets"]]
    services = load_yaml(COMPOSE)["services"]
    port = services["engine"]["environment"]["CRM_METRICS_PORT"]
    assert targets == [f"engine:{port}"]


# --------------------------------------------------------------------------
# Grafana
# --------------------------------------------------------------------------


def provisioned_datasource() -> dict:
    doc = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    (ds,) = doc["datasources"]
    return ds


def dashboard_panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows carry their panels inside
    return out


def test_grafana_provisioning():
    ds = provisioned_datasource()
    assert ds["type"] == "prometheus" and ds["uid"] and ds["isDefault"]
    assert ds["url"] == "http://prometheus:9090"
    prov = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "crm.yml")
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./config/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./config/grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_dashboard_is_valid_and_complete(exported_names):
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "crm-stream" and dash["title"]
    assert 36 <= dash["schemaVersion"] <= 41
    uid = provisioned_datasource()["uid"]
    panels = dashboard_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    all_exprs = []
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not (mine & cells), f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": uid}, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no target"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == uid, p["title"]
            names = set(METRIC_RE.findall(t["expr"]))
            assert names, f"panel {p['title']!r}: target without crm_* metric: {t['expr']}"
            assert names <= exported_names, f"panel {p['title']!r}: unknown metrics {sorted(names - exported_names)}"
            all_exprs.append(t["expr"])
    joined = "\n".join(all_exprs)
    # What the issue asks to see: throughput, lag, triggers, suppression, latency percentiles,
    # model quality, errors, customers in state.
    for needle in (
        "sum by (source) (rate(crm_events_consumed_total",
        "crm_event_time_lag_seconds_bucket",
        "sum by (type) (rate(crm_triggers_emitted_total",
        "sum by (type, reason) (rate(crm_triggers_suppressed_total",
        "histogram_quantile(0.5, sum by (le, sink) (rate(crm_trigger_latency_seconds_bucket",
        "histogram_quantile(0.95, sum by (le, sink) (rate(crm_trigger_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, sink) (rate(crm_trigger_latency_seconds_bucket",
        "crm_model_roc_auc", "crm_model_log_loss",
        "sum by (reason) (rate(crm_events_invalid_total",
        "crm_sink_errors_total", "crm_sink_retries_total",
        "crm_customers_in_state", "crm_kafka_consumer_lag_messages",
    ):
        assert needle in joined, needle


# --------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: str(v) for k, v in env.items()}


def command_text(service: dict) -> str:
    cmd = service.get("command") or ""
    return "\n".join(cmd) if isinstance(cmd, list) else str(cmd)


def test_compose_services_have_image_or_build(compose):
    services = compose["services"]
    assert {"kafka", "kafka-init", "redis", "engine", "prometheus", "grafana", "generator"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kenv = env_of(services["kafka"])
    assert kenv["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "PLAINTEXT://kafka:9092" in kenv["KAFKA_ADVERTISED_LISTENERS"]
    assert services["engine"]["build"] == "."
    assert services["generator"]["profiles"] == ["generator"]


def test_compose_crm_env_vars_are_real_settings(compose):
    from config.settings import load_settings, settings_table

    known = {row[0] for row in settings_table()}
    for name, svc in compose["services"].items():
        env = {k: v for k, v in env_of(svc).items() if k.startswith("CRM_")}
        unknown = set(env) - known
        assert not unknown, f"service {name}: not a setting: {sorted(unknown)}"
        if env:  # and the values load
            old = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                load_settings()
            finally:
                for k, v in old.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
    engine = env_of(compose["services"]["engine"])
    assert engine["CRM_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert engine["CRM_REDIS__URL"] == "redis://redis:6379/0"
    assert engine["CRM_METRICS_PORT"] == "9464"
    assert engine["CRM_RECOVERY_DIR"]


def test_compose_mounts_volumes_and_ports(compose):
    services = compose["services"]
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                assert (ROOT / src).resolve().exists(), f"service {name}: {src} does not exist in the repo"
            else:
                assert src in declared, f"service {name}: volume {src} not declared"
                used.add(src)
    assert used == declared, f"declared but unused volumes: {sorted(declared - used)}"
    engine = services["engine"]
    recovery = env_of(engine)["CRM_RECOVERY_DIR"]
    assert any(v.split(":")[1] == recovery for v in engine["volumes"]), "recovery dir must be a volume"
    host_ports: list[str] = []
    for svc in services.values():
        for p in svc.get("ports", []):
            parts = str(p).split(":")
            assert len(parts) >= 2, f"publish {p} with an explicit host port"
            host_ports.append(parts[-2])
    assert len(host_ports) == len(set(host_ports)), f"host ports collide: {host_ports}"
    assert f"{env_of(engine)['CRM_METRICS_PORT']}:" in " ".join(map(str, engine["ports"])) + ":"


def test_compose_dependencies_and_topics(compose):
    from config.settings import KafkaSettings

    services = compose["services"]
    init = [n for n, s in services.items() if "kafka-topics.sh" in command_text(s)]
    assert init == ["kafka-init"]
    deps = services["engine"]["depends_on"]
    assert {"kafka", "redis", "kafka-init"} <= set(deps)
    assert deps["kafka-init"]["condition"] == "service_completed_successfully"
    assert deps["kafka"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in services["kafka"] and "healthcheck" in services["redis"]
    k = KafkaSettings()
    script = command_text(services["kafka-init"])
    for topic in (*k.input_topics, k.triggers_topic, k.deadletter_topic):
        assert topic in script, f"topic {topic} is not created"
    assert "--partitions 3" in script and "--if-not-exists" in script
    for name, svc in services.items():
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_compose_dollars_are_escaped():
    """Compose interpolates $VAR itself: shell variables in commands must be written $$VAR."""
    for n, line in enumerate(COMPOSE.read_text().splitlines(), 1):
        stripped = line.replace("$$", "")
        assert "$" not in stripped, f"docker-compose.yml:{n}: unescaped $ in {line.strip()!r}"


def test_compose_generator_uses_existing_commands(compose):
    from flows.cli import app
    from typer.main import get_command

    commands = set(get_command(app).commands)
    script = command_text(compose["services"]["generator"])
    used = set(re.findall(r"crm-stream\s+([a-z-]+)", script))
    assert used and used <= commands, f"unknown crm-stream commands: {sorted(used - commands)}"
    for svc in ("engine", "generator"):
        cmd = compose["services"][svc].get("command")
        if cmd and compose["services"][svc].get("entrypoint") is None:
            assert cmd[0] in commands, f"{svc}: crm-stream {cmd[0]} does not exist"


@pytest.mark.integration
def test_compose_generator_script_produces_to_the_right_topics(compose, kafka_broker, kafka_topics, tmp_path):
    """Run the generator service's own shell script (here, not in Docker) against the test broker."""
    from confluent_kafka import Consumer, TopicPartition

    from operators.events import CHAT_TYPES, CLICKSTREAM_TYPES, ORDER_TYPES

    svc = compose["services"]["generator"]
    assert svc["entrypoint"][:2] == ["/bin/sh", "-c"]
    script = command_text(svc).replace("$$", "$").replace("/tmp/crm-generator", str(tmp_path / "gen"))
    topics = {"CLICKSTREAM": kafka_topics("click"), "ORDERS": kafka_topics("orders"), "CHAT": kafka_topics("chat")}
    env = dict(os.environ, **{k: str(v) for k, v in env_of(svc).items()})
    env.update({f"CRM_KAFKA__{k}_TOPIC": v for k, v in topics.items()})
    env.update(CRM_KAFKA__BOOTSTRAP_SERVERS=kafka_broker.bootstrap, GEN_CUSTOMERS="150", GEN_DAYS="5",
               GEN_RATE="0", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    res = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [ln for ln in (tmp_path / "gen" / "events.jsonl").read_bytes().split(b"\n") if ln]
    assert f"produced {len(lines)} events, 0 failed" in res.stdout

    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "ops-test",
                         "enable.auto.commit": False})
    got: dict[str, list[bytes]] = {name: [] for name in topics}
    by_topic = {topic: name for name, topic in topics.items()}
    try:
        assignment = [TopicPartition(topic, p, 0) for topic in topics.values()
                      for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
        consumer.assign(assignment)
        deadline = time.monotonic() + 60
        while sum(map(len, got.values())) < len(lines) and time.monotonic() < deadline:
            for m in consumer.consume(1000, timeout=0.5):
                if m.error() is None:
                    got[by_topic[m.topic()]].append(m.value())
        for m in consumer.consume(1000, timeout=0.5):  # nothing more than produced
            if m.error() is None:
                got[by_topic[m.topic()]].append(m.value())
    finally:
        consumer.close()
    assert sum(map(len, got.values())) == len(lines)
    assert sorted(v for vs in got.values() for v in vs) == sorted(lines)
    def parsed(values):  # the generator's deliberately bad lines may land anywhere
        for v in values:
            try:
                obj = json.loads(v)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("type") in CLICKSTREAM_TYPES | ORDER_TYPES | CHAT_TYPES:
                yield obj

    for name, types in (("ORDERS", ORDER_TYPES), ("CHAT", CHAT_TYPES)):
        good = list(parsed(got[name]))
        assert good and all(o["type"] in types for o in good), name
    assert {o["type"] for o in parsed(got["CLICKSTREAM"])} & CLICKSTREAM_TYPES


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile():
    ins = dockerfile_instructions()
    ops = [op for op, _ in ins]
    assert ins[0] == ("FROM", "python:3.11-slim")
    users = [arg for op, arg in ins if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image must run as a non-root user"
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN"), "USER after the last RUN"
    volumes = " ".join(arg for op, arg in ins if op == "VOLUME")
    assert "/var/lib/crm-stream/recovery" in volumes
    env = " ".join(arg for op, arg in ins if op == "ENV")
    assert "CRM_RECOVERY_DIR=/var/lib/crm-stream/recovery" in env
    assert ("EXPOSE", "9464") in ins
    assert json.loads(dict(ins)["ENTRYPOINT"]) == ["crm-stream"]
    assert json.loads(dict(ins)["CMD"]) == ["run"]
    assert any(op == "RUN" and "pip install ." in arg for op, arg in ins)
    # every package pyproject lists is copied in, and every COPY source exists
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    copied = set()
    for op, arg in ins:
        if op == "COPY":
            *srcs, _dest = arg.split()
            for src in srcs:
                assert (ROOT / src).exists(), f"COPY {src}: missing"
                copied.add(src.rstrip("/"))
    tops = {p.split(".")[0] for p in packages}  # a subpackage (flows.generator) comes with its parent
    assert tops <= copied, f"packages not copied: {sorted(tops - copied)}"
    assert {"pyproject.toml", "README.md"} <= copied


def test_dockerignore():
    entries = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert {".venv", ".git", "demo-out", "__pycache__", ".pytest_cache", ".hypothesis"} <= entries


# --------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------


def test_json_logging():
    from config.logging import setup_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        setup_logging("INFO", component="run", worker=2, stream=stream)
        setup_logging("INFO", component="run", worker=2, stream=stream)  # idempotent: no duplicate lines
        log = logging.getLogger("crm.redis")
        log.info("redis back after %d s", 30, extra={"sink": "redis", "retries": 4, "ts": "clash"})
        log.debug("customer text only at DEBUG")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("write failed")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["level"] == "INFO" and first["logger"] == "crm.redis"
    assert first["component"] == "run" and first["worker"] == 2
    assert first["message"] == "redis back after 30 s"
    assert first["sink"] == "redis" and first["retries"] == 4 and first["extra_ts"] == "clash"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert second["level"] == "ERROR" and second["exc_type"] == "ValueError" and "boom" in second["traceback"]
    with pytest.raises(ValueError):
        setup_logging("LOUD", component="run")
