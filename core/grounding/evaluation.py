"""Answer quality on a question file: fact hit rate, not-found correctness, unsupported sentences.

The file holds one JSON object per line: ``{"question": "...", "fact": "250 EUR"}``; ``"fact": null``
marks a question the docs do not answer (the right answer is "not found"). ``fact`` may also be a
list of alternatives (any one counts). A fact is found when it appears in the answer as words
(case, Markdown, thousands separators and number words aside: "1,500 EUR" = "1500 eur").
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core.contracts import Answer, Citation, Hit, Request
from core.errors import BackendError, InputError
from core.grounding import NOT_FOUND, says_not_found
from core.grounding.text import NUMBER_WORDS, clean, split_sentences
from core.grounding.verify import Verifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    """One question and the facts a right answer contains (empty: the docs do not answer it)."""

    question: str
    facts: tuple[str, ...]

    @property
    def answerable(self) -> bool:
        """Whether the docs answer the question."""
        return bool(self.facts)


def load_cases(path: Path) -> list[Case]:
    """Read and validate a question file; a bad line names its number."""
    if not path.is_file():
        raise InputError(f"No question file at {path}.")
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            question, fact = data["question"], data["fact"]
            facts = (
                [fact]
                if isinstance(fact, str)
                else fact
                if isinstance(fact, list)
                else []
                if fact is None
                else None
            )
            if not isinstance(question, str) or not question.strip() or facts is None:
                raise ValueError
            if not all(isinstance(f, str) and f.strip() for f in facts):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise InputError(
                f'{path}:{number}: expected {{"question": str, "fact": str, [str, ...] or null}}.'
            ) from None
        cases.append(Case(question.strip(), tuple(facts)))
    if not cases:
        raise InputError(f"{path} holds no questions.")
    return cases


def normalise(text: str) -> str:
    """Lower-cased words with numbers written as digits, for fact matching."""
    text = clean(text).lower().replace("€", " eur ").replace("`", "")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    words = re.findall(r"[\w:/%.$#@-]+", text)
    out = []
    for word in words:
        word = word.strip(".-")
        out.append(NUMBER_WORDS.get(word, word))
    return " " + " ".join(w for w in out if w) + " "


def fact_in(fact: str, text: str) -> bool:
    """Whether ``fact`` appears in ``text`` as whole words."""
    return normalise(fact) in normalise(text)


def is_not_found(answer: Answer) -> bool:
    """Whether the answer says the docs do not answer the question."""
    if answer.grounding is not None:
        return answer.grounding.not_found
    text = answer.text.strip()
    return text.startswith(NOT_FOUND) or (
        bool(text) and all(says_not_found(s.text) for s in split_sentences(text))
    )


def unsupported_sentences(answer: Answer, verifier: Verifier, question: str) -> list[str]:
    """Sentences of the final text the chunk they cite does not support (uncited: no cited chunk does)."""
    if is_not_found(answer):
        return []
    by_number = {c.number: c for c in answer.citations}
    out = []
    for sentence in split_sentences(answer.text):
        cited = [by_number[n] for n in sentence.cited if n in by_number] or list(answer.citations)
        passages = verifier.passages([_as_hit(c) for c in cited])
        if not verifier.support(sentence, passages, question).supported:
            out.append(sentence.text)
    return out


def _as_hit(c: Citation) -> Hit:
    return Hit(c.chunk_id, c.doc_id, c.uri, c.title, c.text, c.score, c.location)


@dataclass
class Outcome:
    """How one question was answered."""

    case: Case
    answer: str
    fact_hit: bool | None  # None for out-of-scope questions
    not_found: bool
    removed: int  # sentences the verifier took out (or marked)
    unsupported: list[str] = field(default_factory=list)  # final sentences still unsupported
    error: str = ""  # why there is no answer (the model failed)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "question": self.case.question,
            "facts": list(self.case.facts),
            "answer": self.answer,
            "fact_hit": self.fact_hit,
            "not_found": self.not_found,
            "removed": self.removed,
            "unsupported": self.unsupported,
            "error": self.error,
        }


@dataclass
class Report:
    """The figures over a question file."""

    outcomes: list[Outcome]

    def figures(self) -> dict[str, float | int]:
        """fact hit rate, not-found correctness and unsupported shares (0–1), and the counts."""
        answerable = [o for o in self.outcomes if o.case.answerable]
        absent = [o for o in self.outcomes if not o.case.answerable]
        n = len(self.outcomes)
        return {
            "questions": n,
            "answerable": len(answerable),
            "out_of_scope": len(absent),
            "fact_hit_rate": _share(sum(bool(o.fact_hit) for o in answerable), len(answerable)),
            "not_found_correct": _share(sum(o.not_found for o in absent), len(absent)),
            "not_found_wrongly": _share(sum(o.not_found for o in answerable), len(answerable)),
            "unsupported_share": _share(sum(bool(o.unsupported) for o in self.outcomes), n),
            "verifier_removed_share": _share(sum(o.removed > 0 for o in self.outcomes), n),
            "errors": sum(bool(o.error) for o in self.outcomes),
        }


def _share(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


class Asks(Protocol):
    """What the evaluation needs from the assistant."""

    async def ask(self, request: Request) -> Answer:
        """Answer one question."""
        ...


async def evaluate(assistant: Asks, cases: Sequence[Case], verifier: Verifier) -> Report:
    """Ask every question (as the operator) and score the answers."""
    outcomes = []
    for case in cases:
        try:
            answer: Answer = await assistant.ask(Request(text=case.question, surface="cli"))
        except BackendError as exc:  # a busy model fails one answer: a miss, not the end of the run
            log.warning("%r was not answered: %s", case.question, exc)
            outcomes.append(Outcome(case, "", False if case.answerable else None, False, 0, error=str(exc)))
            continue
        not_found = is_not_found(answer)
        hit = any(fact_in(f, answer.text) for f in case.facts) if case.answerable else None
        removed = len(answer.grounding.unsupported) if answer.grounding is not None else 0
        outcomes.append(
            Outcome(
                case,
                answer.text,
                hit,
                not_found,
                removed,
                unsupported_sentences(answer, verifier, case.question),
            )
        )
    return Report(outcomes)
