"""``crm-stream run``: Kafka in, Kafka + Redis out, Bytewax recovery when configured."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Optional

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from config.settings import Settings, ms
from connectors.kafka import KafkaEventSource, encode_keyed, encode_unkeyed, kafka_sink, wait_for_brokers
from connectors.metrics import serve_metrics, telemetry
from connectors.files import read_tombstones
from connectors.redis_sink import RedisProfileSink, RedisRecsSink, RedisTriggerSink, load_tombstones
from connectors.watermark import TickSource, Watermarks
from flows.dataflow import Edges, build_flow, live_decoder
from flows.runtime import engine_gc
from operators.privacy import Tombstones

log = logging.getLogger("crm.run")


def live_edges(settings: Settings, tail: bool = True, tap=None, workers: int = 1) -> Edges:
    """``workers``: Bytewax workers in the whole cluster (each gets every input watermark)."""
    k = settings.kafka
    outputs = dict(
        # Redis first: the Kafka producer flush waits for broker acks and would delay the stream write
        triggers=[(RedisTriggerSink(settings.redis), None),
                  (kafka_sink(k, k.triggers_topic, "kafka_triggers"), encode_keyed)],
        deadletters=[(kafka_sink(k, k.deadletter_topic, "kafka_deadletters"), encode_unkeyed)],
        profiles=[(RedisProfileSink(settings.redis), None)],
        recs=[(RedisRecsSink(settings.redis), None)],
        # the Redis side of an erasure (deletes, crm:tombstones, crm:audit) runs in the profile sink
        audit=[(kafka_sink(k, k.audit_topic, "kafka_audit"), encode_keyed)],
        tombstones=live_tombstones(settings),
    )
    if not k.watermarks:  # each topic read on its own (CONTRACT.md, time across topics)
        return Edges(recovery=settings.recovery_dir is not None, source=KafkaEventSource(k, tail=tail, tap=tap),
                     live=True, **outputs)
    watermarks = Watermarks()
    return Edges(
        recovery=settings.recovery_dir is not None,
        source=KafkaEventSource(k, tail=tail, tap=tap, decode=live_decoder(settings), watermarks=watermarks,
                                ahead_ms=ms(settings.time.lateness)),
        watermarks=watermarks,
        ticks=TickSource(watermarks, tail=tail),
        workers=workers,
        live=True,
        **outputs,
    )


def live_tombstones(settings: Settings) -> Tombstones:
    """Erased customers known at start: the ``crm:tombstones`` hash, and the tombstone file if set."""
    tombs = Tombstones(settings.privacy.tombstone_key.get_secret_value().encode())
    tombs.merge(read_tombstones(settings.privacy.tombstone_file))
    tombs.merge(load_tombstones(settings.redis))
    if tombs.erased:
        log.info("%d erased customers' tombstones loaded", len(tombs.erased))
    return tombs


def recovery_config(settings: Settings, partitions: int) -> Optional[RecoveryConfig]:
    """Bytewax recovery in ``settings.recovery_dir``; the partitions are created when missing."""
    if settings.recovery_dir is None:
        return None
    db_dir = Path(settings.recovery_dir)
    if not any(db_dir.glob("part-*.sqlite3")):
        db_dir.mkdir(parents=True, exist_ok=True)
        init_db_dir(db_dir, partitions)
        log.info("initialised %d recovery partitions in %s", partitions, db_dir)
    return RecoveryConfig(db_dir)


def run_live(settings: Settings, workers: int = 1, process_id: Optional[int] = None,
             addresses: Optional[list[str]] = None, archive: Optional[Path] = None, tail: bool = True,
             shards: Optional[int] = None, model_in: Optional[Path] = None) -> None:
    """Run until stopped (or, with ``tail=False``, until the topics' current end)."""
    warm = None
    if model_in is not None:
        from models.persist import load_models

        warm = load_models(model_in).models  # used only when there is no recovery state yet
    tap = None
    if archive is not None:
        from connectors.archive import Archive

        tap = Archive(archive, process_id or 0)
    serve_metrics(settings.metrics_port + (process_id or 0) if settings.metrics_port else 0, telemetry())
    processes = len(addresses) if addresses else 1
    flow = build_flow(settings, live_edges(settings, tail=tail, tap=tap, workers=workers * processes),
                      shards=shards or workers * processes, warm=warm)
    # SIGTERM (systemd, Kubernetes, docker stop) stops the worker as Ctrl-C does: Bytewax checks for
    # the interrupt between steps and the CLI exits 0; state resumes from the last snapshot.
    main = threading.current_thread() is threading.main_thread()  # only there can handlers be set
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    try:
        wait_for_brokers(settings.kafka)  # Bytewax would wait for them with no timeout, deaf to signals
        with engine_gc():
            cli_main(flow, workers_per_process=workers, process_id=process_id, addresses=addresses,
                     epoch_interval=settings.snapshot_interval,
                     recovery_config=recovery_config(settings, workers * processes))
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        if tap is not None:
            tap.close()
