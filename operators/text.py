"""Text helpers: word-list matching (case-, accent-insensitive, on word boundaries) and safe cuts."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Iterable


def fold(text: str) -> str:
    """Lower-case and strip accents: ``Représentant`` -> ``representant``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class WordMatcher:
    """Matches any of a list of words or phrases as whole words; phrases allow any spacing."""

    __slots__ = ("words", "_re")

    def __init__(self, words: Iterable[str]):
        self.words = tuple(words)
        alternatives = sorted({r"\s+".join(map(re.escape, fold(w).split())) for w in self.words if w.strip()},
                              key=len, reverse=True)
        self._re = re.compile(r"\b(?:" + "|".join(alternatives) + r")\b") if alternatives else None

    def find(self, text: str) -> list[str]:
        """The folded matches in ``text`` (empty when none)."""
        if self._re is None or not text:
            return []
        return self._re.findall(fold(text))

    def __call__(self, text: str) -> bool:
        return bool(self.find(text))

    def __reduce__(self):
        return (WordMatcher, (self.words,))


@lru_cache(maxsize=16)
def matcher(words: tuple[str, ...]) -> WordMatcher:
    return WordMatcher(words)


def cut(text: str, max_chars: int) -> str:
    """At most ``max_chars`` characters; never splits a character (or a combining sequence)."""
    if len(text) <= max_chars:
        return text
    end = max_chars
    # Do not leave a base character without its combining marks.
    while end > 0 and unicodedata.combining(text[end]):
        end -= 1
    return text[:end]
