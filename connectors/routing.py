"""Which Bytewax worker a state key lands on, so that few keys can still spread over workers.

Bytewax 0.21 routes a stateful step's key to worker ``siphash13(key) % workers`` (Rust's
``DefaultHasher``: SipHash-1-3 with zero keys over the UTF-8 bytes plus a ``0xff`` terminator).
With many keys (customers, products) that spreads evenly by itself. With a handful (one model
shard per worker) it does not: ``models/0`` and ``models/1`` both land on worker 1 of 2, and one
worker does all the model work. :func:`balanced_key` picks, for shard ``j``, a key that lands on
worker ``j % w`` for every worker count ``w`` from 1 to 8 (and spreads like any hash beyond), so a
key never depends on the worker count and recovery state keeps its keys across a rescale.

``tests/test_routing.py`` checks this against a real multi-worker run: if a Bytewax upgrade
changes its hash, the test fails, and the flow still runs correctly (only less evenly).
"""

from __future__ import annotations

from functools import lru_cache

_M = (1 << 64) - 1
SPREAD = 840  # lcm(1..8): a key with hash % 840 == j % 840 lands on j % w for every w <= 8


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M


def siphash13(data: bytes) -> int:
    """SipHash-1-3 with the zero key (what Rust's ``DefaultHasher::new()`` computes)."""
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573

    def rnd(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
        v0 = (v0 + v1) & _M
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _M
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _M
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _M
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
        return v0, v1, v2, v3

    n = len(data)
    full = n - n % 8
    for i in range(0, full, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = rnd(v0, v1, v2, v3)
        v0 ^= m
    b = ((n & 0xFF) << 56) | int.from_bytes(data[full:], "little")
    v3 ^= b
    v0, v1, v2, v3 = rnd(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = rnd(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, workers: int) -> int:
    """The worker (of ``workers``) that Bytewax routes state key ``key`` to."""
    return siphash13(key.encode() + b"\xff") % workers


@lru_cache(maxsize=4096)
def balanced_key(prefix: str, j: int) -> str:
    """``prefix + str(j)`` plus the shortest suffix that makes it land on worker ``j % w`` for every
    worker count ``w`` up to 8 (deterministic: the same key in every process and every run)."""
    want = j % SPREAD
    base = f"{prefix}{j}"
    if siphash13(base.encode() + b"\xff") % SPREAD == want:
        return base
    n = 0
    while True:
        key = f"{base}~{n:x}"
        if siphash13(key.encode() + b"\xff") % SPREAD == want:
            return key
        n += 1


def worker_of_bytes(key: bytes, workers: int) -> int:
    """:func:`worker_of` for a key given as its UTF-8 bytes."""
    return siphash13(key + b"\xff") % workers



def worker_keys(prefix: str, workers: int) -> list[str]:
    """One state key per worker: key ``j`` lands on worker ``j`` of exactly ``workers`` (for any
    count; :func:`balanced_key` stops spreading exactly beyond 8). Deterministic, found by search."""
    keys = []
    for j in range(workers):
        n = 0
        while worker_of(f"{prefix}{j}~{n:x}", workers) != j:
            n += 1
        keys.append(f"{prefix}{j}~{n:x}")
    return keys
