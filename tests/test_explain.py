"""`crm-stream explain` and `crm-stream backtest` on small hand-made logs (real replays)."""

from __future__ import annotations

import orjson
from helpers import at, ms_at
from typer.testing import CliRunner

from config.settings import load_settings
from flows.cli import app
from flows.explain import backtest, explain
from operators.events import format_ts


def write_log(path, rows):
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def cart(cid, minutes, n, **extra):
    return {"event_id": f"{cid}-{n}", "type": "add_to_cart", "customer_id": cid, "ts": at(minutes), "session_id": "s",
            "product_id": "p1", "price": 10.0, "quantity": 1, **extra}


def view(cid, minutes, n):
    return {"event_id": f"{cid}-{n}", "type": "page_view", "customer_id": cid, "ts": at(minutes), "session_id": "s"}


def order(cid, minutes, n):
    return {"event_id": f"{cid}-{n}", "type": "order_placed", "customer_id": cid, "ts": at(minutes), "order_id": f"o-{cid}",
            "total": 10.0, "items": [{"product_id": "p1", "quantity": 1, "price": 10.0}]}


def the_log(tmp_path):
    return write_log(tmp_path / "log.jsonl", [
        cart("forgot", 0, 1), cart("bought", 0, 1), order("bought", 5, 2),
        view("forgot", 300, 2), view("bought", 300, 3),
    ])


def test_explain_shows_the_cart_the_reminder_and_why_a_buyer_got_none(tmp_path):
    log = the_log(tmp_path)
    s = load_settings()
    forgot = explain(s, [log], "forgot", "abandoned_cart")
    assert [t["type"] for t in forgot["sent"]] == ["abandoned_cart"] and forgot["why"].startswith("sent 1")
    first = forgot["timeline"][0]
    assert first["event"] == "add_to_cart" and first["changed"]["cart"][1][0]["product_id"] == "p1"
    assert first["timer"]["now"] is not None  # the cart armed a timer
    fired = [r for r in forgot["timeline"] if r["candidates"]]
    assert fired[0]["decisions"][0]["decision"] == "sent"

    bought = explain(s, [log], "bought", "abandoned_cart")
    assert bought["sent"] == [] and "never came due" in bought["why"]
    assert [r["changed"].get("cart") for r in bought["timeline"][:2]][1][1] == []  # the order emptied it
    assert "never started" in explain(s, [log], "bought", "escalation")["why"]


def test_explain_names_the_policy_clause_that_held_a_candidate_back(tmp_path):
    rows = [cart("c", 0, 1), view("c", 60, 2), cart("c", 120, 3, product_id="p2"), view("c", 300, 4)]
    log = write_log(tmp_path / "log.jsonl", rows)
    result = explain(load_settings(), [log], "c", "abandoned_cart")
    assert len(result["sent"]) == 1 and [h["suppressed"] for h in result["suppressed"]] == ["cooldown"]


def test_backtest_reports_what_a_longer_cooldown_removes(tmp_path):
    rows = [cart("c", 0, 1), view("c", 60, 2), cart("c", 24 * 60 + 120, 3, product_id="p2"), view("c", 24 * 60 + 300, 4)]
    log = write_log(tmp_path / "log.jsonl", rows)
    proposed = load_settings(policy={"cooldown": {"abandoned_cart": 3 * 86400, "proactive_outreach": 7 * 86400}})
    report = backtest(load_settings(), proposed, [log], work=tmp_path / "bt")
    r = report["types"]["abandoned_cart"]
    assert r["sent"] == {"current": 2, "proposed": 1} and r["removed"] == 1 and r["added"] == 0
    assert r["suppressed"]["proposed"] == {"cooldown": 1}
    assert r["removed_examples"][0]["customer_id"] == "c"


