"""Hashed word and character n-grams of a message, for the online frustration model.

The feature-hashing trick (Weinberger et al. 2009, "Feature hashing for large scale multitask
learning"): word unigrams and bigrams and character 4-grams inside word boundaries (the
``char_wb`` analyser of scikit-learn) go to ``2**bits`` buckets by CRC-32 (stable across
processes, unlike ``hash()``), with sublinear term frequency ``1 + log(tf)`` and unit L2 norm, so
a long message weighs no more than a short one. No vocabulary is kept: the model's weights are
the only state, and they learn in the stream.
"""

from __future__ import annotations

import math
import re
import zlib
from functools import lru_cache

from river import base

from operators.features import TEXT_KEY  # the feature that carries the text into the model (never scaled)
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_crc32 = zlib.crc32
_log = math.log


@lru_cache(maxsize=1 << 16)
def _word_hashes(word: str, bits: int, lo: int, hi: int) -> tuple[int, ...]:
    """The buckets of a word and of its character n-grams (words repeat: hashed once each)."""
    mask = (1 << bits) - 1
    w = " " + word + " "
    grams = [word] + ["#" + w[i:i + n] for n in range(lo, min(hi, len(w)) + 1) for i in range(len(w) - n + 1)]
    return tuple(_crc32(g.encode()) & mask for g in grams)


@lru_cache(maxsize=4096)
def hashed_ngrams(text: str, bits: int = 18, chars: tuple[int, int] = (4, 4), max_chars: int = 2000) -> dict:
    """``{bucket: weight}`` (int keys) for ``text`` (empty dict for empty text); weights have unit L2 norm.
    Cached per text (a message is read at its decision point and again at its label): do not
    modify the returned dict."""
    if not text:
        return {}
    tokens = _TOKEN.findall(text[:max_chars].lower())
    mask = (1 << bits) - 1
    counts: dict[int, int] = {}
    for h in [_crc32((a + " " + b).encode()) & mask for a, b in zip(tokens, tokens[1:])]:
        counts[h] = counts.get(h, 0) + 1
    for w in tokens:
        for h in _word_hashes(w, bits, chars[0], chars[1]):
            counts[h] = counts.get(h, 0) + 1
    weights = {h: 1.0 + _log(c) for h, c in counts.items()}
    norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
    inv = 1.0 / norm
    return {h: v * inv for h, v in weights.items()}  # int keys: never a numeric feature's name


class TextAndNumbers(base.Transformer):
    """River transformer: the numbers of ``x`` standardised (``scaler``, learning), and the hashed
    n-grams of ``x[TEXT_KEY]`` as they are (unit norm already). One step instead of River's
    ``TransformerUnion(Discard | scaler, hasher)``: a third of the cost per call."""

    def __init__(self, scaler: base.Transformer, bits: int = 18):
        self.scaler = scaler
        self.bits = bits

    @staticmethod
    def _numbers(x: dict) -> dict:
        if TEXT_KEY not in x:
            return x
        x = dict(x)
        del x[TEXT_KEY]
        return x

    def learn_one(self, x: dict) -> None:
        self.scaler.learn_one(self._numbers(x))

    def transform_one(self, x: dict) -> dict:
        out = self.scaler.transform_one(self._numbers(x))
        text = x.get(TEXT_KEY)
        if isinstance(text, str) and text:
            out.update(hashed_ngrams(text, self.bits))
        return out
