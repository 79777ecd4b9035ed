"""The values that cross from surfaces into the core and back: Request, Hit, Citation, TablePart, Answer."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Any, Literal, Protocol

from core.llm.base import Priority, Usage
from core.refusals import Refusal


@dataclass(frozen=True)
class Turn:
    """One earlier message in a conversation (for follow-ups)."""

    role: str  # "user" | "assistant"
    text: str


@dataclass
class Request:
    """A question from any surface.

    ``acl`` is the set of tokens the asker holds; ``None`` means the operator (the CLI without
    ``--acl``), who may read everything.
    """

    text: str
    user: str = "operator"
    surface: str = "cli"
    acl: frozenset[str] | None = None
    channel: str | None = None
    thread: str | None = None
    history: list[Turn] = field(default_factory=list)
    priority: Priority = Priority.CHAT
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # How sentences the sources do not support are treated: "drop", "mark" or "off"; None: the
    # settings' default for chat (``retrieval.grounding``). The REST API's JSON asks for "mark".
    grounding: str | None = None


_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def public_uri(uri: str, doc_id: str = "") -> str:
    """What a reader may see of a document's address: a URL as it is; a path on the server as the
    path relative to its source's root (what follows ``source:`` in ``doc_id``), else its file name.

    Connectors cite files relative to the source (or by ``base_url``); this also covers documents
    indexed before they did, so no answer, citation or search hit shows where files live on the server.
    """
    path = uri.removeprefix("file://")
    if not (path.startswith(("/", "~", "\\")) or _DRIVE.match(path)):
        return uri
    rel = doc_id.split(":", 1)[1] if ":" in doc_id else ""
    if rel and path.replace("\\", "/").endswith("/" + rel):
        return rel
    return PurePath(path).name or uri


def rank_score(rank: int) -> float:
    """The score user-facing JSON shows: 1 for the best hit, 1/2 for the next … (rank only).

    Raw scores are kept inside Hearth: BM25's IDF is computed over every document, restricted
    ones included, so a raw score would let a user tell how common a word is in documents they
    cannot read.
    """
    return round(1.0 / max(1, rank), 6)


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk (``uri`` is made public on creation: see :func:`public_uri`)."""

    chunk_id: str
    doc_id: str
    uri: str
    title: str
    text: str
    score: float
    location: str = ""  # e.g. "lines 10-24" or "Setup › Install"
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "uri", public_uri(self.uri, self.doc_id))

    def as_dict(self, rank: int, *, raw_score: bool = False) -> dict[str, Any]:
        """The JSON form of `hearth search --json` and /v1/search; the score is :func:`rank_score`
        unless ``raw_score`` (for the operator, who may read every document)."""
        return {
            "rank": rank,
            "score": round(self.score, 6) if raw_score else rank_score(rank),
            "doc_id": self.doc_id,
            "uri": self.uri,
            "title": self.title,
            "text": self.text,
            "chunk_id": self.chunk_id,
            "location": self.location,
            "source": self.source,
        }


class Retriever(Protocol):
    """What the assistant needs from retrieval."""

    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> Sequence[Hit]:
        """Chunks relevant to ``query`` that ``acl`` may read (``None``: everything)."""
        ...


@dataclass(frozen=True)
class Citation:
    """A numbered source an answer rests on (``uri`` made public: see :func:`public_uri`)."""

    number: int
    title: str
    uri: str
    doc_id: str
    chunk_id: str
    location: str
    score: float
    text: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "uri", public_uri(self.uri, self.doc_id))

    def as_dict(self) -> dict[str, Any]:
        """JSON form; the score is the source's :func:`rank_score` (sources are numbered best first)."""
        return {
            "number": self.number,
            "title": self.title,
            "uri": self.uri,
            "doc_id": self.doc_id,
            "chunk_id": self.chunk_id,
            "location": self.location,
            "score": rank_score(self.number),
        }


# A table cell as it crosses into JSON (dates and decimals arrive as ISO strings and floats).
Cell = str | int | float | bool | None


