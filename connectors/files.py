"""Event logs in, JSONL files out: the replay edges of the dataflow.

Several logs (``.jsonl`` or ``.jsonl.gz``) merge in ``ts`` order into one partition. The flow
builder hands in the decoder, so this module knows bytes and files, not the event model.
"""

from __future__ import annotations

import gzip
import heapq
import logging
import os
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from connectors.metrics import telemetry

Decoder = Callable[[bytes, str], Any]
log = logging.getLogger("crm.files")


def expand_logs(paths: Iterable[Path]) -> list[Path]:
    """Files as given; a directory stands for every ``*.jsonl`` / ``*.jsonl.gz`` below it (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(x for x in p.rglob("*") if x.is_file() and x.name.endswith((".jsonl", ".jsonl.gz"))))
        else:
            out.append(p)
    return out


class Progress:
    """Bytes read of the total, for a progress bar (updated by the source, read by the CLI)."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0


def _lines(path: Path, index: int, decode: Decoder, progress: Optional[Progress]) -> Iterator[tuple]:
    """(ts, file index, line number, decoded item) for each line; a line without a usable ts keeps
    its file's previous ts so that it stays where it was written."""
    last_ts = -(1 << 62)
    raw_file = open(path, "rb")
    magic = raw_file.read(2)
    raw_file.seek(0)  # gzip by magic bytes, whatever the name says
    f = gzip.GzipFile(fileobj=raw_file, mode="rb") if magic == b"\x1f\x8b" else raw_file
    name = str(path)
    reported = 0
    n = 0
    with raw_file, f:
        lines = iter(f)
        while True:
            try:
                line = next(lines)
            except StopIteration:
                break
            except (EOFError, OSError, zlib.error) as exc:  # a gzip cut short by a crash: say so, go on
                log.warning("%s: unreadable after line %d (%s)", name, n, exc)
                yield (last_ts, index, n + 1, decode(b"", f"{name}:{n + 1}:truncated"))
                break
            n += 1
            if line.endswith(b"\n"):
                line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
            item = decode(line, f"{name}:{n}")
            ts = getattr(item, "ts", None)
            if ts is not None:
                last_ts = ts
            if progress is not None and n % 2048 == 0:
                pos = raw_file.tell()
                progress.done += pos - reported
                reported = pos
            yield (last_ts, index, n, item)
    if progress is not None:
        progress.done += os.path.getsize(path) - reported


class _LogPartition(StatefulSourcePartition):
    def __init__(self, paths: list[Path], decode: Decoder, flush: Callable[[str, int, int], Any], skip: int,
                 batch: int, progress: Optional[Progress]):
        self.merged = heapq.merge(*(_lines(p, i, decode, progress) for i, p in enumerate(paths)))
        self.flush = flush
        self.emitted = 0
        self.skip = skip
        self.batch = batch
        self.customers: set[str] = set()
        self.end_ts: Optional[int] = None
        self.tail: Optional[Iterator] = None

    def next_batch(self) -> list:
        if self.tail is not None:
            out = [x for _, x in zip(range(self.batch), self.tail)]
            if not out:
                raise StopIteration()
            return out
        out = []
        for _, _, _, item in self.merged:
            cid = getattr(item, "customer_id", None)
            if cid is not None:
                self.customers.add(cid)
                if self.end_ts is None or item.ts > self.end_ts:
                    self.end_ts = item.ts
            self.emitted += 1
            if hasattr(item, "pos"):
                item.pos = self.emitted
            if self.emitted > self.skip:
                out.append(item)
            if len(out) >= self.batch:
                return out
        # End of input: every customer gets a flush with the latest event time of the replay.
        end = self.end_ts if self.end_ts is not None else 0
        self.tail = iter([self.flush(c, end, self.emitted + i + 1) for i, c in enumerate(sorted(self.customers))])
        return out

    def snapshot(self) -> int:
        return self.emitted


class LogSource(FixedPartitionedSource):
    """Replays event logs merged by ``ts``, decoded, then one flush item per customer at the end."""

    def __init__(self, paths: Iterable[Path], decode: Decoder, flush: Callable[[str, int, int], Any],
                 batch_size: int = 2000, progress: Optional[Progress] = None):
        self.paths = [Path(p) for p in paths]
        self.decode = decode
        self.flush = flush
        self.batch_size = batch_size
        self.progress = progress

    def list_parts(self) -> list[str]:
        return ["replay"]

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _LogPartition:
        return _LogPartition(self.paths, self.decode, self.flush, resume_state or 0, self.batch_size,
                             self.progress)


class _JsonlPartition(StatefulSinkPartition):
    def __init__(self, path: Path, resume: Optional[int], name: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "r+b" if resume is not None and path.exists() else "wb")
        if resume is not None:
            self.f.truncate(resume)  # drop what was written after the snapshot: it will be replayed
            self.f.seek(resume)
        self.name = name

    def write_batch(self, values: list) -> None:
        self.f.write(b"".join(v if isinstance(v, bytes) else orjson.dumps(v) + b"\n" for v in values))
        telemetry().sink_writes.labels(self.name).inc(len(values))

    def snapshot(self) -> int:
        self.f.flush()
        return self.f.tell()

    def close(self) -> None:
        self.f.close()


class JsonlSink(FixedPartitionedSink):
    """One JSONL file, written by whichever worker owns its single partition.

    Takes ``(key, record)`` items; a record is a dict (serialised) or ready bytes.
    """

    def __init__(self, path: Path, name: str = "file"):
        self.path = Path(path)
        self.name = name

    def list_parts(self) -> list[str]:
        return ["file"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _JsonlPartition:
        return _JsonlPartition(self.path, resume_state, self.name)


class _ProfilesPartition(StatefulSinkPartition):
    def __init__(self, path: Path, resume: Optional[dict]):
        self.path = path
        self.profiles: dict[str, dict] = resume or {}

    def write_batch(self, values: list) -> None:
        for customer_id, fields, defaults in values:
            profile = self.profiles.setdefault(customer_id, {"customer_id": customer_id})
            if defaults:
                for k, v in fields.items():
                    profile.setdefault(k, v)
            else:
                profile.update(fields)

    def snapshot(self) -> dict:
        return self.profiles

    def close(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "wb") as f:
            for cid in sorted(self.profiles):
                f.write(orjson.dumps(self.profiles[cid], option=orjson.OPT_SORT_KEYS) + b"\n")


class ProfilesFileSink(FixedPartitionedSink):
    """Each customer's final profile (partial updates merged), written sorted at the end."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def list_parts(self) -> list[str]:
        return ["profiles"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[dict]) -> _ProfilesPartition:
        return _ProfilesPartition(self.path, resume_state)
