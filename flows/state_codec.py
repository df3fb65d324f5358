"""A customer state's bytes in a snapshot: its pickle, Zstandard-compressed with a trained dictionary.

Most of a pickled ``CustomerState`` is structure every customer repeats (class and slot names,
empty containers, feature layouts), so a dictionary trained on such pickles does most of the work:
on held-out generated customers a 3.1 KB state becomes about 1.1 KB in 5 us (level 1; zlib level 1
gives about half in 40 us, lz4 a bit more than half in 3 us). A smaller state at rest is what a resumed customer holds until
its next event, what the recovery store keeps and what Bytewax's resume query sorts (issue 19).

The dictionary (``state.zdict``, :data:`DICT_ID`) is made by ``python -m flows.state_codec train``
from generated customers only and never changes in place: a new one gets a new id and this module
keeps reading frames of the old ones (a zstd frame names its dictionary). Frames without a known
dictionary raise ``KeyError``; bytes starting with pickle's PROTO opcode are an older plain pickle.
"""

from __future__ import annotations

import pickle
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import zstandard

DICT_ID = 1  # the dictionary new snapshots are written with
LEVEL = 1  # zstd level: 3 saves 2 % more for 25 % more time
_DICTS = {1: Path(__file__).with_name("state.zdict")}
_local = threading.local()  # zstandard's (de)compressors are not thread-safe; Bytewax workers are threads


@lru_cache(maxsize=None)
def _dict(dict_id: int) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(_DICTS[dict_id].read_bytes())


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "compressor", None)
    if c is None:
        c = _local.compressor = zstandard.ZstdCompressor(level=LEVEL, dict_data=_dict(DICT_ID))
    return c


def _decompressor(dict_id: int) -> zstandard.ZstdDecompressor:
    cache = _local.__dict__.setdefault("decompressors", {})
    d = cache.get(dict_id)
    if d is None:
        d = cache[dict_id] = zstandard.ZstdDecompressor(dict_data=_dict(dict_id))
    return d


def dumps(obj: Any) -> bytes:
    """``obj`` pickled (highest protocol) and compressed with the current dictionary."""
    return _compressor().compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def loads(blob: bytes) -> Any:
    """The object of :func:`dumps` bytes, of any dictionary this module knows, or of a plain pickle."""
    if blob[:1] == b"\x80":  # pickle's PROTO opcode: a snapshot from before compression
        return pickle.loads(blob)
    dict_id = zstandard.get_frame_parameters(blob).dict_id
    return pickle.loads(_decompressor(dict_id).decompress(blob))


def training_states(customers: int = 3000, seed: int = 5) -> list[bytes]:
    """Pickles of generated customers' states (the bench generator's shop and the scale mode's
    sparse histories, every customer's frontier moved to its log's end): the dictionary's samples."""
    import tempfile

    from config.settings import load_settings
    from flows.generator import generate
    from flows.scale import replay_states, sparse_log
    from operators.rules import RuleConfig

    cfg = RuleConfig(load_settings())
    out: list[bytes] = []
    with tempfile.TemporaryDirectory() as tmp:
        generate(customers, 14, seed, Path(tmp))
        sparse_log(customers, Path(tmp) / "sparse.jsonl", 0.5, seed=seed)
        for log in (Path(tmp) / "events.jsonl", Path(tmp) / "sparse.jsonl"):
            states, end = replay_states(log, cfg)
            for st in states.values():
                st.advance(max(end, st.clock), cfg)
                out.append(pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL))
    return out


def train(path: Path, dict_id: int, size: int = 16_384) -> dict[str, float]:
    """Train a dictionary of ``size`` bytes on :func:`training_states` and write it to ``path``;
    returns the mean state bytes before and after on held-out customers (every fifth)."""
    samples = training_states()
    held, fit = samples[::5], [s for i, s in enumerate(samples) if i % 5]
    zdict = zstandard.train_dictionary(size, fit, dict_id=dict_id, level=LEVEL)
    path.write_bytes(zdict.as_bytes())
    c = zstandard.ZstdCompressor(level=LEVEL, dict_data=zdict)
    return {"samples": len(fit), "held_out": len(held), "bytes": round(sum(map(len, held)) / len(held)),
            "compressed": round(sum(len(c.compress(s)) for s in held) / len(held))}


if __name__ == "__main__":  # python -m flows.state_codec train [PATH DICT_ID]: a new dictionary
    import sys

    import orjson

    args = sys.argv[2:] or [str(_DICTS[DICT_ID]), str(DICT_ID)]
    print(orjson.dumps(train(Path(args[0]), int(args[1]))).decode())
