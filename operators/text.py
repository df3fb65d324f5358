"""Text helpers: word-list matching (case-, accent-insensitive, on word boundaries) and safe cuts."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Iterable


_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'"})


@lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Lower-case, strip accents and unify apostrophes: ``Représentant`` -> ``representant``,
    ``Quelqu’un`` -> ``quelqu'un``. Cached: searches and messages repeat (a str in, a str out)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_APOSTROPHES)


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

    def spans(self, folded: str) -> list[tuple[int, int]]:
        """(start, end) of each match in already folded text."""
        if self._re is None:
            return []
        return [m.span() for m in self._re.finditer(folded)]

    def __call__(self, text: str) -> bool:
        return bool(self.find(text))

    def __reduce__(self):
        return (WordMatcher, (self.words,))


# Where a negation stops: clause punctuation and contrastive conjunctions ("no, I want a human";
# "not the bot but a human").
_CLAUSE = re.compile(r"[.!?;,:()\n]|\b(?:but|mais|pero|sino|aber|sondern|mas|porem|however|instead)\b")
_WORD = re.compile(r"[\w']+")
# Declining after the request: "an agent is not needed", "agent? no thanks".
_DECLINED_AFTER = WordMatcher([
    "not needed", "not necessary", "no thanks", "no thank you", "pas besoin", "pas necessaire",
    "no hace falta", "no es necesario", "nicht notig", "nicht nötig", "nicht notwendig", "nao precisa",
    "nao e necessario", "desnecessario", "innecesario",
])
NEGATION_WINDOW = 5  # words between a negation and the request it declines


class HumanRequest:
    """Does a customer message ask for a person? Word-list matching (:class:`WordMatcher`) with two
    rules a plain list gets wrong:

    * **compound nouns**: a human word inside a listed compound names something else ("the delivery
      agent", "password manager", "agent de livraison", "human resources") and is ignored;
    * **negation scope**: a negation (``negations``) at most :data:`NEGATION_WINDOW` words before the
      request, in the same clause, declines it ("No need for an agent", "je n'ai pas besoin d'un
      conseiller"); so does a decline right after it ("an agent is not needed"). A clause ends at
      punctuation or a contrastive conjunction, so "No, I want a human" and "not a bot but a human"
      still ask.

    ``words``, ``negations`` and ``compounds`` come from settings (defaults: en, fr, es, de, pt)."""

    __slots__ = ("words", "negations", "compounds")

    def __init__(self, words: Iterable[str], negations: Iterable[str] = (), compounds: Iterable[str] = ()):
        self.words = WordMatcher(words)
        self.negations = WordMatcher(negations)
        self.compounds = WordMatcher(compounds)

    def find(self, text: str) -> list[str]:
        """The folded requests in ``text`` that count (empty when none)."""
        if not text or self.words._re is None:
            return []
        folded = fold(text)
        hits = self.words.spans(folded)
        if not hits:
            return []
        masked = self.compounds.spans(folded)
        out = []
        for start, end in hits:
            if any(a <= start and end <= b for a, b in masked):
                continue
            if self._declined(folded, start, end):
                continue
            out.append(folded[start:end])
        return out

    def _declined(self, folded: str, start: int, end: int) -> bool:
        after = _CLAUSE.search(folded, end)
        question = after is not None and after.group() == "?"
        # a decline right after, also past a question mark: "an agent is not needed", "agent? no thanks"
        stop = next((m.start() for m in _CLAUSE.finditer(folded, after.end()) if m.group() != "?"), len(folded)) \
            if question else (after.start() if after else len(folded))
        tail = folded[end:stop]
        if any(len(_WORD.findall(tail[:a])) <= 3 for a, _ in _DECLINED_AFTER.spans(tail)):
            return True
        if question:
            return False  # a negated question asks: "isn't there a human?", "¿no hay un agente?"
        clause_start = max((m.end() for m in _CLAUSE.finditer(folded, 0, start)), default=0)
        before = folded[clause_start:start]
        return any(len(_WORD.findall(before[b:])) <= NEGATION_WINDOW for _, b in self.negations.spans(before))

    def __call__(self, text: str) -> bool:
        return bool(self.find(text))

    def __reduce__(self):
        return (HumanRequest, (self.words.words, self.negations.words, self.compounds.words))


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
