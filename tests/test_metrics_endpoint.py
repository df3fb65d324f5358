"""The engine's /metrics endpoint over HTTP passes `promtool check metrics` (lint included)."""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import infra  # noqa: E402
from test_ops import ensure_promtool, run_promtool, sampled_telemetry  # noqa: E402


@pytest.mark.integration
def test_metrics_endpoint_passes_promtool():
    try:
        promtool = ensure_promtool()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    from prometheus_client.parser import text_string_to_metric_families

    from connectors.metrics import serve_metrics

    t = sampled_telemetry()
    # realistic label values on top of the generic samples
    t.read("clickstream", "page_view", 5)
    t.dead_letter("malformed_json")
    t.trigger("abandoned_cart")
    t.suppress("proactive_outreach", "cooldown")
    t.trigger_latency.labels("redis").observe(0.2)
    t.consumer_lag.labels("crm.orders", "2").set(17)

    port = infra.free_port()
    serve_metrics(port, t)
    assert infra.wait_for_port("127.0.0.1", port, timeout=10), "metrics server did not start"
    body = b""
    for _ in range(50):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                body = resp.read()
            break
        except OSError:
            time.sleep(0.1)
    assert body, "no scrape output"

    families = {f.name for f in text_string_to_metric_families(body.decode())}
    for metric in ("crm_events_consumed", "crm_events_invalid", "crm_triggers_emitted", "crm_triggers_suppressed",
                   "crm_event_time_lag_seconds", "crm_trigger_latency_seconds", "crm_sink_errors",
                   "crm_customers_in_state", "crm_pending_timers", "crm_model_roc_auc", "crm_model_log_loss",
                   "crm_kafka_consumer_lag_messages"):
        assert metric in families, metric
    assert b'crm_events_consumed_total{source="clickstream",type="page_view"} 5.0' in body

    rc, out = run_promtool(promtool, "check", "metrics", stdin=body)
    assert rc == 0, f"promtool check metrics failed:\n{out}"
    assert out.strip() == "", f"promtool lint findings:\n{out}"