def test_the_commands_print_a_table_and_json(tmp_path):
    log = the_log(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["explain", str(log), "--customer", "forgot", "--type", "abandoned_cart", "--json"])
    assert res.exit_code == 0, res.output
    assert orjson.loads(res.stdout)["why"].startswith("sent 1")
    cfg = tmp_path / "proposed.toml"
    cfg.write_text('[abandoned_cart]\nidle = "PT10H"\n')
    res = runner.invoke(app, ["backtest", str(log), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "abandoned_cart" in res.stdout and "1 -> 0" in res.stdout


def test_explain_refuses_a_replayed_directory_without_the_replay_files(tmp_path):
    """An empty --replayed directory must not read as 'nothing was sent': one line, exit 2."""
    log = the_log(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["explain", str(log), "--customer", "a", "--replayed", str(empty)])
    assert result.exit_code == 2
    assert "no triggers.jsonl or suppressed.jsonl" in result.output


def test_the_verdict_counts_the_held_back_beside_the_sent():
    from flows.explain import why

    sent = [{"type": "abandoned_cart", "event_ts": "2026-01-05T01:00:00Z", "reasons": ["cart_idle"]}]
    held = [{"type": "abandoned_cart", "suppressed": "cooldown"}, {"type": "abandoned_cart", "suppressed": "cooldown"},
            {"type": "abandoned_cart", "suppressed": "marketing_cap"}, {"type": "win_back", "suppressed": "cooldown"}]
    assert why("abandoned_cart", [], [], sent, held) == (
        "sent 1: 2026-01-05T01:00:00Z (cart_idle); held back cooldown x2, marketing_cap x1")


def iso(minutes):
    return format_ts(ms_at(minutes))


def test_a_timer_candidate_has_its_own_row_at_the_time_it_fell_due(tmp_path):
    """The cart's reminder fell due 30 min after the cart, not when the next page_view came."""
    log = the_log(tmp_path)
    rows = explain(load_settings(), [log], "forgot", "abandoned_cart")["timeline"]
    assert [(r["ts"], r["event"]) for r in rows] == [
        (iso(0), "add_to_cart"), (iso(30), "timer"), (iso(300), "page_view"), (iso(300), "end of input")]
    fired = rows[1]
    assert "abandoned_cart" in [c["type"] for c in fired["candidates"]]  # the session ended then too
    assert fired["candidates"][0]["event_ts"] == iso(30)
    assert [d["decision"] for d in fired["decisions"]] == ["sent"] and fired["changed"] == {}
    assert rows[2]["candidates"] == [] and rows[2]["decisions"] == []


def test_quiet_hours_hold_on_the_timer_row_and_release_on_their_own_row(tmp_path):
    log = write_log(tmp_path / "log.jsonl", [cart("c", 12 * 60, 1), view("c", 23 * 60, 2)])  # 22:00 UTC, 09:00
    s = load_settings(quiet_hours={"enabled": True}, consent={"default": "opt_out"},
                      holdout={"share": {"abandoned_cart": 0, "proactive_outreach": 0}})
    rows = explain(s, [log], "c", "abandoned_cart")["timeline"]
    assert [(r["ts"], r["event"]) for r in rows[:4]] == [
        (iso(12 * 60), "add_to_cart"), (iso(12 * 60 + 30), "timer"), (iso(22 * 60), "quiet hours end"),
        (iso(23 * 60), "page_view")]
    assert [(d["decision"], d["reason"]) for d in rows[1]["decisions"]] == [("held", "quiet_hours")]
    assert [(d["type"], d["decision"]) for d in rows[2]["decisions"]] == [("abandoned_cart", "sent")]


def test_the_table_is_readable_at_80_columns(tmp_path):
    """COLUMNS=80: no line wider, nothing cut off with an ellipsis, the verdicts and changes whole."""
    log = write_log(tmp_path / "log.jsonl", [
        cart("someone", 0, 1), cart("someone", 1, 2, product_id="p-with-a-rather-long-product-id-0001"),
        order("someone", 2, 3), cart("someone", 180, 4), view("someone", 400, 5)])
    res = CliRunner().invoke(app, ["explain", str(log), "--customer", "someone", "--type", "abandoned_cart"],
                             env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in res.stdout
    table = "\n".join(lines[:lines.index(next(ln for ln in lines if ln.startswith("sent ")))])
    assert "p-with-a-rather-long-product-id-0001" in table.replace(" ", "").replace("\n", "")  # folded, not cut
    row = next(i for i, ln in enumerate(lines) if "abandoned_cart (cart_idle):" in ln)
    assert lines[row].startswith(" 01-05 13:30:00")  # its own row, when it fell due
    assert lines[row + 1].split() == ["timer", "sent"]  # the decision beside it (wrapped), not on a later event
    assert "next timer: 13:30:00 (+30m)" in table and "tier: new -> regular" in table
    assert "open_orders: none ->" in table and "o-someone (placed)" in table
