"""Answers as DingTalk Markdown: the text, numbered sources, notices and the model footer."""

from __future__ import annotations

from collections.abc import Sequence

from bot.dingtalk.texts import Lang, say
from core.contracts import Answer, Citation
from core.render import markdown_table

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
    """A numbered list of sources, linked when their URI is a web address."""
    lines = [f"**{say('SOURCES', lang)}**", ""]
    for c in citations:
        title = _escape(c.title or c.uri or c.doc_id)
        label = f"[{title}]({c.uri})" if c.uri.startswith(("http://", "https://")) else f"{title} ({c.uri})"
        where = f" — {c.location}" if c.location else ""
        lines.append(f"{c.number}. {label}{where}")
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
