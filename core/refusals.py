"""Why the core did not answer, as a key that each surface words in its own catalogue.

The intake (``core.intake``) ends a question with either an ``Answer`` or a ``Refusal``. A surface
never reads an exception: it looks the refusal's ``reason`` up in its catalogue and formats it
with ``values``::

    async for event in intake.run(ask):
        if isinstance(event, Refusal):
            await reply(event.text(CHAT_EN))          # Slack; DingTalk picks CHAT_ZH for Chinese

``ENGLISH`` is the core's own wording, used by the REST API, the editor and the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from core.errors import (
    BackendError,
    HearthError,
    InputError,
    RetrievalError,
    SandboxError,
    SQLRejected,
    TableError,
)

Value = str | int | float


class Reason(StrEnum):
    """Every reason the intake can give; each catalogue has a sentence for each."""

    DUPLICATE = "duplicate"  # the platform delivered the message again: say nothing
    EMPTY = "empty"
    EMPTY_CODE = "empty_code"
    TOO_LONG = "too_long"  # values: length, limit
    BINARY = "binary"
    RATE_LIMITED = "rate_limited"  # values: seconds
    NOT_READY = "not_ready"  # values: reason (English, for operators)
    MODEL_DOWN = "model_down"
    RETRIEVAL_DOWN = "retrieval_down"
    TABLES_UNAVAILABLE = "tables_unavailable"
    TABLES_NO_ACCESS = "tables_no_access"
    TABLE_NO_SQL = "table_no_sql"  # values: attempts
    CODE_UNAVAILABLE = "code_unavailable"
    COMPLETION_UNAVAILABLE = "completion_unavailable"  # no configured model takes completion prompts
    CODE_UNUSABLE = "code_unusable"  # values: detail (what was wrong with the model's code, English)
    SQL_REJECTED = "sql_rejected"  # values: reason
    TABLE_ERROR = "table_error"  # values: reason
    BAD_INPUT = "bad_input"  # values: detail (the core's sentence, English)
    ERROR = "error"


@dataclass(frozen=True)
class Refusal:
    """The core's "no": a reason, the values its sentence needs, and the English detail for logs."""

    reason: Reason
    values: Mapping[str, Value] = field(default_factory=dict)
    detail: str = ""

    def text(self, catalogue: Mapping[Reason, str]) -> str:
        """The sentence for this refusal in ``catalogue``."""
        return catalogue[self.reason].format(**self.values)


ENGLISH: dict[Reason, str] = {
    Reason.DUPLICATE: "This request was already answered.",
    Reason.EMPTY: "Please ask a question — the message was empty.",
    Reason.EMPTY_CODE: "Nothing to work on: select some code, or put the cursor inside a function or class.",
    Reason.TOO_LONG: "The question is {length:,} characters; the limit is {limit:,}. Please shorten it.",
    Reason.BINARY: "The message contains binary data; please send plain text.",
    Reason.RATE_LIMITED: "Too many questions; please wait {seconds:.0f}s and try again.",
    Reason.NOT_READY: "Hearth is not ready: {reason}.",
    Reason.MODEL_DOWN: "No model is available to answer right now; please try again in a few minutes.",
    Reason.RETRIEVAL_DOWN: "The document search is not available right now; please try again shortly.",
    Reason.TABLES_UNAVAILABLE: "Table questions are not set up — declare table sources under 'tables:'.",
    Reason.TABLES_NO_ACCESS: "You do not have access to any table source; ask the operator to add you to one.",
    Reason.TABLE_NO_SQL: (
        "The model did not write a SQL query for this question ({attempts} tries) — rephrase it with the "
        "table and column names, or run your own SQL with 'hearth tables query'."
    ),
    Reason.CODE_UNAVAILABLE: "The code service is not available on this server.",
    Reason.COMPLETION_UNAVAILABLE: (
        "Inline completion needs a local model (llm.local): the remote API takes chat prompts only."
    ),
    Reason.CODE_UNUSABLE: "{detail} Try again, or select a smaller piece of code.",
    Reason.SQL_REJECTED: "The SQL was refused: {reason}",
    Reason.TABLE_ERROR: "{reason}",
    Reason.BAD_INPUT: "{detail}",
    Reason.ERROR: "Something went wrong while answering; the log has the details.",
}


def check_text(text: str, limit: int) -> Refusal | None:
    """The refusal for a question's text (empty, over ``limit`` characters, binary), or None."""
    if not text.strip():
        return Refusal(Reason.EMPTY)
    if len(text) > limit:
        return Refusal(Reason.TOO_LONG, {"length": len(text), "limit": limit})
    if "\x00" in text:
        return Refusal(Reason.BINARY)
    return None


def require_text(text: str, limit: int) -> None:
    """Raise the keyed ``InputError`` that :func:`check_text` describes (for callers past the intake)."""
    refusal = check_text(text, limit)
    if refusal is not None:
        raise InputError(refusal.text(ENGLISH), key=refusal.reason.value, **refusal.values)


def sentence(refusal: Refusal) -> str:
    """The sentence for people who run or build on Hearth (the REST API, the editor, the CLI).

    An engine error's own message is already a sentence to act on ("No model could answer: the
    remote API rejected the credentials (401) — check llm.remote.api_key"), so it is used as it
    is; a check's refusal reads from ``ENGLISH``. A bug's detail is never shown.
    """
    if refusal.detail and refusal.reason is not Reason.ERROR:
        return refusal.detail
    return refusal.text(ENGLISH)


class Refused(HearthError):
    """A refusal carried through code that speaks in exceptions (the editor's use cases).

    ``str(exc)`` is :func:`sentence`; ``refusal_for`` gives the refusal back unchanged, so it is
    never re-worded on the way out.
    """

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(sentence(refusal))
        self.refusal = refusal


def refusal_for(exc: HearthError) -> Refusal:
    """The refusal an engine error stands for (its own ``key`` when it carries one)."""
    detail = str(exc)
    if isinstance(exc, Refused):
        return exc.refusal
    if exc.key:
        return Refusal(Reason(exc.key), dict(exc.values), detail)
    if isinstance(exc, SQLRejected):
        return Refusal(Reason.SQL_REJECTED, {"reason": detail}, detail)
    if isinstance(exc, TableError):
        return Refusal(Reason.TABLE_ERROR, {"reason": detail}, detail)
    if isinstance(exc, InputError | SandboxError):
        return Refusal(Reason.BAD_INPUT, {"detail": detail}, detail)
    if isinstance(exc, BackendError):
        return Refusal(Reason.MODEL_DOWN, {}, detail)
    if isinstance(exc, RetrievalError):
        return Refusal(Reason.RETRIEVAL_DOWN, {}, detail)
    return Refusal(Reason.ERROR, {}, detail)
