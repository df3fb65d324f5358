"""`crm-stream serve` against a real redis-server fed by `crm-stream replay --redis`, and the agent's
page in a real headless Chromium (installed from the OS packages when missing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn

from api.app import create_app
from config.settings import load_settings
from flows.generator import generate
from tests.infra import ensure_binary, free_port

pytestmark = pytest.mark.integration
KEY = "integration-key"
ROOT = Path(__file__).resolve().parents[1]


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def _replay(log: Path, out: Path, redis_url: str) -> None:
    cmd = [sys.executable, "-m", "flows.cli", "replay", str(log), "--triggers-out", str(out / "triggers.jsonl"),
           "--dlq-out", str(out / "dlq.jsonl"), "--summary", str(out / "summary.json"),
           "--profiles-out", str(out / "profiles.jsonl"), "--redis", redis_url]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, timeout=600)


class Served:
    """uvicorn in a thread on a free port."""

    def __init__(self, redis_url: str):
        settings = load_settings(api={"keys": [KEY]}, redis={"url": redis_url})
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port,
                                                    log_config=None, access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, redis_server):
    """A small generated log replayed into a fresh Redis, then served."""
    where = tmp_path_factory.mktemp("serve")
    generate(150, 10, 11, where)
    redis_server.client().flushall()
    _replay(where / "events.jsonl", where / "out", redis_server.url)
    served = Served(redis_server.url)
    yield where, served, redis_server
    served.stop()


def test_the_api_serves_what_the_replay_wrote(replayed):
    where, served, _ = replayed
    triggers = _lines(where / "out" / "triggers.jsonl")
    profiles = {p["customer_id"]: p for p in _lines(where / "out" / "profiles.jsonl")}
    assert triggers and profiles
    for cid in sorted({t["customer_id"] for t in triggers})[:25]:
        got = served.http.get(f"/v1/customers/{cid}").json()
        assert got["tier"] == profiles[cid]["tier"] and got["open_orders"] == profiles[cid]["open_orders"]
        own = sorted((t for t in triggers if t["customer_id"] == cid), key=lambda t: t["event_ts"], reverse=True)
        listed = served.http.get(f"/v1/customers/{cid}/triggers?limit=50").json()["triggers"]
        assert [t["trigger_id"] for t in listed] == [t["trigger_id"] for t in own][:50]
    held = next(c for c, p in sorted(profiles.items()) if any(k.startswith("last_suppressed.") for k in p))
    kind = next(k for k in profiles[held] if k.startswith("last_suppressed.")).split(".", 1)[1]
    assert served.http.get(f"/v1/customers/{held}").json()["last_suppressed"][kind] == \
        profiles[held][f"last_suppressed.{kind}"]
    stream, after = [], "0"
    while page := served.http.get(f"/v1/triggers?after={after}&limit=97").json()["items"]:
        stream += page
        after = page[-1]["id"]
    assert sorted(e["trigger"]["trigger_id"] for e in stream) == sorted(t["trigger_id"] for t in triggers)
    assert served.http.get("/v1/customers/no-such-customer").status_code == 404
    assert served.http.get("/readyz").status_code == 200


def test_a_second_replay_into_the_same_redis_adds_nothing(replayed, tmp_path):
    where, served, redis_server = replayed
    client = redis_server.client()
    before = (client.xlen("crm:triggers"), sorted(client.scan_iter("crm:customer:*:triggers")))
    sizes = {k: client.zcard(k) for k in before[1]}
    _replay(where / "events.jsonl", tmp_path, redis_server.url)
    assert client.xlen("crm:triggers") == before[0]  # the write-once key holds the stream and the index
    assert {k: client.zcard(k) for k in before[1]} == sizes


def _browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = ensure_binary("chromium", "chromium", "CHROMIUM_BIN", "Install it (`apt-get install -y chromium`)")
    driver = ensure_binary("chromedriver", "chromium-driver", "CHROMEDRIVER_BIN",
                           "Install it (`apt-get install -y chromium-driver`)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1366,900", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_the_agent_page_in_a_real_browser(replayed, tmp_path):
    from selenium.webdriver.common.by import By

    where, served, redis_server = replayed
    triggers = _lines(where / "out" / "triggers.jsonl")
    profiles = {p["customer_id"]: p for p in _lines(where / "out" / "profiles.jsonl")}
    sent = {t["customer_id"]: t for t in triggers}
    cid = next(c for c, p in sorted(profiles.items()) if p["open_orders"] and c in sent)
    order_id = profiles[cid]["open_orders"][0]["order_id"]
    browser = _browser(tmp_path)
    try:
        browser.get(f"{served.base}/healthz")
        browser.add_cookie({"name": "crm_api_key", "value": KEY})
        browser.get(f"{served.base}/agent/customers/{cid}")
        assert browser.find_element(By.ID, "customer-id").text == cid
        assert order_id in browser.find_element(By.ID, "orders").text
        rows = browser.find_element(By.ID, "triggers").text
        assert sent[cid]["type"] in rows and sent[cid]["reasons"][0] in rows
        browser.save_screenshot(str(tmp_path / "agent-page.png"))
        if os.environ.get("CRM_UPDATE_SCREENSHOT"):  # the README's picture, refreshed on purpose only
            shutil.copy(tmp_path / "agent-page.png", ROOT / "docs" / "agent-page.png")
        assert (tmp_path / "agent-page.png").stat().st_size > 10_000

        redis_server.client().delete(f"crm:customer:{cid}", f"crm:customer:{cid}:triggers")  # erased
        browser.get(f"{served.base}/agent/customers/{cid}")
        assert browser.title == "Customer not found" and order_id not in browser.page_source
        assert served.http.get(f"/agent/customers/{cid}").status_code == 404
    finally:
        browser.quit()


def test_the_customer_index_keeps_the_newest_by_event_time_once(redis_client, redis_url):
    """The sink's script: the index holds the newest ``customer_triggers`` by event time, and a
    re-emitted trigger (a restart) reaches neither the stream nor the index twice."""
    from config.settings import RedisSettings
    from connectors.redis_sink import RedisTriggerSink

    part = RedisTriggerSink(RedisSettings(url=redis_url, customer_triggers=3)).build("s", 0, 1)
    trig = [{"trigger_id": f"t{i}", "type": "escalation", "customer_id": "c1", "payload": {},
             "event_ts": f"2026-11-2{i}T10:00:00.000Z"} for i in (4, 1, 5, 2, 3)]  # arrival order is not ts order
    try:
        part.write_batch([("c1", t) for t in trig])
        part.write_batch([("c1", t) for t in trig[:2]])  # re-emitted after a restart
    finally:
        part.close()
    assert redis_client.xlen("crm:triggers") == 5
    kept = [orjson.loads(m)["trigger_id"] for m in redis_client.zrevrange("crm:customer:c1:triggers", 0, -1)]
    assert kept == ["t5", "t4", "t3"]
