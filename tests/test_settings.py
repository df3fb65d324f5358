"""One typed settings object: defaults < TOML file < CRM_* environment; bad values in one line."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import _ENV_PATHS, SettingsError, _leaves, format_duration, load_settings, parse_duration


def test_defaults_are_the_contract_numbers():
    s = load_settings()
    assert s.abandoned_cart.idle == timedelta(minutes=30) and s.delay_apology.grace == timedelta(hours=2)
    assert s.escalation.frustration_threshold == 0.8 and s.proactive.churn_threshold == 0.7
    assert s.policy.marketing_cap == 2 and s.policy.cooldown["proactive_outreach"] == timedelta(days=7)
    assert s.time.lateness == timedelta(minutes=5) and s.labels.churn_horizon == timedelta(days=90)
    assert s.labels.churn_horizon_min == timedelta(days=3) and s.labels.churn_horizon_gaps == 4.0
    assert s.models.min_outcomes == 20 and s.models.auc_floor == 0.6


def test_toml_file_then_environment(tmp_path, monkeypatch):
    cfg = tmp_path / "crm.toml"
    cfg.write_text('metrics_port = 9000\n[abandoned_cart]\nidle = 2700\n[kafka]\nbootstrap_servers = "k:9092"\n')
    s = load_settings(cfg)
    assert s.abandoned_cart.idle == timedelta(minutes=45) and s.metrics_port == 9000
    assert s.kafka.bootstrap_servers == "k:9092"
    monkeypatch.setenv("CRM_ABANDONED_CART__IDLE", "PT10M")
    monkeypatch.setenv("CRM_KAFKA__BOOTSTRAP_SERVERS", "env:9092")
    s = load_settings(cfg)
    assert s.abandoned_cart.idle == timedelta(minutes=10) and s.kafka.bootstrap_servers == "env:9092"
    assert s.metrics_port == 9000  # untouched by the environment


@pytest.mark.parametrize("env,value", [("CRM_METRICS_PORT", "99999"), ("CRM_POLICY__MARKETING_CAP", "-1"),
                                       ("CRM_KAFKA__STARTING_OFFSET", "middle"), ("CRM_REDIS__DEDUP_TTL", "0")])
def test_bad_values_name_the_setting(env, value, monkeypatch):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert env in str(info.value) and "\n" not in str(info.value)


def test_missing_or_broken_toml(tmp_path):
    with pytest.raises(SettingsError):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[abandoned_cart\nidle = ")
    with pytest.raises(SettingsError):
        load_settings(bad)


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    env = {"CRM_ABANDONED_CART__IDLE": "soon", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "flows.cli", "generate", "--out", str(tmp_path), "--customers", "1"],
                         env=env, capture_output=True, text=True)
    # generate needs no settings; replay does
    res = subprocess.run([sys.executable, "-m", "flows.cli", "replay", "--kafka", "--from", "2026-01-01T00:00:00Z",
                          "--triggers-out", str(tmp_path / "t"), "--dlq-out", str(tmp_path / "d"),
                          "--summary", str(tmp_path / "s")], env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "CRM_ABANDONED_CART__IDLE" in res.stderr and len(res.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- through the CLI: one line, every command

COMMANDS = {  # every command that reads the settings, with what it needs besides them
    "settings": ["settings"],
    "replay": ["replay", "LOG", "--triggers-out", "OUT/t", "--dlq-out", "OUT/d", "--summary", "OUT/s"],
    "explain": ["explain", "LOG", "--customer", "c1"],
    "backtest": ["backtest", "LOG", "--config", "OK"],
    "demo": ["demo", "--out", "OUT/demo", "--customers", "1", "--days", "1"],
    "run": ["run"],
    "serve": ["serve"],
    "eval": ["eval", "cdnow", "--data", "LOG"],
    "recs-eval": ["recs-eval", "--train", "LOG", "--test", "LOG"],
}


def invoke(args, tmp_path, env=None, config=None):
    from typer.testing import CliRunner

    from flows.cli import app

    log = tmp_path / "log.jsonl"
    log.write_text("")
    ok = tmp_path / "ok.toml"
    ok.write_text("")
    args = [str(log) if a == "LOG" else str(ok) if a == "OK" else a.replace("OUT", str(tmp_path)) for a in args]
    if config is not None:
        args += ["--current" if args[0] == "backtest" else "--config", str(config)]
    return CliRunner().invoke(app, args, env=env)


def one_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_reports_a_bad_duration_in_the_environment_in_the_same_line(command, tmp_path):
    line = one_line(invoke(COMMANDS[command], tmp_path, env={"CRM_ABANDONED_CART__IDLE": "soon"}))
    assert line == ("error: bad setting CRM_ABANDONED_CART__IDLE: not a duration "
                    "(write e.g. 30m, 1h30m, 7d, PT30M or 1800 seconds)")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_reports_a_bad_value_in_the_settings_file_by_its_key(command, tmp_path):
    cfg = tmp_path / "crm.toml"
    cfg.write_text('[policy]\ncap_window = "a day"\n')
    line = one_line(invoke(COMMANDS[command], tmp_path, config=cfg))
    assert line == (f"error: bad setting policy.cap_window in {cfg} (CRM_POLICY__CAP_WINDOW): not a duration "
                    "(write e.g. 30m, 1h30m, 7d, PT30M or 1800 seconds)")


@pytest.mark.parametrize("content, words", [
    ("[abandoned_cart]\nidle = 0\n", "bad setting abandoned_cart.idle in {cfg} (CRM_ABANDONED_CART__IDLE): must be "
                                     "a positive duration (e.g. 30m, PT30M or 1800 seconds)"),
    ("[abandoned_cart]\nidel = 60\n", "bad setting abandoned_cart.idel in {cfg}: names no setting; did you mean "
                                      "abandoned_cart.idle (CRM_ABANDONED_CART__IDLE)?"),
    ("[kafka]\nstarting_offset = \"middle\"\n", "bad setting kafka.starting_offset in {cfg} "
                                                "(CRM_KAFKA__STARTING_OFFSET): must be one of beginning, end"),
    ("metrics_port = 99999\n", "bad setting metrics_port in {cfg} (CRM_METRICS_PORT): must be at most 65535"),
    ("[policy.cooldown]\nabandoned_cart = true\n", "bad setting policy.cooldown.abandoned_cart in {cfg} "
                                                   "(CRM_POLICY__COOLDOWN__ABANDONED_CART): not a duration"),
    ("[rules]\nenabled = [\"nope\"]\n", "bad setting rules.enabled in {cfg} (CRM_RULES__ENABLED): unknown rule 'nope'"),
    ('[[rules.declared]]\nname = "x"\nopen = "order_placed"\ndue = { idle = "soon" }\n',
     "bad setting rules.declared in {cfg} (CRM_RULES__DECLARED): rule 'x', field due.idle: not a duration (write"),
    ("[kafka]\nsasl_username = \"u\"\n", "bad setting kafka.sasl_username in {cfg} (CRM_KAFKA__SASL_USERNAME): is set "
                                         "but CRM_KAFKA__SECURITY_PROTOCOL is plaintext"),
    ("[abandoned_cart\n", "bad settings file {cfg}: Expected ']'"),
    (None, "bad settings file {cfg}: not found"),
])
def test_a_bad_settings_file_is_one_line_naming_the_key_without_pydantic_words(content, words, tmp_path):
    cfg = tmp_path / "crm.toml"
    if content is not None:
        cfg.write_text(content)
    for command in ("settings", "backtest"):
        line = one_line(invoke(COMMANDS[command], tmp_path, config=cfg))
        assert line.startswith("error: " + words.format(cfg=cfg)), line
        assert not any(w in line for w in ("Input should", "timedelta", "Value error", "pattern", "Extra inputs"))


@pytest.mark.parametrize("env, words", [
    ({"CRM_POLICY__COOLDOWN__ABANDONED_CART": "x"}, "bad setting CRM_POLICY__COOLDOWN__ABANDONED_CART: not a duration"),
    ({"CRM_POLICY__COOLDOWN": '{"abandoned_cart": "x"}'},
     "bad setting CRM_POLICY__COOLDOWN__ABANDONED_CART: not a duration"),
    ({"CRM_RECOVERY": "maybe"}, "bad setting CRM_RECOVERY: not true or false (write true, false, 1 or 0)"),
    ({"CRM_METRICS_PORT": "abc"}, "bad setting CRM_METRICS_PORT: not a whole number"),
    ({"CRM_PROACTIVE__EXIT_WORDS": "[bad"}, "bad setting CRM_PROACTIVE__EXIT_WORDS: not valid JSON"),
    ({"CRM_RULES__ENABLED": '["nope"]'}, "bad setting CRM_RULES__ENABLED: unknown rule 'nope'"),
    ({"CRM_KAFKA_BOOTSTRAP_SERVERS": "k:9092"},
     "bad setting CRM_KAFKA_BOOTSTRAP_SERVERS: names no setting; did you mean CRM_KAFKA__BOOTSTRAP_SERVERS?"),
])
def test_a_bad_variable_is_one_line_naming_it_without_pydantic_words(env, words, tmp_path):
    line = one_line(invoke(COMMANDS["replay"], tmp_path, env=env))
    assert line.startswith("error: " + words), line
    assert not any(w in line for w in ("Input should", "timedelta", "Value error", "EnvSettingsSource"))


# ---------------------------------------------------------------------------- durations as users write them


@pytest.mark.parametrize("text, seconds", [("1800", 1800), ("2700.5", 2700.5), ("30m", 1800), ("1h30m", 5400),
                                           ("7d", 7 * 86400), ("10s", 10), ("1.5h", 5400), (" 2H ", 7200),
                                           ("PT30M", 1800), ("P7D", 7 * 86400), ("01:00:00", 3600), (90, 90)])
def test_durations_take_seconds_compact_units_and_iso_8601(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["soon", "30 minutes", "1ms", "m30", "nan", "inf", "1e400", "", True, [60]])
def test_what_is_not_a_duration_says_what_is(text):
    with pytest.raises(ValueError, match=r"not a duration \(write e\.g\. 30m"):
        parse_duration(text)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3000)))
def test_a_printed_duration_reads_back_the_same(d):
    text = format_duration(d)
    assert parse_duration(text) == d and " " not in text


def test_settings_prints_durations_as_users_write_them_and_they_read_back(tmp_path, monkeypatch):
    """`crm-stream settings` output, pasted into the environment, gives the same settings."""
    from typer.testing import CliRunner

    from flows.cli import app

    cfg = tmp_path / "crm.toml"
    cfg.write_text('[abandoned_cart]\nidle = 5400\n[policy]\ncap_window = "PT12H"\n[policy.cooldown]\n'
                   'abandoned_cart = 90061.25\n[time]\nlateness = "0.5s"\n')
    first = CliRunner().invoke(app, ["settings", "--config", str(cfg)])
    assert first.exit_code == 0, first.output
    rows = {line.split()[0]: (line.split(None, 2) + [""])[2] for line in first.stdout.splitlines()}
    assert rows["CRM_ABANDONED_CART__IDLE"] == "1h30m" and rows["CRM_POLICY__CAP_WINDOW"] == "12h"
    assert rows["CRM_TIME__LATENESS"] == "0.5s" and rows["CRM_REDIS__DEDUP_TTL"] == "30d"
    assert rows["CRM_SNAPSHOT_INTERVAL"] == "10s"
    assert rows["CRM_POLICY__COOLDOWN"] == "abandoned_cart=1d1h1m1.25s, proactive_outreach=7d"  # a map's entry too
    from_file = load_settings(cfg)
    durations = [env for env, path in _ENV_PATHS.items() if isinstance(attr(from_file, path), timedelta)]
    assert len(durations) >= 30
    for env in durations:  # every duration, as printed, now from the environment
        monkeypatch.setenv(env, rows[env])
    monkeypatch.setenv("CRM_POLICY__COOLDOWN__ABANDONED_CART", "1d1h1m1.25s")
    second = CliRunner().invoke(app, ["settings"])
    assert second.exit_code == 0, second.output
    again = {line.split()[0]: line.split(None, 2)[1:] for line in second.stdout.splitlines()}
    assert all(again[env] == ["environment", rows[env]] for env in durations)
    assert again["CRM_POLICY__COOLDOWN"] == ["environment+default", "abandoned_cart=1d1h1m1.25s, proactive_outreach=7d"]
    from_env = load_settings()
    for env in durations:
        assert attr(from_env, _ENV_PATHS[env]) == attr(from_file, _ENV_PATHS[env]), env
    assert from_env.policy.cooldown["abandoned_cart"] == from_file.policy.cooldown["abandoned_cart"]


def attr(obj, path):
    for name in path:
        obj = getattr(obj, name)
    return obj


# ---------------------------------------------------------------------------- maps merge over their defaults

# Per map-valued setting: two entries (key, as written, as read) to set; every map must be here.
MAP_ENTRIES = {
    "CRM_DELAY_APOLOGY__TIER_MULTIPLIER": (("vip", "2.0", 2.0), ("new", "0.5", 0.5)),
    "CRM_POLICY__COOLDOWN": (("abandoned_cart", "1h", timedelta(hours=1)),
                             ("proactive_outreach", "3d", timedelta(days=3))),
    "CRM_POLICY__PURCHASE_QUIET": (("abandoned_cart", "30m", timedelta(minutes=30)),
                                   ("price_drop", "1h", timedelta(hours=1))),
    "CRM_KAFKA__TOPICS": (("catalog", "shop.catalog", "shop.catalog"), ("orders", "shop.orders", "shop.orders")),
    "CRM_KAFKA__EXTRA": (("linger.ms", "5", "5"), ("client.id", "crm", "crm")),
    "CRM_HOLDOUT__SHARE": (("escalation", "0.1", 0.1), ("abandoned_cart", "0.2", 0.2)),
    "CRM_HOLDOUT__ATTRIBUTION": (("abandoned_cart", "2d", timedelta(days=2)), ("escalation", "1d", timedelta(days=1))),
}


def _map_defaults():
    return {env: (path, f.get_default(call_default_factory=True)) for env, path, f in _leaves()
            if isinstance(f.get_default(call_default_factory=True), dict)}


@pytest.fixture
def no_suite_maps(monkeypatch):
    monkeypatch.delenv("CRM_HOLDOUT__SHARE", raising=False)  # conftest's zeros: here the defaults are tested


def test_every_map_setting_is_checked_here():
    assert set(_map_defaults()) == set(MAP_ENTRIES)
    assert len(MAP_ENTRIES) >= 7


def _toml_table(path, entries) -> str:
    return f"[{'.'.join(path)}]\n" + "".join(f'"{key}" = "{text}"\n' for key, text in entries)


@pytest.mark.usefixtures("no_suite_maps")
@pytest.mark.parametrize("env", sorted(MAP_ENTRIES))
@pytest.mark.parametrize("given", ["entry variable", "map variable", "group variable", "file table"])
def test_one_entry_changes_that_entry_only(env, given, monkeypatch, tmp_path):
    """One entry set any way a user can set it: the map is its defaults with that entry changed."""
    import json

    path, default = _map_defaults()[env]
    (key, text, value), _ = MAP_ENTRIES[env]
    cfg = None
    if given == "entry variable":
        monkeypatch.setenv(f"{env}__{key.upper()}", text)
    elif given == "map variable":
        monkeypatch.setenv(env, json.dumps({key: text}))
    elif given == "group variable":
        monkeypatch.setenv(f"CRM_{path[0].upper()}", json.dumps({path[1]: {key: text}}))
    else:
        cfg = tmp_path / "crm.toml"
        cfg.write_text(_toml_table(path, [(key, text)]))
    got = attr(load_settings(cfg), path)
    assert got == {**default, key: value}
    assert len(got) >= len(default) and all(got[k] == default[k] for k in default if k != key)


@pytest.mark.usefixtures("no_suite_maps")
@pytest.mark.parametrize("env", sorted(MAP_ENTRIES))
def test_environment_over_file_over_defaults_key_by_key_and_settings_shows_the_merged_map(env, monkeypatch,
                                                                                         tmp_path):
    from typer.testing import CliRunner

    from config.settings import show
    from flows.cli import app

    path, default = _map_defaults()[env]
    (k1, t1, v1), (k2, t2, v2) = MAP_ENTRIES[env]
    cfg = tmp_path / "crm.toml"
    cfg.write_text(_toml_table(path, [(k1, t1), (k2, t1)]))
    monkeypatch.setenv(f"{env}__{k2.upper()}", t2)
    expected = {**default, k1: v1, k2: v2}
    assert attr(load_settings(cfg), path) == expected
    res = CliRunner().invoke(app, ["settings", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in res.stdout.splitlines()}
    source = "environment+file" + ("+default" if set(default) - {k1, k2} else "")
    assert rows[env] == [source, show(expected, env)]


@pytest.mark.usefixtures("no_suite_maps")
@pytest.mark.parametrize("how", ["variable", "file"])
def test_an_empty_map_is_one_line_not_the_defaults_dropped(how, tmp_path, monkeypatch):
    """`{}` once meant "none of the defaults" (no holdouts); now entries merge, so it would change
    nothing: it stops the command, naming the setting."""
    cfg = None
    if how == "variable":
        monkeypatch.setenv("CRM_HOLDOUT__SHARE", "{}")
    else:
        cfg = tmp_path / "crm.toml"
        cfg.write_text("[holdout.share]\n")
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    where = "CRM_HOLDOUT__SHARE" if how == "variable" else f"holdout.share in {cfg} (CRM_HOLDOUT__SHARE)"
    assert str(info.value).startswith(f"bad setting {where}: an empty map changes nothing")
    assert "\n" not in str(info.value)
    monkeypatch.setenv("CRM_HOLDOUT__SHARE", '{"abandoned_cart": 0, "proactive_outreach": 0}')  # how to turn off
    assert set(load_settings().holdout.share.values()) == {0.0}
