"""Answers that say only what their sources support: the verifier and quote mode, after generation.

The assistant streams the model's text as it comes; when the model is done, :class:`Grounder`
checks every sentence against the retrieved chunks (:mod:`core.grounding.verify`), cites each
kept sentence with the chunk that supports it, drops (or marks) the rest, and answers "not found"
with the closest sources when nothing is supported. Surfaces then replace the streamed text with
the verified one (their final message renders ``Answer.text``)::

    grounder = Grounder(settings.retrieval)
    quotes = grounder.quotes(question, hits, dense=0.61)        # quote mode: shown first
    text, citations, grounding = grounder.finish(model_text, hits, question, "drop", quotes)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from core.contracts import Citation, Grounding, Hit, Support
from core.grounding.quotes import Quote, pick_quotes, rank_sentences
from core.grounding.verify import Checked, Verifier
from core.retrieval.config import RetrievalSettings

__all__ = ["NOT_FOUND", "Grounder", "Quote", "Verifier", "citation_for", "quote_block"]

NOT_FOUND = "I could not find this in the docs."
UNSUPPORTED_MARK = "[not in the sources]"
# How many of the closest sources a not-found answer lists.
CLOSEST = 3
_NOT_FOUND_SAYING = re.compile(
    r"\b(?:could ?n[o']t find|can ?n[o']t find|cannot find|not (?:mentioned|covered|stated|specified|"
    r"in the (?:docs|documents|sources|handbook))|(?:do|does) not (?:say|mention|contain|cover)|"
    r"no information)\b",
    re.IGNORECASE,
)


def citation_for(number: int, hit: Hit) -> Citation:
    """The Citation numbered ``number`` for ``hit``."""
    return Citation(number, hit.title, hit.uri, hit.doc_id, hit.chunk_id, hit.location, hit.score, hit.text)


def quote_block(quotes: Sequence[Quote], numbers: dict[int, int]) -> str:
    """The quotes as Markdown block quotes, each with its citation number."""
    return "\n".join(f"> {q.text} [{numbers[q.source]}]" for q in quotes)


def says_not_found(sentence: str) -> bool:
    """Whether a sentence is the model saying the sources do not answer the question."""
    return bool(_NOT_FOUND_SAYING.search(sentence))


@dataclass
class Grounder:
    """Verifies answers and picks quotes, with the thresholds from ``retrieval`` settings."""

    settings: RetrievalSettings

    @property
    def verifier(self) -> Verifier:
        """A verifier with the configured support threshold."""
        return Verifier(min_support=self.settings.min_support)

    def relevance(self, question: str, hits: Sequence[Hit], dense: float | None) -> float:
        """How well the best source sentence answers ``question`` (0–1; see ``retrieval.min_relevance``)."""
        ranked = rank_sentences(question, hits)
        lexical = ranked[0].relevance if ranked else 0.0
        return lexical if dense is None else (lexical + max(0.0, dense)) / 2

    def quotes(self, question: str, hits: Sequence[Hit]) -> list[Quote]:
        """The source sentences to quote before the model's summary (quote mode)."""
        return pick_quotes(question, hits, limit=self.settings.quote_sentences, min_relevance=0.0)

    def finish(
        self,
        text: str,
        hits: Sequence[Hit],
        question: str,
        mode: str,
        quotes: Sequence[Quote] = (),
    ) -> tuple[str, list[Citation], Grounding]:
        """The verified answer: its text, the citations it uses (numbered in order) and the record."""
        # In quote mode the model was shown only the quotes: it may restate them and nothing else.
        basis = [replace(hits[q.source], text=q.text) for q in quotes] if quotes else list(hits)
        checked = [_back(c, quotes) for c in self.verifier.check(text, basis, question) if c.text]
        # The model saying "not found" is no claim: beside supported sentences it is left out.
        claims = [c for c in checked if not (says_not_found(c.text) and not c.supported)]
        kept = [c for c in claims if c.supported or mode == "mark"]
        if not quotes and not any(c.supported for c in claims):
            closest = [citation_for(i, h) for i, h in enumerate(hits[:CLOSEST], 1)]
            sentences = [_support(c, None) for c in claims]
            return NOT_FOUND, closest, Grounding(mode, sentences, not_found=True)
        numbers: dict[int, int] = {}
        for source in [q.source for q in quotes] + [c.source for c in kept if c.source is not None]:
            numbers.setdefault(source, len(numbers) + 1)
        parts: list[str] = []
        if quotes:
            parts.append(quote_block(quotes, numbers))
        parts.append(_render(kept, numbers))
        citations = [citation_for(n, hits[i]) for i, n in numbers.items()]
        sentences = [Support(q.text, True, 1.0, numbers[q.source], "quote") for q in quotes]
        sentences += [_support(c, numbers.get(c.source) if c.source is not None else None) for c in claims]
        return "\n\n".join(p for p in parts if p), citations, Grounding(mode, sentences)


def _back(checked: Checked, quotes: Sequence[Quote]) -> Checked:
    """A sentence checked against quotes, pointed back at the chunk its quote came from."""
    if not quotes or checked.source is None:
        return checked
    return replace(checked, source=quotes[checked.source].source)


def _support(checked: Checked, number: int | None) -> Support:
    return Support(checked.text, checked.supported, checked.score, number, "answer", checked.missing)


def _render(kept: Sequence[Checked], numbers: dict[int, int]) -> str:
    """Kept sentences with their citations, sentences of one line rejoined on one line."""
    lines: list[list[str]] = []
    last_line: int | None = None
    for c in kept:
        if c.supported and c.source is not None:
            body = _with_marker(c.text, f"[{numbers[c.source]}]")
        else:
            body = _with_marker(c.text, UNSUPPORTED_MARK)
        if last_line is None or c.sentence.line != last_line:
            lines.append([])
        lines[-1].append(body)
        last_line = c.sentence.line
    return "\n".join(" ".join(words) for words in lines)


def _with_marker(sentence: str, marker: str) -> str:
    """``sentence`` with ``marker`` before its closing punctuation: 'They get 20 days [1].'"""
    match = re.search(r"[.!?:;]+$", sentence)
    if match is None:
        return f"{sentence} {marker}"
    return f"{sentence[: match.start()].rstrip()} {marker}{match.group()}"
