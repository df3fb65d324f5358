"""Telemetry: Prometheus metrics (``crm_*``) and the plain counts behind the replay summary.

One :class:`Telemetry` per process. Labels are low-cardinality only: never a customer id.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Optional

from prometheus_client import CollectorRegistry, Counter as PCounter, Gauge, Histogram, start_http_server

LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Telemetry:
    def __init__(self, registry: Optional[CollectorRegistry] = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.models: dict[str, dict[str, Any]] = {}
        self._consumed: dict[tuple[str, str], Any] = {}
        self.recs_parts: dict[int, Any] = {}  # the recommenders of this process's model shards
        self.extra: dict[str, Any] = {}
        self.consumed = PCounter("crm_events_consumed", "Input messages read, by source and event type",
                                 ["source", "type"], registry=r)
        self.invalid = PCounter("crm_events_invalid", "Dead-lettered inputs by reason", ["reason"], registry=r)
        self.duplicate = PCounter("crm_events_duplicate", "Duplicate events ignored", registry=r)
        self.late = PCounter("crm_events_late", "Late events (applied, never re-open a trigger)", registry=r)
        self.emitted = PCounter("crm_triggers_emitted", "Triggers emitted by type", ["type"], registry=r)
        self.suppressed = PCounter("crm_triggers_suppressed", "Triggers suppressed by policy",
                                   ["type", "reason"], registry=r)
        self.event_lag = Histogram("crm_event_time_lag_seconds", "Processing time minus event ts at decode",
                                   buckets=LAG_BUCKETS, registry=r)
        self.trigger_latency = Histogram("crm_trigger_latency_seconds",
                                         "Event ts of the trigger to its write in a sink (live)",
                                         ["sink"], buckets=LAG_BUCKETS, registry=r)
        self.sink_writes = PCounter("crm_sink_writes", "Records written by sink", ["sink"], registry=r)
        self.sink_errors = PCounter("crm_sink_errors", "Failed write attempts by sink", ["sink"], registry=r)
        self.sink_retries = PCounter("crm_sink_retries", "Write retries by sink", ["sink"], registry=r)
        self.customers = Gauge("crm_customers_in_state", "Customers held in state by this process", registry=r)
        self.timers = Gauge("crm_pending_timers", "Customers with a pending event-time timer", registry=r)
        self.held = Gauge("crm_events_held", "Events waiting for the input watermark (a lagging input)",
                          registry=r)
        self.predictions = PCounter("crm_model_predictions", "Model predictions", ["model"], registry=r)
        self.labels = PCounter("crm_model_labels", "Labels learned from", ["model"], registry=r)
        self.roc_auc = Gauge("crm_model_roc_auc", "Progressive-validation ROC AUC", ["model"], registry=r)
        self.log_loss = Gauge("crm_model_log_loss", "Progressive-validation log loss", ["model"], registry=r)
        self.model_nonfinite = PCounter("crm_model_nonfinite_features",
                                        "Model calls refused because a feature was NaN or infinite "
                                        "(call = predict: no score; learn: label not learned)",
                                        ["model", "call"], registry=r)
        self.erased_events = PCounter("crm_events_erased", "Events of an erased customer dropped (ts at or before "
                                      "the erasure)", registry=r)
        self.erasures = PCounter("crm_erasures", "Erasures completed in the flow (erasure_completed records)",
                                 registry=r)
        self.quiet = PCounter("crm_quiet_holds", "Marketing held by the customer's quiet hours, and released",
                              ["type", "action"], registry=r)
        self.exposures = PCounter("crm_holdout_exposures", "Candidates sent or held out whose outcome is tracked",
                                  ["type", "group"], registry=r)
        self.outcomes = PCounter("crm_holdout_outcomes",
                                 "Tracked candidates whose attribution window ended, by whether an order came in it",
                                 ["type", "group", "converted"], registry=r)
        self.uplift = Gauge("crm_holdout_uplift", "Conversion rates of both groups, sent minus holdout and its 95 % "
                            "interval (Newcombe), from this process's ended windows", ["type", "stat"], registry=r)
        self.consumer_lag = Gauge("crm_kafka_consumer_lag_messages", "High watermark minus next offset",
                                  ["topic", "partition"], registry=r)
        self.partition_idle = Gauge("crm_kafka_partition_idle", "1 while an input partition is idle (nothing for "
                                    "kafka.idle_after: it holds no timer back), 0 otherwise (watermarks on)",
                                    ["topic", "partition"], registry=r)

    # The replay summary reads ``counts``; Prometheus reads the metrics. Both move together.
    def read(self, source: str, type: str, n: int = 1) -> None:
        self.counts["read"] += n
        child = self._consumed.get((source, type))
        if child is None:  # labels() costs more than the increment: keep the children
            child = self._consumed[(source, type)] = self.consumed.labels(source, type)
        child.inc(n)

    def dead_letter(self, reason: str) -> None:
        self.counts["invalid"] += 1
        self.counts["invalid:" + reason] += 1
        self.invalid.labels(reason).inc()

    def status(self, status: str) -> None:
        if status == "duplicate":
            self.counts["duplicate"] += 1
            self.duplicate.inc()
        elif status == "late":
            self.counts["late"] += 1
            self.late.inc()

    def nonfinite_features(self, model: str, call: str, n: int = 1) -> None:
        self.counts[f"nonfinite:{model}:{call}"] += n
        self.model_nonfinite.labels(model, call).inc(n)

    def erased(self, n: int = 1) -> None:
        self.counts["erased"] += n
        self.erased_events.inc(n)

    def erasure(self) -> None:
        self.counts["erasures"] += 1
        self.erasures.inc()

    def trigger(self, type: str) -> None:
        self.counts["trigger:" + type] += 1
        self.emitted.labels(type).inc()

    def suppress(self, type: str, reason: str) -> None:
        self.counts[f"suppressed:{type}:{reason}"] += 1
        self.suppressed.labels(type, reason).inc()

    def tally(self, kind: str, type: str, group: str = "", converted: bool = False) -> None:
        """Policy's counts of the contact policy: ``held`` / ``released`` by quiet hours, ``exposed``
        and ``outcome`` of the holdout comparison (operators.policy.Tally)."""
        if kind in ("held", "released"):
            self.counts[f"quiet:{type}:{kind}"] += 1
            self.quiet.labels(type, kind).inc()
        elif kind == "exposed":
            self.counts[f"exposed:{type}:{group}"] += 1
            self.exposures.labels(type, group).inc()
        else:
            self.counts[f"outcome:{type}:{group}:{int(converted)}"] += 1
            self.outcomes.labels(type, group, "true" if converted else "false").inc()

    def holdout_counts(self, type: str) -> dict[str, dict[str, int]]:
        c = self.counts
        out = {}
        for g in ("sent", "holdout"):
            x, no = c[f"outcome:{type}:{g}:1"], c[f"outcome:{type}:{g}:0"]
            out[g] = {"n": x + no, "converted": x, "open": c[f"exposed:{type}:{g}"] - x - no}
        return out

    def holdout_types(self) -> list[str]:
        return sorted({k.split(":")[1] for k in self.counts if k.startswith("exposed:")})

    def summary(self) -> dict[str, Any]:
        c = self.counts
        triggers = {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("trigger:")}
        suppressed: dict[str, int] = {}
        suppressed_by_reason: dict[str, dict[str, int]] = {}
        for k, v in sorted(c.items()):
            if k.startswith("suppressed:"):
                _, t, reason = k.split(":", 2)
                suppressed[t] = suppressed.get(t, 0) + v
                suppressed_by_reason.setdefault(t, {})[reason] = v
        return {
            "events_read": c["read"],
            "events_valid": c["read"] - c["invalid"] - c["duplicate"],
            "events_invalid": c["invalid"],
            "events_duplicate": c["duplicate"],
            "events_late": c["late"],
            "events_erased": c["erased"],
            "erasures": c["erasures"],
            "invalid_by_reason": {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("invalid:")},
            "triggers": triggers,
            "suppressed": suppressed,
            "suppressed_by_reason": suppressed_by_reason,
            "models": dict(self.models),
            "model_nonfinite_features": {k.split(":", 1)[1]: v for k, v in sorted(c.items())
                                         if k.startswith("nonfinite:")},
            "quiet_hours": _quiet_summary(c, suppressed_by_reason),
            **self.extra,
        }


def _quiet_summary(c: Counter, suppressed_by_reason: dict) -> dict[str, dict[str, int]]:
    """Per marketing type: held by quiet hours, released (judged again when they ended), dropped
    then because the reason was gone (``quiet_*``), and still held."""
    out: dict[str, dict[str, int]] = {}
    for k, v in sorted(c.items()):
        if k.startswith("quiet:"):
            _, t, action = k.split(":")
            out.setdefault(t, {"held": 0, "released": 0})[action] = v
    for t, entry in out.items():
        reasons = suppressed_by_reason.get(t, {})
        entry["dropped"] = {r: n for r, n in reasons.items() if r.startswith("quiet_")}
        entry["still_held"] = entry["held"] - entry["released"]  # at the end of a replay: night not over
    return out


_telemetry: Optional[Telemetry] = None


def telemetry() -> Telemetry:
    """The process's telemetry (created on first use)."""
    global _telemetry
    if _telemetry is None:
        _telemetry = Telemetry()
    return _telemetry


def reset_telemetry() -> Telemetry:
    global _telemetry
    _telemetry = Telemetry()
    return _telemetry


def serve_metrics(port: int, t: Optional[Telemetry] = None) -> None:
    """Expose ``/metrics`` on ``port`` (0 = off)."""
    if port:
        start_http_server(port, addr="0.0.0.0", registry=(t or telemetry()).registry)
