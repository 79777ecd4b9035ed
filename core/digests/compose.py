"""Turn gathered inputs into the digest's Markdown: a short model-written summary, then the facts.

The facts (changed docs, table results, notes) are rendered here, not by the model, so a small
base model can only add a summary — it cannot drop or invent a number.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from core.contracts import Answer, Ask, Delta, Kind, Prompt, Request
from core.digests import messages
from core.digests.config import DigestSpec
from core.digests.inputs import Gathered
from core.digests.schedule import fire_key
from core.llm.base import Priority
from core.refusals import ENGLISH, Refusal

log = logging.getLogger(__name__)

Summarise = Callable[[Ask], AsyncIterator[Delta | Answer | Refusal]]
"""The core's front door (``core.intake.Intake.run``): a digest's summary is one more ask."""

SUMMARY_CHARS = 600
_SENTENCE_END = re.compile(r"[.!?。！？](?=\s|$)")


@dataclass(frozen=True)
class Draft:
    """A composed digest and what it covers."""

    text: str
    since: str
    until: str
    notes: list[str]
    reason: str | None
    skip: bool


async def write(spec: DigestSpec, got: Gathered, summarise_with: Summarise) -> Draft:
    """The digest of what was gathered: the facts, with the model's summary unless nothing changed."""
    span = period(spec, got.since, got.until)
    if got.nothing_changed:
        text = compose_no_changes(spec, span)
    else:
        summary, credit = await summarise(spec, summarise_with, got, span)
        text = compose(spec, got, span, summary, credit)
    skip = got.nothing_changed and spec.on_no_changes == "skip"
    reason = "; ".join(got.rejected) or None
    return Draft(text, fire_key(got.since), fire_key(got.until), got.notes, reason, skip)


def period(spec: DigestSpec, since: datetime, until: datetime) -> str:
    """'16 Nov 2026 09:00 – 23 Nov 2026 09:00 (Asia/Shanghai)'."""
    tz = ZoneInfo(spec.timezone)
    fmt = "%d %b %Y %H:%M"
    return f"{since.astimezone(tz):{fmt}} – {until.astimezone(tz):{fmt}} ({spec.timezone})"


async def summarise(spec: DigestSpec, run: Summarise, got: Gathered, span: str) -> tuple[str, str]:
    """The model's short summary and a 'written by' line; a note instead when the core refuses."""
    request = Request(
        text=f"digest {spec.name}", user="hearth-digest", surface="digest", priority=Priority.DIGEST
    )
    variables: dict[str, object] = {
        "digest": spec.name,
        "period": span,
        "docs": [vars(d) for d in got.docs],
        "tables": [vars(t) for t in got.tables],
        "chat": got.chat,
        "notes": got.notes,
    }
    ask = Ask(Kind.DIGEST, request, prompt=Prompt(spec.template, variables, SUMMARY_TOKENS))
    async for event in run(ask):
        if isinstance(event, Refusal):
            reason = event.detail or event.text(ENGLISH)
            log.warning("digest %s: no summary (%s); posting the facts alone", spec.name, reason)
            return messages.SUMMARY_UNAVAILABLE.format(reason=reason), ""
        if isinstance(event, Answer):
            return trim_summary(event.text), messages.WRITTEN_BY.format(
                model=event.model or "unknown model", backend=event.backend
            )
    return messages.SUMMARY_UNAVAILABLE.format(reason="the model gave no answer"), ""


# Enough for three plain sentences; the trim below still guards a model that rambles.
SUMMARY_TOKENS = 160


def trim_summary(text: str, sentences: int = 3, limit: int = SUMMARY_CHARS) -> str:
    """At most ``sentences`` sentences and ``limit`` characters: a small model may not stop by itself."""
    text = " ".join(text.split())
    cut = [m.end() for m in _SENTENCE_END.finditer(text)]
    if len(cut) >= sentences:
        text = text[: cut[sentences - 1]]
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " …"
    return text.strip()


def compose(spec: DigestSpec, got: Gathered, span: str, summary: str, credit: str) -> str:
    """The full Markdown text of the digest."""
    parts = [f"**{spec.name}** · {span}"]
    if summary:
        parts.append(summary)
    if got.docs:
        lines = [f"**{messages.CHANGED_DOCS}** ({len(got.docs)})"]
        for d in got.docs:
            title = f"[{d.title}]({d.uri})" if d.uri else d.title
            extra = ", ".join(x for x in (d.source, d.updated_at) if x)
            lines.append(f"- {title}" + (f" — {extra}" if extra else ""))
        parts.append("\n".join(lines))
    elif spec.inputs.docs is not None and got.complete:
        parts.append(f"**{messages.CHANGED_DOCS}**: none.")
    for table in got.tables:
        body = f"```\n{table.markdown}\n```" if table.markdown else f"_{table.error}_"
        parts.append(f"**{table.title}**\n{body}")
    if got.chat:
        parts.append("\n".join(f"- {line}" for line in got.chat))
    if got.notes:
        parts.append(f"_{messages.NOTES}: " + " ".join(got.notes) + "_")
    if credit:
        parts.append(f"_{credit}_")
    return "\n\n".join(parts)


def compose_no_changes(spec: DigestSpec, span: str) -> str:
    """The short post for a period in which nothing changed."""
    return f"**{spec.name}** · {span}\n\n{messages.NO_CHANGES}"
