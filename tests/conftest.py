"""Shared fixtures: a real redis-server and a Kafka-protocol broker.

Nothing here is started unless a test asks for the fixture; nothing is
marked automatically (integration tests mark themselves with
``@pytest.mark.integration``).

Fixtures
--------
redis_server   session  infra.RedisServer (free port, never 6379); tests may
                        ``redis_server.stop()`` / ``.start()`` (same port, data lost)
redis_url      session  "redis://127.0.0.1:<port>/0"
redis_client   function redis.Redis on that server, FLUSHALL before each test
                        (restarts the server first if a test left it stopped)
kafka_broker   session  infra.KafkaBroker: $KAFKA_BOOTSTRAP_SERVERS, else
                        CRM_TEST_BROKER=tansu|mock, else Tansu with mock fallback
kafka_topics   function factory ``kafka_topics(name="t", partitions=1, create=True) -> str``
                        giving a topic name unique to this test (created by default)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make `import infra` work in any import mode

import infra  # noqa: E402

# The tests of the rules, time and sinks predate the contact policy (consent, quiet hours, holdouts;
# CONTRACT.md section 5): they run with it neutral (marketing allowed until revoked, no quiet hours,
# no holdout groups). Tests of the contact policy pass their settings explicitly (tests/test_contact*.py).
os.environ.setdefault("CRM_CONSENT__DEFAULT", "opt_out")
os.environ.setdefault("CRM_QUIET_HOURS__ENABLED", "false")
os.environ.setdefault("CRM_HOLDOUT__SHARE", '{"abandoned_cart": 0, "proactive_outreach": 0}')  # over the defaults


def _announce(request, msg: str) -> None:
    """Print past pytest's output capture (fixture set-up output is hidden otherwise)."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            sys.stderr.write(f"\n{infra.LOG_PREFIX} {msg}\n")
    else:
        sys.stderr.write(f"{infra.LOG_PREFIX} {msg}\n")


@pytest.fixture(scope="session")
def redis_server(request):
    server = infra.RedisServer()
    try:
        server.start()
    except Exception:
        server.close()
        raise
    _announce(request, f"redis-server {server.binary} at {server.url} pid {server.pid} "
                       f"(ready in {server.startup_seconds:.2f}s)")
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def redis_client(redis_server):
    if not redis_server.is_running():  # a previous test stopped it and failed before restarting
        redis_server.start()
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def kafka_broker(request):
    broker = infra.KafkaBroker()
    try:
        broker.start()
    except Exception:
        broker.stop()
        raise
    msg = f"Kafka broker: {broker.describe()}"
    if broker.fallback_reason:
        msg += " -- FALLBACK, Tansu failed: " + broker.fallback_reason.splitlines()[0]
    _announce(request, msg)
    yield broker
    broker.stop()


@pytest.fixture
def kafka_topics(request, kafka_broker):
    """Factory: ``kafka_topics("orders", partitions=3)`` -> unique topic name.

    On the mock cluster the partition count cannot be chosen (auto-create
    gives ``infra.AUTO_CREATE_PARTITIONS``); use ``kafka_broker.partitions(t)``.
    Topics are deleted afterwards on brokers that support it.
    """
    created: list[str] = []
    test = request.node.name.split("[")[0]
    if test.startswith("test_"):
        test = test[5:]

    def make(name: str = "t", partitions: int = 1, create: bool = True) -> str:
        topic = infra.unique_topic(f"{test[:60]}-{name}")
        if create:
            kafka_broker.create_topics([topic], partitions=partitions)
            created.append(topic)
        return topic

    yield make
    if created and not os.environ.get("CRM_TEST_KEEP_TOPICS"):
        kafka_broker.delete_topics(created)
