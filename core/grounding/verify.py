"""The verifier: which retrieved chunk, if any, supports each sentence of an answer.

A sentence is supported by a chunk when two things hold:

- **every strict token** of the sentence (numbers, amounts, dates, names, commands — see
  :mod:`core.grounding.text`) appears in the chunk;
- its **content words** are covered by one passage of the chunk (one or two neighbouring
  sentences) to at least ``min_support``. Words the question already used count for less
  (``question_weight``): restating the question is not a claim, the rest of the sentence is.

The best such chunk is the sentence's citation, whatever number the model wrote::

    verifier = Verifier(min_support=0.6)
    checked = verifier.check("New hires get 20 days [3]. Contractors get 40.", hits, question="…")
    [(c.text, c.supported, c.source) for c in checked]
    # [("New hires get 20 days", True, 0), ("Contractors get 40.", False, None)]
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from core.contracts import Hit
from core.grounding.text import (
    Sentence,
    command_in,
    content_words,
    rate_in,
    rates,
    split_sentences,
    strict_tokens,
    strict_vocabulary,
)

# How many neighbouring sentences of a chunk one answer sentence may draw on.
_WINDOW = 2


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk prepared for matching: its sentences' words and its strict vocabulary."""

    index: int  # position in the hits (0-based)
    hit: Hit
    sentences: tuple[str, ...]
    words: tuple[frozenset[str], ...]
    vocabulary: frozenset[str]
    text_lower: str
    header: frozenset[str] = frozenset()  # words of its title, path, location and headings

    @classmethod
    def of(cls, index: int, hit: Hit) -> Passage:
        """Split and index one hit."""
        body = "\n".join(p for p in (hit.title, hit.location, hit.text) if p)
        split = split_sentences(hit.text)
        sentences = tuple(s.text for s in split)
        headings = " ".join([hit.title, hit.uri, hit.location, *(s.text for s in split if s.heading)])
        return cls(
            index,
            hit,
            sentences,
            tuple(frozenset(content_words(s)) for s in sentences),
            strict_vocabulary(body),
            body.lower(),
            frozenset(content_words(headings)),
        )

    def windows(self) -> list[tuple[int, frozenset[str]]]:
        """(first sentence index, words) of every run of up to ``_WINDOW`` neighbouring sentences."""
        out = []
        for i in range(len(self.words)):
            acc: frozenset[str] = frozenset()
            for j in range(i, min(i + _WINDOW, len(self.words))):
                acc = acc | self.words[j]
                out.append((i, acc))
        return out

    def missing(self, strict: dict[str, str], stated_rates: Collection[tuple[str, str]] = ()) -> list[str]:
        """The strict tokens of a sentence this chunk does not contain (display values).

        An amount stated per period ("750 EUR per month") must come with that period in the chunk.
        """
        out = [f"{n} per {p}" for n, p in sorted(stated_rates) if not rate_in((n, p), self.text_lower)]
        for key, shown in strict.items():
            if key.startswith("cmd:"):
                if not command_in(key, self.text_lower):
                    out.append(shown)
            elif key not in self.vocabulary:
                out.append(shown)
        return out


@dataclass(frozen=True)
class Checked:
    """One answer sentence and its best support."""

    sentence: Sentence
    supported: bool
    score: float
    source: int | None  # index into the hits of the supporting chunk (None: none supports it)
    missing: tuple[str, ...] = ()
    passage: str = ""  # the chunk sentence(s) that support it

    @property
    def text(self) -> str:
        """The sentence without its citation markers."""
        return self.sentence.text


@dataclass
class Verifier:
    """Checks answer sentences against retrieved chunks (lexical support plus the strict-token rule)."""

    min_support: float = 0.6
    question_weight: float = 0.5
    _cache: dict[str, Passage] = field(default_factory=dict, repr=False)

    def passages(self, hits: Sequence[Hit]) -> list[Passage]:
        """The hits prepared for matching (kept per chunk id, so a chunk is split once)."""
        out = []
        for i, hit in enumerate(hits):
            key = f"{i}\x00{hit.chunk_id}\x00{hash(hit.text)}"
            if key not in self._cache:
                self._cache[key] = Passage.of(i, hit)
            out.append(self._cache[key])
        return out

    def coverage(self, words: Sequence[str], window: frozenset[str], question: frozenset[str]) -> float:
        """Weighted share of a sentence's distinct content words found in ``window``."""
        distinct = set(words)
        if not distinct:
            return 0.0
        weights = {w: self.question_weight if w in question else 1.0 for w in distinct}
        total = sum(weights.values())
        return sum(v for w, v in weights.items() if w in window) / total

    def support(self, sentence: Sentence, passages: Sequence[Passage], question: str = "") -> Checked:
        """The best-supporting chunk for one sentence, or why none supports it."""
        words = content_words(sentence.text)
        strict = strict_tokens(sentence.text)
        stated = rates(sentence.text)
        q_words = frozenset(content_words(question))
        best: tuple[float, int, str] | None = None  # (score, passage index, supporting text)
        closest: tuple[float, list[str]] | None = None  # highest coverage regardless of strict tokens
        for passage in passages:
            score, first = 0.0, 0
            for start, window in passage.windows():
                value = self.coverage(words, window, q_words)
                if value > score:
                    score, first = value, start
            missing = passage.missing(strict, stated)
            if closest is None or score > closest[0]:
                closest = (score, missing)
            if missing:
                continue
            if best is None or score > best[0]:
                text = " ".join(passage.sentences[first : first + _WINDOW])
                best = (score, passage.index, text)
        if not words and not strict:
            return Checked(sentence, False, 0.0, None)
        # "Parental leave [1]" or "On-call (on-call.md)" repeats a heading or a path: no claim at all.
        if any(set(words) <= p.header for p in passages) and not any(k.startswith("num:") for k in strict):
            return Checked(sentence, False, 0.0, None)
        if best is not None and best[0] >= self.min_support:
            return Checked(sentence, True, best[0], best[1], passage=best[2])
        missing_shown = tuple(closest[1]) if closest else ()
        score = best[0] if best is not None else 0.0
        return Checked(sentence, False, score, None, missing_shown)

    def check(self, text: str, hits: Sequence[Hit], question: str = "") -> list[Checked]:
        """Every sentence of ``text`` with its support among ``hits``."""
        passages = self.passages(hits)
        return [self.support(s, passages, question) for s in split_sentences(text)]
