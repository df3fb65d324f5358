"""Event logs in, JSONL files out: the replay edges of the dataflow.

Several logs (``.jsonl`` or ``.jsonl.gz``) merge in ``ts`` order into one partition. The flow
builder hands in the decoder, so this module knows bytes and files, not the event model.
"""

from __future__ import annotations

import gzip
import heapq
from collections import deque
import logging
import os
import re
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from config.jsonsafe import dumps
from connectors.metrics import telemetry
from connectors.routing import worker_of_bytes

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


def _lines(path: Path, index: int, decode: Decoder, progress: Optional[Progress],
           owns: Optional[Callable[[bytes], bool]] = None, guard: Optional[Callable[[], Any]] = None) -> Iterator[tuple]:
    """(ts, file index, line number, decoded item) for each line; a line without a usable ts keeps
    its file's previous ts so that it stays where it was written. ``guard`` makes, per file, an
    object with ``push(item, raw) -> [(item, raw)]`` and ``finish()`` that may hold a few lines and
    swap an item for a dead letter (the flow's future-timestamp check)."""
    last_ts = -(1 << 62)
    lines = _decoded(path, decode, progress, owns)
    if guard is None:
        for n, item, _ in lines:
            ts = getattr(item, "ts", None)
            if ts is not None:
                last_ts = ts
            yield (last_ts, index, n, item)
        return
    judge = guard()
    held: deque = deque()  # line numbers of the lines the judge holds, oldest first (it keeps order)
    push, hold, release = judge.push, held.append, held.popleft
    for n, item, raw in lines:  # one generator, not one per stage: this runs for every line of a replay
        hold(n)
        for judged, _ in push(item, raw):
            ts = getattr(judged, "ts", None)
            if ts is not None:
                last_ts = ts
            yield (last_ts, index, release(), judged)
    for judged, _ in judge.finish():
        ts = getattr(judged, "ts", None)
        if ts is not None:
            last_ts = ts
        yield (last_ts, index, release(), judged)


def _decoded(path: Path, decode: Decoder, progress: Optional[Progress],
             owns: Optional[Callable[[bytes], bool]]) -> Iterator[tuple]:
    """(line number, decoded item, raw line) for each line a partition owns."""
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
                yield n + 1, decode(b"", f"{name}:{n + 1}:truncated"), b""
                break
            n += 1
            if owns is not None and not owns(line):
                continue
            if line.endswith(b"\n"):
                line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
            item = decode(line, f"{name}:{n}")
            if progress is not None and n % 2048 == 0:
                pos = raw_file.tell()
                progress.done += pos - reported
                reported = pos
            yield n, item, line
    if progress is not None:
        progress.done += os.path.getsize(path) - reported


def read_merged(paths: list[Path], decode: Decoder) -> Iterator[Any]:
    """Every line of ``paths`` decoded, merged by ``ts`` as a replay reads them (tools, not the flow)."""
    streams = [_lines(p, i, decode, None) for i, p in enumerate(paths)]
    for _, _, _, item in heapq.merge(*streams):
        yield item


