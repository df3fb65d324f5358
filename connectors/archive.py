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
