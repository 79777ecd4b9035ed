"""Gather what a digest reports on: changed docs, table results, chat activity.

Each input degrades to a note in the digest (never a crash) when its capability is missing or
fails; a table query the SQL guard rejects is recorded with the guard's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.config import Settings
from core.digests.config import DigestSpec
from core.errors import HearthError, SQLRejected

log = logging.getLogger(__name__)

# Optional: (channels, since) -> short lines of chat activity; installed by a chat surface.
ChatActivity = Callable[[Sequence[str], datetime], Awaitable[list[str]]]
TABLE_ROWS = 20


@dataclass(frozen=True)
class ChangedDoc:
    """A document that changed in the digest's period."""

    title: str
    uri: str
    source: str
    updated_at: str


@dataclass(frozen=True)
class TableResult:
    """One table query's outcome: a Markdown table, or why there is none."""

    title: str
    source: str
    markdown: str = ""
    error: str = ""


@dataclass
class Gathered:
    """Everything a digest run collected."""

    since: datetime
    until: datetime
    docs: list[ChangedDoc] = field(default_factory=list)
    tables: list[TableResult] = field(default_factory=list)
    chat: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    # False when an input that reports change (docs, chat) could not be read: not "no changes".
    complete: bool = True
    tracks_changes: bool = False

    @property
    def nothing_changed(self) -> bool:
        """True when every change-tracking input was read and found nothing."""
        return self.tracks_changes and self.complete and not self.docs and not self.chat


def _field(record: Any, name: str, default: str = "") -> str:
    value = record.get(name, default) if isinstance(record, dict) else getattr(record, name, default)
    if isinstance(value, datetime):
        return value.isoformat(timespec="minutes")
    return str(value) if value is not None else default


async def changed_docs(settings: Settings, sources: list[str], since: datetime) -> list[Any]:
    """Records from the retrieval sync state (``core.retrieval.sync.changed_since``)."""
    from core.retrieval.sync import changed_since  # ImportError when retrieval is not installed

    return list(await changed_since(settings, sources, since))


def render_rows(result: Any, limit: int = TABLE_ROWS) -> str:
    """A Markdown table from whatever the table service returns (rows/columns, dicts, or text)."""
    if isinstance(getattr(result, "markdown", None), str):
        return str(result.markdown)
    columns = getattr(result, "columns", None)
    rows = getattr(result, "rows", None)
    if rows is None and isinstance(result, list):
        rows = result
    if rows is None:
        return str(result)[:2000]
    rows = list(rows)
    if columns is None:
        columns = list(rows[0].keys()) if rows and isinstance(rows[0], dict) else []
    columns = [str(c) for c in columns]
    if not columns:
        return "(no rows)"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:limit]:
        cells = [row.get(c) for c in columns] if isinstance(row, dict) else list(row)
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    if len(rows) > limit:
        lines.append(f"(+{len(rows) - limit} more rows)")
    if not rows:
        lines.append("(no rows)")
    return "\n".join(lines)


async def gather(
    spec: DigestSpec,
    settings: Settings,
    assistant: Any,
    since: datetime,
    until: datetime,
    chat_activity: ChatActivity | None = None,
) -> Gathered:
    """Collect every input of ``spec`` for the period (since, until]."""
    got = Gathered(since=since, until=until)
    docs = spec.inputs.docs
    if docs is not None:
        got.tracks_changes = True
        sources = docs.sources or [s.name for s in settings.sources]
        try:
            records = await changed_docs(settings, sources, since)
        except ImportError:
            got.complete = False
            got.notes.append("Changed documents are not available: document retrieval is not installed.")
        except HearthError as exc:
            got.complete = False
            log.warning("digest %s: reading changed docs failed", spec.name, exc_info=True)
            got.notes.append(f"Changed documents could not be read: {exc}")
        else:
            found = [
                ChangedDoc(
                    _field(r, "title") or _field(r, "uri"),
                    _field(r, "uri"),
                    _field(r, "source"),
                    _field(r, "updated_at"),
                )
                for r in records
            ]
            found.sort(key=lambda d: d.updated_at, reverse=True)
            if len(found) > docs.max_items:
                got.notes.append(f"{len(found) - docs.max_items} more changed document(s) not listed.")
            got.docs = found[: docs.max_items]
    if spec.inputs.tables:
        service = getattr(assistant, "tables", None)
        for j, table in enumerate(spec.inputs.tables):
            title = table.title or table.source
            if service is None:
                got.tables.append(TableResult(title, table.source, error="table queries are not available"))
                continue
            try:
                result = await service.query(table.source, table.sql)
            except SQLRejected as exc:
                reason = f"inputs.tables[{j}] ({table.source}): the SQL guard rejected the query: {exc}"
                got.rejected.append(reason)
                got.tables.append(TableResult(title, table.source, error=f"query rejected: {exc}"))
            except HearthError as exc:
                log.warning("digest %s: table query %d failed", spec.name, j, exc_info=True)
                got.tables.append(TableResult(title, table.source, error=str(exc)))
            else:
                got.tables.append(TableResult(title, table.source, markdown=render_rows(result)))
    if spec.inputs.chat is not None:
        got.tracks_changes = True
        if chat_activity is None:
            got.complete = False
            got.notes.append("Chat activity is not available: no chat history reader is installed.")
        else:
            try:
                got.chat = list(await chat_activity(spec.inputs.chat.channels, since))
            except HearthError as exc:
                got.complete = False
                got.notes.append(f"Chat activity could not be read: {exc}")
    return got
