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
from dataclasses import dataclass

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
        return []
    n = len(candidates)
    idf = {w: math.log(1 + n / (1 + sum(w in c[3] for c in candidates))) for w in wanted}
    total = sum(idf.values())
    scored = [
        Quote(text, h_index, sum(idf[w] for w in wanted if w in words) / total)
        for h_index, s_index, text, words in candidates
    ]
    order = sorted(
        range(len(scored)), key=lambda i: (-scored[i].relevance, candidates[i][0], candidates[i][1])
    )
    return [scored[i] for i in order]


def pick_quotes(question: str, hits: Sequence[Hit], *, limit: int, min_relevance: float) -> list[Quote]:
    """Up to ``limit`` sentences that answer ``question`` well enough, shortened to a quote's length."""
    out: list[Quote] = []
    for quote in rank_sentences(question, hits):
        if len(out) >= limit or quote.relevance < min_relevance:
            break
        if any(quote.text == q.text for q in out):
            continue
        out.append(Quote(shorten(quote.text), quote.source, quote.relevance))
    return out


def shorten(text: str, limit: int = MAX_QUOTE_CHARS) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (with an ellipsis)."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
