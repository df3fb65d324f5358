"""``crm-stream run``: Kafka in, Kafka + Redis out, Bytewax recovery (on unless turned off)."""

from __future__ import annotations

import logging
import shutil
import signal
import sqlite3
import tempfile
import threading
from contextlib import closing
from pathlib import Path
from typing import Optional

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from config.settings import Settings, ms
from connectors.kafka import KafkaEventSource, encode_keyed, encode_unkeyed, kafka_sink, wait_for_brokers
from connectors.metrics import serve_metrics, telemetry
from connectors.files import read_tombstones
from connectors.redis_sink import RedisProfileSink, RedisRecsSink, RedisTriggerSink, check_redis, load_tombstones
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
        return Edges(recovery=settings.recovery, source=KafkaEventSource(k, tail=tail, tap=tap,
                                                                       topics=settings.read_topics()),
                     live=True, **outputs)
    watermarks = Watermarks()
    return Edges(
        recovery=settings.recovery,
        source=KafkaEventSource(k, tail=tail, tap=tap, decode=live_decoder(settings), watermarks=watermarks,
                                topics=settings.read_topics(),
                                ahead_ms=ms(settings.time.lateness)),
        watermarks=watermarks,
        ticks=TickSource(watermarks, tail=tail),
        workers=workers,
        live=True,
        **outputs,
    )


RECOVERY_OFF = ("RECOVERY IS OFF (CRM_RECOVERY=false): nothing is snapshotted; a restart re-reads the input "
                "topics from kafka.starting_offset and sends their triggers to Kafka again")


def live_tombstones(settings: Settings) -> Tombstones:
    """Erased customers known at start: the ``crm:tombstones`` hash, and the tombstone file if set."""
    tombs = Tombstones(settings.privacy.tombstone_key.get_secret_value().encode())
    tombs.merge(read_tombstones(settings.privacy.tombstone_file))
    tombs.merge(load_tombstones(settings.redis))
    if tombs.erased:
        log.info("%d erased customers' tombstones loaded", len(tombs.erased))
    return tombs


def recovery_config(settings: Settings, workers: int) -> Optional[RecoveryConfig]:
    """Bytewax recovery in ``settings.recovery_dir`` (on by default); when missing, the partitions
    are created: ``settings.recovery_partitions``, at least one per worker of the cluster
    (``workers``). Off, a loud warning: every restart would start over."""
    if not settings.recovery:
        log.warning(RECOVERY_OFF)
        return None
    db_dir = Path(settings.recovery_dir).absolute()
    if _unfinished(db_dir):  # a first start killed while it made them: nothing was ever written
        log.warning("recovery partitions in %s were left half made by a stopped first start: made again", db_dir)
        for part in db_dir.glob("part-*.sqlite3*"):
            part.unlink()
    if not any(db_dir.glob("part-*.sqlite3")):
        partitions = max(settings.recovery_partitions, workers)
        _init_partitions(db_dir, partitions)
        log.info("initialised %d recovery partitions in %s", partitions, db_dir)
    else:
        log.info("recovery on: resuming from %s (%s)", db_dir, _snapshot_note(db_dir))
    return RecoveryConfig(db_dir)


def _init_partitions(db_dir: Path, partitions: int) -> None:
    """Bytewax's partitions, made aside and renamed in: a kill while making them (64 take a second
    or more) leaves no partial set where a restart would take it for a recovery directory."""
    db_dir.mkdir(parents=True, exist_ok=True)
    for stale in db_dir.glob(".init-*"):
        shutil.rmtree(stale, ignore_errors=True)
    aside = Path(tempfile.mkdtemp(prefix=".init-", dir=db_dir))
    init_db_dir(aside, partitions)
    for part in sorted(aside.iterdir()):  # renames within one directory: microseconds, whole files
        part.rename(db_dir / part.name)
    aside.rmdir()


def _unfinished(db_dir: Path) -> bool:
    """Fewer partition files than their recorded count, and no commit in any: a set whose making was
    interrupted (Bytewax would stop on it with MissingPartitionsError), not a damaged recovery."""
    parts = sorted(db_dir.glob("part-*.sqlite3"))
    if not parts:
        return False
    count, commits = 0, 0
    for part in parts:
        try:
            with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1)) as db:
                count = max(count, db.execute("SELECT max(part_count) FROM parts").fetchone()[0] or 0)
                commits += db.execute("SELECT count(*) FROM commits").fetchone()[0]
        except sqlite3.Error:  # not readable as Bytewax's: leave it to Bytewax to say so
            return False
    return len(parts) < count and commits == 0


def last_snapshot(db_dir: Path) -> Optional[str]:
    """When the latest committed snapshot in ``db_dir`` was taken (UTC, as SQLite wrote it), or
    None when there is none (no directory yet, or stopped before the first snapshot)."""
    latest = None
    for part in sorted(Path(db_dir).glob("part-*.sqlite3")):
        try:
            with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1)) as db:
                row = db.execute("SELECT max(created_at) FROM commits").fetchone()
        except sqlite3.Error:  # locked or not Bytewax's: say nothing we do not know
            continue
        if row and row[0] and (latest is None or row[0] > latest):
            latest = row[0]
    return latest


def _snapshot_note(db_dir: Path) -> str:
    when = last_snapshot(db_dir)
    return f"last snapshot {when} UTC" if when else "no snapshot yet"


def resume_note(settings: Settings) -> str:
    """What a restart will do, for the stop message: never a snapshot that does not exist."""
    if not settings.recovery:
        return "recovery is off: a restart re-reads the topics from kafka.starting_offset"
    db_dir = Path(settings.recovery_dir).absolute()
    when = last_snapshot(db_dir)
    if when is None:
        return f"no snapshot was taken yet in {db_dir}: a restart starts from kafka.starting_offset"
    return f"state resumes from the snapshot of {when} UTC in {db_dir}"


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
        check_redis(settings.redis)  # a wrong password stops here, in one line, not after 10 min of retries
        with engine_gc():
            cli_main(flow, workers_per_process=workers, process_id=process_id, addresses=addresses,
                     epoch_interval=settings.snapshot_interval,
                     recovery_config=recovery_config(settings, workers * processes))
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        if tap is not None:
            tap.close()
