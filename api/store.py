"""What the API reads from Redis (read only; the engine's sinks write it, CONTRACT.md section 7).

Every function takes a ``redis.asyncio`` client (bytes in, bytes out) and returns plain JSON
values. A customer without a ``crm:customer:{id}`` hash is unknown or erased: ``None``.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import orjson
import redis.asyncio as aioredis

from config.settings import RedisSettings
from connectors.redis_sink import customer_triggers_key

SCAN_CAP = 10_000
STREAM_ID = re.compile(r"^(0|\d{1,20}-\d{1,20})$")


def connect(cfg: RedisSettings) -> aioredis.Redis:
    """One pooled async client for the process (same URL as the engine's sinks)."""
    # the same credentials and TLS files as the engine's clients (connectors.redis_sink.client)
    return aioredis.Redis.from_url(cfg.url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=10,
                                   **cfg.client_kwargs())


def _value(raw: bytes) -> Any:
    """Hash values: JSON where they parse (numbers, lists, null), else the string as written."""
    text = raw.decode("utf-8", "replace")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


async def profile(client: aioredis.Redis, customer_id: str) -> Optional[dict]:
    """The profile hash decoded, ``last_trigger.{type}`` fields grouped under ``last_trigger``."""
    raw = await client.hgetall(f"crm:customer:{customer_id}")
    if not raw:
        return None
    out: dict[str, Any] = {"customer_id": customer_id, "last_trigger": {}}
    for k, v in raw.items():
        key = k.decode("utf-8", "replace")
        head, dot, kind = key.partition(".")
        if dot and head in ("last_trigger", "last_suppressed"):
            out.setdefault(head, {})[kind] = _value(v)
        else:
            out[key] = _value(v)
    return out


async def customer_triggers(client: aioredis.Redis, customer_id: str, limit: int) -> list[dict]:
    """The customer's newest triggers by event time, newest first (at most ``redis.customer_triggers``)."""
    members = await client.zrevrange(customer_triggers_key(customer_id), 0, limit - 1)
    return [orjson.loads(m) for m in members]


async def product_recs(client: aioredis.Redis, product_id: str, limit: int) -> list[dict]:
    """``crm:recs:{product_id}``, best first: ``[{product_id, score}]``; ``[]`` for an unknown product."""
    pairs = await client.zrevrange(f"crm:recs:{product_id}", 0, limit - 1, withscores=True)
    return [{"product_id": p.decode("utf-8", "replace"), "score": round(s, 6)} for p, s in pairs]


async def cart_recs(client: aioredis.Redis, products: list[str], limit: int) -> list[dict]:
    """Products that go with ``products`` (their ``crm:recs`` scores summed), the products left out."""
    scores: dict[str, float] = {}
    for p in products[:20]:
        for r in await product_recs(client, p, 50):
            if r["product_id"] not in products:
                scores[r["product_id"]] = scores.get(r["product_id"], 0.0) + r["score"]
    best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return [{"product_id": p, "score": round(s, 6)} for p, s in best]


async def trigger_page(client: aioredis.Redis, stream: str, after: str, limit: int,
                       type_: Optional[str]) -> tuple[list[dict], str]:
    """Stream entries strictly after ``after`` (a stream id; ``0`` = from the start), oldest first:
    ``([{id, trigger}], next cursor)``. The cursor moves past entries a ``type_`` filter skipped,
    so a consumer resumes where it stopped and never sees an entry twice. At most ``SCAN_CAP``
    entries are read per call: a rare type gives a short (even empty) page and a cursor further on."""
    items: list[dict] = []
    cursor = after
    scanned = 0
    while len(items) < limit and scanned < SCAN_CAP:
        start = "-" if cursor == "0" else f"({cursor}"
        entries = await client.xrange(stream, min=start, max="+", count=max(limit - len(items), 100 if type_ else 0))
        if not entries:
            break
        for entry_id, fields in entries:
            if len(items) >= limit:
                break
            scanned += 1
            cursor = entry_id.decode()
            if type_ is None or fields.get(b"type", b"").decode() == type_:
                items.append({"id": cursor, "trigger": orjson.loads(fields[b"trigger"])})
    return items, cursor


async def ready(client: aioredis.Redis) -> bool:
    try:
        return bool(await client.ping())
    except Exception:  # any failure to answer is "not ready", never a 500
        return False
