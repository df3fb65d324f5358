"""Redis edges: the ``crm:triggers`` stream (written once per trigger id) and the profile hashes.

A trigger is written by one Lua script: ``SET crm:trigger:{id} NX EX ttl`` and, only if that
succeeded, ``XADD crm:triggers MAXLEN ~ n`` and ``ZADD crm:customer:{customer_id}:triggers`` (the
customer's newest ``redis.customer_triggers`` by event time, for the API). All happen or none, so a replay after a crash
(Bytewax resumes from the last snapshot and re-emits) never duplicates a stream entry. A batch
is one pipeline; on a connection error the whole batch is retried with backoff (it is idempotent)
until ``redis.retry_give_up`` has passed, then the error stops the worker with a clear message.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime
from typing import Any, Optional

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from config.jsonsafe import dumps, encode_str
from config.settings import RedisSettings
from connectors.metrics import telemetry

log = logging.getLogger("crm.redis")

WRITE_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
                        'trigger_id', ARGV[3], 'type', ARGV[4], 'customer_id', ARGV[5], 'trigger', ARGV[6])
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1 - tonumber(ARGV[8]))
  return id
end
return false
"""


class RedisUnavailable(RuntimeError):
    pass


def with_retries(cfg: RedisSettings, sink: str, action):
    """Run ``action()``; on a connection error retry with capped exponential backoff."""
    deadline = time.monotonic() + cfg.retry_give_up.total_seconds()
    delay = 0.05
    while True:
        try:
            return action()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            telemetry().sink_errors.labels(sink).inc()
            if time.monotonic() >= deadline:
                raise RedisUnavailable(f"redis unreachable for {cfg.retry_give_up}, giving up: {exc}") from exc
            telemetry().sink_retries.labels(sink).inc()
            log.warning("redis write failed (%s); retrying in %.2fs", exc, delay)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


def _client(cfg: RedisSettings) -> redis.Redis:
    return redis.Redis.from_url(cfg.url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10)


def _iso_to_epoch(ts: str) -> float:
    try:
        return datetime.fromisoformat(ts).timestamp()
    except (TypeError, ValueError, OverflowError):  # latency is best effort: never the reason a write fails
        return time.time()


def customer_triggers_key(customer_id: str) -> str:
    """Sorted set of a customer's newest triggers (member: trigger JSON, score: event time in ms)."""
    return f"crm:customer:{customer_id}:triggers"


class _RedisPartition(StatelessSinkPartition):
    """A worker's connection; subclasses write a batch with one pipeline."""

    def __init__(self, cfg: RedisSettings):
        self.cfg = cfg
        self.client = _client(cfg)

    def close(self) -> None:
        self.client.close()


class _RedisSink(DynamicSink):
    partition: type[_RedisPartition]

    def __init__(self, cfg: RedisSettings):
        self.cfg = cfg

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisPartition:
        return self.partition(self.cfg)


class _TriggerPartition(_RedisPartition):
    def __init__(self, cfg: RedisSettings):
        super().__init__(cfg)
        self.script = self.client.register_script(WRITE_ONCE)
        self.ttl = int(cfg.dedup_ttl.total_seconds())

    def write_batch(self, items: list[tuple[str, dict]]) -> None:
        def write():
            pipe = self.client.pipeline(transaction=False)
            for _, trig in items:
                # bytes, not str: redis-py would raise on a lone surrogate (validation keeps them out)
                self.script(keys=[encode_str(f"crm:trigger:{trig['trigger_id']}"), self.cfg.stream,
                                  encode_str(customer_triggers_key(trig["customer_id"]))],
                            args=[self.ttl, self.cfg.stream_maxlen, encode_str(trig["trigger_id"]),
                                  encode_str(trig["type"]), encode_str(trig["customer_id"]), dumps(trig),
                                  int(_iso_to_epoch(trig["event_ts"]) * 1000), self.cfg.customer_triggers],
                            client=pipe)
            return pipe.execute()

        results = with_retries(self.cfg, "redis_triggers", write)
        written = sum(1 for r in results if r)
        t = telemetry()
        t.sink_writes.labels("redis_triggers").inc(written)
        t.counts["redis_duplicates_skipped"] += len(items) - written
        now = time.time()
        for _, trig in items:
            t.trigger_latency.labels("redis").observe(max(0.0, now - _iso_to_epoch(trig["event_ts"])))


class RedisTriggerSink(_RedisSink):
    """Takes ``(customer_id, trigger dict)`` items."""

    partition = _TriggerPartition


def hash_value(v: Any) -> bytes:
    """Strings as they are (UTF-8); everything else as JSON (so ``null``, numbers and lists read back).
    Never raises: see :mod:`config.jsonsafe`."""
    return encode_str(v) if isinstance(v, str) else dumps(v)


class _ProfilePartition(_RedisPartition):
    def write_batch(self, items: list[tuple[str, tuple[str, dict, bool]]]) -> None:
        merged: dict[str, dict] = {}
        absent: list[tuple[str, str, str]] = []
        for _, (customer_id, fields, defaults) in items:  # one HSET per customer per batch
            if defaults:
                absent.extend((customer_id, k, hash_value(v)) for k, v in fields.items())
            else:
                merged.setdefault(customer_id, {}).update(fields)

        def write():
            pipe = self.client.pipeline(transaction=False)
            for customer_id, key, value in absent:
                pipe.hsetnx(encode_str(f"crm:customer:{customer_id}"), encode_str(key), value)
            for customer_id, fields in merged.items():
                pipe.hset(encode_str(f"crm:customer:{customer_id}"),
                          mapping={encode_str(k): hash_value(v) for k, v in fields.items()})
            return pipe.execute()

        with_retries(self.cfg, "redis_profiles", write)
        telemetry().sink_writes.labels("redis_profiles").inc(len(merged))


class RedisProfileSink(_RedisSink):
    """Takes ``(customer_id, (customer_id, fields, defaults))`` items; partial updates merged by HSET
    (HSETNX for defaults)."""

    partition = _ProfilePartition


class _RecsPartition(_RedisPartition):
    def write_batch(self, items: list[tuple[str, list]]) -> None:
        latest = dict(items)  # one write per product per batch: the newest list wins

        def write():
            pipe = self.client.pipeline(transaction=True)  # readers never see a half-replaced set
            for product_id, top in latest.items():
                key = encode_str(f"crm:recs:{product_id}")
                pipe.delete(key)
                if top:
                    pipe.zadd(key, {encode_str(b): float(score) for b, score in top})
            return pipe.execute()

        with_retries(self.cfg, "redis_recs", write)
        telemetry().sink_writes.labels("redis_recs").inc(len(latest))


class RedisRecsSink(_RedisSink):
    """Takes ``(product_id, [(other_product_id, score)])``: the sorted set ``crm:recs:{product_id}``."""

    partition = _RecsPartition


def read_profile(client: redis.Redis, customer_id: str) -> Optional[dict]:
    """The profile hash decoded back (JSON fields parsed), for tools and tests."""
    raw = client.hgetall(f"crm:customer:{customer_id}")
    if not raw:
        return None
    out = {}
    for k, v in raw.items():
        key, text = k.decode(), v.decode()
        try:
            out[key] = orjson.loads(text)
        except orjson.JSONDecodeError:
            out[key] = text
    return out
