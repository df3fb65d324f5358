"""The event-log archive: every consumed message value, byte for byte, in hourly gzip files.

``DIR/{topic}/{YYYY-MM-DD}T{HH}.p{process}.jsonl.gz``, the hour taken from the Kafka message
timestamp. Each batch is appended as its own gzip member and flushed, so a crash loses at most
the member being written (and Bytewax re-consumes those messages on restart). Because recovery
resumes from the last snapshot, messages consumed after it appear twice in the archive; replay
counts them as duplicates by ``event_id``, so the triggers are the same.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

import orjson


class Archive:
    def __init__(self, root: Path, process_id: int = 0, flush_every: float = 1.0):
        self.root = Path(root)
        self.process_id = process_id
        self.flush_every = flush_every
        self.lock = threading.Lock()
        self.pending: dict[Path, list[bytes]] = defaultdict(list)
        self.last_flush = time.monotonic()

    def _path(self, topic: str, timestamp_ms: int) -> Path:
        ts = timestamp_ms / 1000 if timestamp_ms and timestamp_ms > 0 else time.time()
        hour = time.strftime("%Y-%m-%dT%H", time.gmtime(ts))
        return self.root / topic / f"{hour}.p{self.process_id}.jsonl.gz"

    def __call__(self, topic: str, partition: int, timestamp_ms: int, value: bytes) -> None:
        with self.lock:
            self.pending[self._path(topic, timestamp_ms)].append(value.replace(b"\n", b" ") + b"\n")
            if time.monotonic() - self.last_flush >= self.flush_every:
                self._flush()

    def _flush(self) -> None:
        for path, lines in self.pending.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as f:
                f.write(gzip.compress(b"".join(lines), compresslevel=5))
                f.flush()
                os.fsync(f.fileno())
        self.pending.clear()
        self.last_flush = time.monotonic()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def close(self) -> None:
        self.flush()


def _archive_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.name.endswith((".jsonl.gz", ".jsonl")))


def _is_customers(line: bytes, customer_id: str, needle: bytes) -> bool:
    """The line is one of the customer's events; a line that is not a JSON object (a future dead
    letter) counts as theirs when it contains the id at all: an erasure errs on deleting."""
    if needle not in line:  # most lines: no parse needed
        return False
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return True
    if not isinstance(obj, dict):
        return True
    cid = obj.get("customer_id")
    return str(cid) == customer_id if isinstance(cid, (str, int)) and not isinstance(cid, bool) else True


def purge(root: Path, customer_id: str) -> dict:
    """Rewrite the archive under ``root`` without the customer's lines (erasure). Each file that has
    any is rewritten to a temporary file beside it, fsynced, and renamed over it: a crash leaves
    the old file or the new one, and the archive stays replayable. Returns counts (files scanned,
    files rewritten, lines removed). An append by a running engine between a file's read and its
    rename would be lost: purge hours the engine no longer writes to, or run it again later
    (it is idempotent)."""
    return purge_files(_archive_files(root), customer_id)


def purge_files(files: list[Path], customer_id: str) -> dict:
    needle = customer_id.encode("utf-8", "surrogatepass")
    counts = {"files": len(files), "rewritten": 0, "lines_removed": 0}
    for path in files:
        gz = path.name.endswith(".gz")
        data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()  # every gzip member
        lines = data.splitlines(keepends=True)
        kept = [x for x in lines if not _is_customers(x, customer_id, needle)]
        if len(kept) == len(lines):
            continue
        tmp = path.with_name(f".{path.name}.purge-tmp")
        body = b"".join(kept)
        with open(tmp, "wb") as f:
            f.write(gzip.compress(body, compresslevel=5) if gz else body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        counts["rewritten"] += 1
        counts["lines_removed"] += len(lines) - len(kept)
    return counts
