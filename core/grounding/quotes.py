"""Quote mode: the source sentences that best answer a question, quoted before the model's summary.

A small base model picks the wrong number from the right chunk more often than not; the sentence
that holds the answer is usually in the retrieved chunks all the same. Quote mode finds it by the
question's words (weighted by how rare each is among the retrieved sentences) and shows it
verbatim, with its citation::

    quotes = pick_quotes("What's the hotel limit in Tokyo?", hits, limit=2, min_relevance=0.5)
    quotes[0].text   # 'Hotels up to 180 EUR per night (250 EUR in London, New York, Zurich and Tokyo).'
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.contracts import Hit
from core.grounding.text import content_words, split_sentences

# Question words that say what kind of answer is wanted, not what it is about.
_ASKING = frozenset(
    "many long old big quick quickly fast soon time often far need know tell today tomorrow now "
    "currently actually really exactly".split()
)
MAX_QUOTE_CHARS = 300
_LINES = re.compile(r",?\s*\blines?\s+\d+(?:-\d+)?")


@dataclass(frozen=True)
class Quote:
    """A source sentence and how much of the question it covers (0–1)."""

    text: str
    source: int  # index into the hits
    relevance: float
    words: frozenset[str] = field(default=frozenset(), compare=False, repr=False)


def question_words(question: str) -> list[str]:
    """The content words of a question that name its subject."""
    words = [w for w in dict.fromkeys(content_words(question)) if w not in _ASKING]
    return words or list(dict.fromkeys(content_words(question)))


def rank_sentences(question: str, hits: Sequence[Hit]) -> list[Quote]:
    """Every sentence of the hits, best answer to ``question`` first.

    Relevance is the IDF-weighted share of the question's words a sentence contains, IDF taken
    over the retrieved sentences, so a word every sentence has counts for little and a word none
    has (the question's subject is not in the docs) weighs the relevance down. Ties go to the
    better-ranked hit and then to the earlier sentence.
    """
    return _ranked(question, hits)[0]


def _ranked(question: str, hits: Sequence[Hit]) -> tuple[list[Quote], dict[str, float]]:
    """The ranked sentences and the IDF weight of each question word."""
    wanted = question_words(question)
    candidates: list[tuple[int, int, str, frozenset[str]]] = []
    for h_index, hit in enumerate(hits):
        # A sentence under "## Core hours" is about core hours even when it does not say so.
        context = frozenset(content_words(_LINES.sub("", hit.location)))
        for s_index, sentence in enumerate(split_sentences(hit.text)):
            if sentence.heading:
                context = frozenset(content_words(sentence.text))
                continue
            if len(sentence.text) < 12:
                continue
            words = frozenset(content_words(sentence.text)) | context
            candidates.append((h_index, s_index, sentence.text, words))
    if not wanted or not candidates:
        return [], {}
    n = len(candidates)
    idf = {w: math.log(1 + n / (1 + sum(w in c[3] for c in candidates))) for w in wanted}
    total = sum(idf.values())
    scored = [
        Quote(text, h_index, sum(idf[w] for w in wanted if w in words) / total, words)
        for h_index, s_index, text, words in candidates
    ]
    order = sorted(
        range(len(scored)), key=lambda i: (-scored[i].relevance, candidates[i][0], candidates[i][1])
    )
    return [scored[i] for i in order], idf


def pick_quotes(
    question: str, hits: Sequence[Hit], *, limit: int, min_relevance: float, min_gain: float = 0.2
) -> list[Quote]:
    """Up to ``limit`` sentences that answer ``question``, shortened to a quote's length.

    The first is the best answer (at least ``min_relevance``). A further one is taken when it
    answers nearly as well (three quarters of the first's relevance) or covers two or more question
    words the quotes so far do not, worth at least ``min_gain`` of the question: "How many vacation
    days do I get, and how do I request time off?" gets a sentence for each half.
    """
    ranked, idf = _ranked(question, hits)
    if not ranked or ranked[0].relevance < min_relevance:
        return []
    total = sum(idf.values())
    chosen = [ranked[0]]
    covered = set(ranked[0].words)
    while len(chosen) < limit:
        best: tuple[float, Quote] | None = None
        for quote in ranked:
            if any(quote.text == q.text for q in chosen):
                continue
            new = [w for w in idf if w in quote.words and w not in covered]
            # Another part of the question is two of its words or more, not one generic verb.
            gain = sum(idf[w] for w in new) / total if len(new) >= 2 else 0.0
            close = quote.relevance >= 0.75 * ranked[0].relevance
            value = max(gain, quote.relevance if close else 0.0)
            if (gain >= min_gain or close) and (best is None or value > best[0]):
                best = (value, quote)
        if best is None:
            break
        chosen.append(best[1])
        covered |= best[1].words
    return [Quote(shorten(q.text), q.source, q.relevance, q.words) for q in chosen]


def shorten(text: str, limit: int = MAX_QUOTE_CHARS) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (with an ellipsis)."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
