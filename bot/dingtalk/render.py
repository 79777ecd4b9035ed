"""Answers as DingTalk Markdown: the text, numbered sources, notices and the model footer."""

from __future__ import annotations

from collections.abc import Sequence

from bot.dingtalk.texts import Lang, say
from core.api import Answer, Citation, grouped_sources, markdown_table

# DingTalk rejects markdown messages over 20,000 bytes; stay well below with multi-byte text.
MAX_MARKDOWN_CHARS = 6000


def answer_markdown(answer: Answer, lang: Lang) -> str:
    """The full reply for ``answer``."""
    parts = [answer.text.strip() or say("NOT_FOUND", lang)]
    if answer.table is not None:
        if answer.table.columns:
            parts.append(
                markdown_table(
                    answer.table.columns,
                    answer.table.rows,
                    answer.table.chat_rows,
                    more=say("TABLE_MORE", lang),
                    empty=say("TABLE_EMPTY", lang),
                )
            )
        parts.append(f"```sql\n{clip(answer.table.sql, 1500)}\n```")
    if answer.citations:
        parts.append(sources_markdown(answer.citations, lang))
    parts.extend(f"> {notice}" for notice in answer.notices)
    body = "\n\n".join(parts)
    return clip(body, MAX_MARKDOWN_CHARS - 200) + "\n\n" + footer(answer, lang)


def sources_markdown(citations: Sequence[Citation], lang: Lang) -> str:
    """The sources, one line per document with every number that points into it, linked when their
    URI is a web address (``- [1, 3] [Leave policy](https://…) — §2; §5``).

    A bullet list, not a numbered one: Markdown renumbers ``1.``/``3.`` items, and a document cited
    as [1] and [3] must keep both numbers.
    """
    lines = [f"**{say('SOURCES', lang)}**", ""]
    for group in grouped_sources(citations):
        title = _escape(group.title or group.uri)
        link = group.uri.startswith(("http://", "https://"))
        label = f"[{title}]({group.uri})" if link else f"{title} ({group.uri})"
        where = f" — {group.where}" if group.where else ""
        lines.append(f"- {group.label} {label}{where}")
    return "\n".join(lines)


def footer(answer: Answer, lang: Lang) -> str:
    """Which model answered, and whether it ran locally or remotely."""
    if not answer.model and answer.backend == "none":
        return ""
    where = say("REMOTE", lang) if answer.backend == "remote" else say("LOCAL", lang)
    return "---\n" + say("FOOTER", lang, model=answer.model or answer.backend, where=where)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _escape(text: str) -> str:
    """Neutralise characters that would break a Markdown link label."""
    return text.replace("[", "(").replace("]", ")")