@dataclass
class TablePart:
    """The structured half of a table answer: the SQL that ran, its rows, and files for the rest.

    ``rows`` holds every fetched row (up to the source's ``max_rows``); a chat surface shows the
    first ``chat_rows`` and attaches ``csv`` (written when there are more). ``chart`` is a PNG
    when the result has a shape worth drawing. Surfaces render it with ``core.render``.
    """

    sql: str
    source: str
    columns: list[str]
    rows: list[list[Cell]]
    chat_rows: int
    chart: Path | None = None
    csv: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form (paths as strings)."""
        return {
            "sql": self.sql,
            "source": self.source,
            "columns": list(self.columns),
            "rows": [list(r) for r in self.rows],
            "chart": str(self.chart) if self.chart else None,
            "csv": str(self.csv) if self.csv else None,
        }


@dataclass(frozen=True)
class Support:
    """How one sentence of an answer is backed by the retrieved sources (see ``core.grounding``).

    ``citation`` is the number of the ``Citation`` whose chunk supports the sentence (None when no
    chunk does); ``score`` is that chunk's support, 0–1; ``missing`` lists the numbers, names or
    commands of the sentence that no retrieved chunk contains; ``kind`` is "quote" for a sentence
    quoted from a source, "answer" for one the model wrote.
    """

    text: str
    supported: bool
    score: float
    citation: int | None = None
    kind: str = "answer"
    missing: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "text": self.text,
            "supported": self.supported,
            "support": round(self.score, 4),
            "citation": self.citation,
            "kind": self.kind,
            "missing": list(self.missing),
        }


@dataclass
class Grounding:
    """What the verifier did to an answer: each sentence's support, and what it removed or marked.

    ``mode`` is "drop" (unsupported sentences were removed from the text) or "mark" (kept and
    marked); ``not_found`` is True when nothing in the answer was supported, so the text is the
    not-found sentence and the citations are the closest sources.
    """

    mode: str
    sentences: list[Support] = field(default_factory=list)
    not_found: bool = False

    @property
    def removed(self) -> list[str]:
        """The sentences taken out of the text (drop mode)."""
        return [s.text for s in self.sentences if not s.supported] if self.mode == "drop" else []

    @property
    def unsupported(self) -> list[str]:
        """Sentences no retrieved chunk supports (removed or marked)."""
        return [s.text for s in self.sentences if not s.supported]

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "mode": self.mode,
            "not_found": self.not_found,
            "removed": self.removed,
            "sentences": [s.as_dict() for s in self.sentences],
        }


@dataclass
class Answer:
    """What every surface renders: the text, its sources, and who produced it."""

    text: str
    citations: list[Citation]
    backend: str
    model: str
    usage: Usage
    timings_ms: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    request_id: str = ""
    table: TablePart | None = None  # set on answers to table questions; ``text`` is then one sentence
    # Sources the asker may read that were left out because the audience may not (see Ask.audience).
    withheld: int = 0
    # Set on answers checked against their sources: per-sentence support, removed sentences.
    grounding: Grounding | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON contract of `hearth ask --json` (other issues extend it, never break it)."""
        extra: dict[str, Any] = {} if self.table is None else {"table": self.table.as_dict()}
        if self.grounding is not None:
            extra["grounding"] = self.grounding.as_dict()
        return {
            "answer": self.text,
            "citations": [c.as_dict() for c in self.citations],
            "backend": self.backend,
            "model": self.model,
            "usage": self.usage.as_dict(),
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "notices": list(self.notices),
            "request_id": self.request_id,
            **extra,
        }


@dataclass(frozen=True)
class Delta:
    """A piece of answer text as it streams."""

    text: str


# --- what the intake (core.intake) takes and reports ----------------------------------------
Status = Literal["ok", "refused", "error", "cancelled"]


class Kind(StrEnum):
    """What is asked; the value is the audit action."""

    ASK = "ask"
    TABLES = "tables.ask"
    EXPLAIN = "code.explain"
    GENERATE = "code.generate"
    TESTS = "code.tests"
    DIGEST = "digest.summary"
    COMPLETE = "code.complete"  # inline completion as the editor user types


@dataclass(frozen=True)
class Prompt:
    """A named template and its inputs, for kinds the core renders from operator-chosen templates."""

    template: str
    variables: dict[str, object] = field(default_factory=dict)
    max_tokens: int | None = None


@dataclass(frozen=True)
class Code:
    """The code a code question is about."""

    code: str
    language: str
    path: str | None = None
    context: str | None = None
    failures: str | None = None  # errors of an earlier attempt (a repair round)
    previous: str | None = None  # the previous test file (a tests repair round)


@dataclass(frozen=True)
class Snippet:
    """Related code shown to the model before the file being completed (another open file, say)."""

    path: str
    text: str


@dataclass(frozen=True)
class Completion:
    """The text around the editor's cursor, for a suggestion to insert there.

    ``prefix`` is what comes before the cursor and ``suffix`` what follows, each already cut to
    the window the editor sends (see :mod:`core.code.completion`); ``max_tokens`` caps this
    suggestion below ``lsp.completion.max_tokens`` (None: that setting).
    """

    prefix: str
    suffix: str
    language: str
    path: str | None = None
    snippets: tuple[Snippet, ...] = ()
    max_tokens: int | None = None


@dataclass
class Ask:
    """One question from any surface: the core ``Request`` (who, where, the text) and its kind."""

    kind: Kind
    request: Request
    code: Code | None = None
    source: str | None = None  # a table source to limit a table question to
    once: str | None = None  # the platform's id for the message: answered at most once
    prompt: Prompt | None = None  # a digest's summary template and inputs
    completion: Completion | None = None  # the cursor's surroundings, for Kind.COMPLETE
    # The grants of everyone who will see the answer (a channel's); None: only the asker sees it.
    # The answer is built from what this audience may read, never from the asker's private grants.
    audience: frozenset[str] | None = None


@dataclass
class Outcome:
    """How one ask ended, for the observers."""

    ask: Ask
    status: Status
    answer: Answer | None = None
    refusal: Refusal | None = None
    duration_ms: float = 0.0


class Poster(Protocol):
    """Posts a finished text (Markdown) to a destination on one surface (digests, notifications).

    Slack implements it with ``chat.postMessage`` (destination: a channel), DingTalk with a signed
    custom-robot webhook (destination: a webhook name from ``dingtalk.webhooks``).
    """

    surface: str

    async def post(self, destination: str, markdown: str) -> str:
        """Post and return the platform's message id (or '' when the platform gives none)."""
        ...
