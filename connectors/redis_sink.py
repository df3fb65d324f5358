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
from urllib.parse import urlsplit

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


class RedisRefused(RuntimeError):
    """The server answered but refused us (wrong user or password, an ACL without the rights, a
    certificate that does not verify): retrying cannot help."""


def _refusal(cfg: RedisSettings, exc: Exception) -> Optional[RedisRefused]:
    """A clear one-line error for ``exc`` if it is a refusal, else None. Names the user and the
    URL with its password masked, never the password."""
    user = cfg.username or urlsplit(cfg.url).username  # AUTH user: the setting, else the URL's
    who = f"user {user!r}" if user else "the default user"
    if isinstance(exc, (redis.AuthenticationError, redis.AuthenticationWrongNumberOfArgsError)) or \
            "WRONGPASS" in str(exc) or "NOAUTH" in str(exc):
        return RedisRefused(f"redis at {cfg.safe_url} refused {who}: wrong username or password, or the user "
                            f"is disabled (CRM_REDIS__USERNAME, CRM_REDIS__PASSWORD, or those in the URL)")
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return RedisRefused(f"redis at {cfg.safe_url}: {who} lacks a permission the engine needs "
                            f"({str(exc).splitlines()[0]}); its ACL needs ~crm:* and the read, write and "
                            f"scripting commands")
    if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
        return RedisRefused(f"redis at {cfg.safe_url}: the server's TLS certificate does not verify "
                            f"(CRM_REDIS__SSL_CA_CERTS, CRM_REDIS__SSL_CHECK_HOSTNAME)")
    if cfg.url.startswith("rediss") and ("wrong version number" in str(exc) or "record layer failure" in str(exc)):
        return RedisRefused(f"redis at {cfg.safe_url}: the TLS handshake failed (is that port TLS?)")
    return None


def with_retries(cfg: RedisSettings, sink: str, action):
    """Run ``action()``; on a connection error retry with capped exponential backoff."""
    deadline = time.monotonic() + cfg.retry_give_up.total_seconds()
    delay = 0.05
    while True:
        try:
            return action()
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
            raise _refusal(cfg, exc) from None  # the cause may quote the server's reply, nothing secret
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            refused = _refusal(cfg, exc)
            if refused is not None:
                raise refused from None
            telemetry().sink_errors.labels(sink).inc()
            if time.monotonic() >= deadline:
                raise RedisUnavailable(f"redis unreachable for {cfg.retry_give_up}, giving up: {exc}") from exc
            telemetry().sink_retries.labels(sink).inc()
            log.warning("redis write failed (%s); retrying in %.2fs", exc, delay)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


def client(cfg: RedisSettings, **kwargs: Any) -> redis.Redis:
    """A client on ``redis.url`` with the ACL user, password and TLS settings: every Redis
    connection of the engine is made here."""
    return redis.Redis.from_url(cfg.url, **{"socket_timeout": 5, "socket_connect_timeout": 2,
                                            "health_check_interval": 10, **cfg.client_kwargs(), **kwargs})


def check_redis(cfg: RedisSettings) -> None:
    """PING once at start, so a wrong password or certificate stops ``run`` at once with one clear
    line (:class:`RedisRefused`); an unreachable server is left to the writes' retries."""
    c = client(cfg)
    try:
        c.ping()
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
        refused = _refusal(cfg, exc)
        if refused is not None:
            raise refused from None
        log.warning("redis at %s does not answer yet (%s); writes will retry", cfg.safe_url, type(exc).__name__)
    finally:
        c.close()



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
        self.client = client(cfg)

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
    def write_batch(self, items: list[tuple[str, tuple[str, Optional[dict], Any]]]) -> None:
        merged: dict[str, dict] = {}
        absent: list[tuple[str, str, str]] = []
        erased: list[dict] = []
        for _, (customer_id, fields, defaults) in items:  # one HSET per customer per batch
            if fields is None:  # an erasure (``defaults`` is its audit record): what came before goes
                merged.pop(customer_id, None)
                absent = [a for a in absent if a[0] != customer_id]
                erased.append(defaults)
            elif defaults:
                absent.extend((customer_id, k, hash_value(v)) for k, v in fields.items())
            else:
                merged.setdefault(customer_id, {}).update(fields)

        for record in erased:  # before this batch's writes: a customer who came back is written after
            erase_customer(self.client, self.cfg, record)

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
    (HSETNX for defaults). ``(customer_id, (customer_id, None, record))`` erases the customer
    (:func:`erase_customer`) in the order of the updates."""

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


SCAN_CHUNK = 2000  # stream entries read per XRANGE while looking for an erased customer's triggers


def _trigger_entries(client: redis.Redis, stream: str, customer_id: bytes) -> tuple[list, list]:
    """(entry ids, trigger ids) of the customer's entries in the trigger stream: a scan in chunks
    (O(stream length), once per erasure; the stream has no index by customer)."""
    entries, triggers, start = [], [], "-"
    while True:
        chunk = client.xrange(stream, min=start, max="+", count=SCAN_CHUNK)
        for entry_id, fields in chunk:
            if fields.get(b"customer_id") == customer_id:
                entries.append(entry_id)
                triggers.append(fields.get(b"trigger_id", b""))
        if len(chunk) < SCAN_CHUNK:
            return entries, triggers
        start = b"(" + chunk[-1][0]


def erase_customer(client: redis.Redis, cfg: RedisSettings, record: dict) -> None:
    """Delete what Redis holds of the customer of an ``erasure_completed`` record: the profile hash
    ``crm:customer:{id}`` and its trigger index ``crm:customer:{id}:triggers``, its entries in the
    trigger stream and their ``crm:trigger:{id}`` keys;
    then, in one transaction with the deletes, record the tombstone in ``crm:tombstones`` and the
    record (with the Redis counts) in ``crm:audit``. Idempotent: run again after a restart, it
    finds nothing more to delete and records the erasure again."""
    cid = encode_str(record["customer_id"])

    def run():
        entries, triggers = _trigger_entries(client, cfg.stream, cid)
        done = {**record, "removed": {**record["removed"], "redis_trigger_entries": len(entries)}}
        pipe = client.pipeline(transaction=True)
        pipe.delete(b"crm:customer:" + cid, encode_str(customer_triggers_key(record["customer_id"])))
        if entries:
            pipe.xdel(cfg.stream, *entries)
            pipe.delete(*[b"crm:trigger:" + t for t in triggers if t])
        pipe.hset(cfg.tombstones, record["tombstone"], str(record["erased_at_ms"]))
        pipe.xadd(cfg.audit_stream, {"type": "erasure_completed", "customer_id": cid, "record": dumps(done)})
        return pipe.execute()

    with_retries(cfg, "redis_erasures", run)
    telemetry().sink_writes.labels("redis_erasures").inc()


def load_tombstones(cfg: RedisSettings) -> list[tuple[str, int]]:
    """The ``crm:tombstones`` hash as (hash, erased_at ms) pairs (read once at start)."""
    conn = client(cfg)
    try:
        raw = with_retries(cfg, "redis_tombstones", lambda: conn.hgetall(cfg.tombstones))
    finally:
        conn.close()
    return [(k.decode("ascii", "replace"), int(v)) for k, v in raw.items() if v.isdigit()]


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
