"""Hashed word and character n-grams of a message, for the online frustration model.

The feature-hashing trick (Weinberger et al. 2009, "Feature hashing for large scale multitask
learning"): word unigrams and bigrams and character 3-5-grams inside word boundaries (the
``char_wb`` analyser of scikit-learn) go to ``2**bits`` buckets by CRC-32 (stable across
processes, unlike ``hash()``), with sublinear term frequency ``1 + log(tf)`` and unit L2 norm, so
a long message weighs no more than a short one. No vocabulary is kept: the model's weights are
the only state, and they learn in the stream.
"""

from __future__ import annotations

import math
import re
import zlib

from river import base

from operators.features import TEXT_KEY  # the feature that carries the text into the model (never scaled)
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_crc32 = zlib.crc32
_log = math.log


def hashed_ngrams(text: str, bits: int = 18, chars: tuple[int, int] = (3, 5), max_chars: int = 2000) -> dict:
    """``{"h<bucket>": weight}`` for ``text`` (empty dict for empty text); weights have unit L2 norm."""
    if not text:
        return {}
    tokens = _TOKEN.findall(text[:max_chars].lower())
    grams = tokens + [a + " " + b for a, b in zip(tokens, tokens[1:])]
    lo, hi = chars
    for w in tokens:
        w = " " + w + " "
        n_w = len(w)
        for n in range(lo, min(hi, n_w) + 1):
            grams.extend("#" + w[i:i + n] for i in range(n_w - n + 1))
    mask = (1 << bits) - 1
    counts: dict[int, int] = {}
    for g in grams:
        h = _crc32(g.encode()) & mask
        counts[h] = counts.get(h, 0) + 1
    weights = {h: 1.0 + _log(c) for h, c in counts.items()}
    norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
    return {f"h{h}": v / norm for h, v in weights.items()}


class TextHasher(base.Transformer):
    """River transformer: ``{TEXT_KEY: str, ...}`` -> hashed n-grams of the text (stateless)."""

    def __init__(self, bits: int = 18):
        self.bits = bits

    def transform_one(self, x: dict) -> dict:
        text = x.get(TEXT_KEY)
        return hashed_ngrams(text, self.bits) if isinstance(text, str) else {}