class ReplayEnd:
    """The latest event time of a replay, shared by every source partition with every worker.

    Each partition writes the latest ``ts`` of the valid events it read to ``DIR/end-{i}`` when it
    reaches the end; the customer steps read the maximum at end of input, which Bytewax signals
    only once every partition is done. A directory (not memory) so that a cluster of processes on
    one machine shares it.
    """

    def __init__(self, directory: Path, partitions: int = 1, drain: bool = False):
        self.directory = Path(directory)
        self.partitions = partitions
        self.drain = drain
        self._value: Optional[int] = None

    def report(self, partition: int, end_ts: Optional[int]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".end-{partition}"
        tmp.write_text("" if end_ts is None else str(end_ts))
        tmp.replace(self.directory / f"end-{partition}")

    def read(self) -> Optional[int]:
        if self._value is None:
            found = [f.read_text() for f in self.directory.glob("end-*")]
            if len(found) < self.partitions:
                raise RuntimeError(f"replay end: {len(found)} of {self.partitions} partitions reported")
            values = [int(v) for v in found if v]
            self._value = max(values) if values else -(1 << 62)
        return self._value


_NUMBER = re.compile(rb"\s*(-?[0-9][0-9.eE+-]*)")


def customer_of(line: bytes) -> bytes:
    """The raw ``customer_id`` of a JSON line, without parsing it (b"" when not found). An integer
    id (``"customer_id": 42``, or ``42.0``) gives its decimal string, as the decoder makes of it."""
    i = line.find(b'"customer_id"')
    if i < 0:
        return b""
    colon = line.find(b":", i + 13) + 1
    j = line.find(b'"', colon)
    number = _NUMBER.match(line, colon)
    if number is not None and (j < 0 or number.start(1) < j):
        token = number.group(1)
        try:
            return token if token.isdigit() else str(int(float(token))).encode()
        except (ValueError, OverflowError):
            return token
    k = line.find(b'"', j + 1)
    return line[j + 1:k] if 0 <= j < k else b""


class Owners:
    """Which partition owns a line: the Bytewax worker its customer's state lives on
    (:func:`connectors.routing.worker_of_bytes`), so that with one partition per worker an event is
    read, decoded and processed on one worker and never crosses to another process."""

    def __init__(self, partitions: int):
        self.partitions = partitions
        self.cache: dict[bytes, int] = {}

    def __call__(self, line: bytes) -> int:
        customer = customer_of(line)
        found = self.cache.get(customer)
        if found is None:
            if len(self.cache) >= 1 << 20:  # a bound on memory for logs with endless ids
                self.cache.clear()
            found = self.cache[customer] = worker_of_bytes(customer, self.partitions)
        return found


class _LogPartition(StatefulSourcePartition):
    def __init__(self, paths: list[Path], decode: Decoder, index: int, partitions: int, end: Optional[ReplayEnd],
                 skip: int, batch: int, progress: Optional[Progress], guard: Optional[Callable[[], Any]] = None):
        owners = Owners(partitions)
        owns = None if partitions == 1 else (lambda line: owners(line) == index)
        streams = [_lines(p, i, decode, progress if index == 0 else None, owns, guard)
                   for i, p in enumerate(paths)]
        self.merged = streams[0] if len(streams) == 1 else heapq.merge(*streams)
        self.index = index
        self.multi = partitions > 1
        self.end = end
        self.emitted = 0
        self.skip = skip
        self.batch = batch
        self.end_ts: Optional[int] = None

    def next_batch(self) -> list:
        out = []
        for _, file_index, line_no, item in self.merged:
            self.emitted += 1
            if hasattr(item, "customer_id"):  # an event (dead letters have none)
                if self.end_ts is None or item.ts > self.end_ts:
                    self.end_ts = item.ts
                # input order for the models step: the merged index, or (file, line) across partitions
                item.pos = (file_index << 40 | line_no) if self.multi else self.emitted
            if self.emitted > self.skip:
                out.append(item)
            if len(out) >= self.batch:
                return out
        if not out:
            if self.end is not None:
                self.end.report(self.index, self.end_ts)
            raise StopIteration()
        return out

    def snapshot(self) -> int:
        return self.emitted


class LogSource(FixedPartitionedSource):
    """Replays event logs merged by ``ts``, decoded here, in ``partitions`` partitions.

    With several partitions each reads every file but decodes only the lines of the customers it
    owns (:class:`Owners`: the worker that keeps the customer's state), so decoding spreads over
    workers, each customer's events stay in one partition, in order, and stay on one worker. At the end each partition
    reports its latest event time to ``end`` (see :class:`ReplayEnd`).
    """

    def __init__(self, paths: Iterable[Path], decode: Decoder, end: Optional[ReplayEnd] = None,
                 batch_size: int = 2000, progress: Optional[Progress] = None, partitions: int = 1,
                 guard: Optional[Callable[[], Any]] = None):
        self.guard = guard  # per file: the flow's future-timestamp check (see _lines)
        self.paths = [Path(p) for p in paths]
        self.decode = decode
        self.end = end
        self.batch_size = batch_size
        self.progress = progress
        self.partitions = partitions

    def list_parts(self) -> list[str]:
        # zero-padded: Bytewax deals partitions to workers in sorted name order, so partition i runs
        # on worker i (with one partition per worker) and owns the customers whose state is there
        return [f"replay-{i:03d}" for i in range(self.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _LogPartition:
        index = int(for_part.rsplit("-", 1)[1])
        return _LogPartition(self.paths, self.decode, index, self.partitions, self.end, resume_state or 0,
                             self.batch_size, self.progress, self.guard)


class _JsonlPartition(StatefulSinkPartition):
    def __init__(self, path: Path, resume: Optional[int], name: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "r+b" if resume is not None and path.exists() else "wb")
        if resume is not None:
            self.f.truncate(resume)  # drop what was written after the snapshot: it will be replayed
            self.f.seek(resume)
        self.name = name

    def write_batch(self, values: list) -> None:
        self.f.write(b"".join(v if isinstance(v, bytes) else dumps(v) + b"\n" for v in values))
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
            if fields is None:  # an erasure: the customer's profile so far goes
                self.profiles.pop(customer_id, None)
                continue
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
                f.write(dumps(self.profiles[cid], option=orjson.OPT_SORT_KEYS) + b"\n")


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


def read_tombstones(path: Optional[Path]) -> list[tuple[str, int]]:
    """A tombstone file's ``<hash> <erased_at ms>`` lines (a missing file: none; a broken line is
    skipped: the file is appended to, a crash can cut its last line)."""
    if path is None or not Path(path).exists():
        return []
    rows = []
    for line in Path(path).read_bytes().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            rows.append((parts[0].decode("ascii", "replace"), int(parts[1])))
    return rows


class _TombstonePartition(StatefulSinkPartition):
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "ab")

    def write_batch(self, values: list) -> None:
        self.f.write(b"".join(f"{r['tombstone']} {r['erased_at_ms']}\n".encode("ascii") for r in values))
        self.f.flush()
        os.fsync(self.f.fileno())

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.f.close()


class TombstoneFileSink(FixedPartitionedSink):
    """Appends the tombstone of each ``(customer_id, erasure_completed record)`` to a file
    (``privacy.tombstone_file``), which later replays load: one ``<hash> <erased_at ms>`` line each."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def list_parts(self) -> list[str]:
        return ["tombstones"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TombstonePartition:
        return _TombstonePartition(self.path)
