"""Answers as Slack messages: mrkdwn escaping, safe links, splitting, Block Kit.

Model output is untrusted: it is escaped (``&``, ``<``, ``>``) so it cannot ping ``@channel`` or
forge ``<url|label>`` links, and any URL that is not one of the answer's cited sources is shown as
inert code text, so a prompt-injected answer cannot exfiltrate data through a link or an image::

    parts = split_text(to_mrkdwn(answer.text, allowed={c.uri for c in answer.citations}), 3000)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from bot import messages
from core.api import Answer, Cell, SourceGroup, grouped_sources
from core.api import text_table as core_text_table

# A Block Kit block as we build it and hand it to slack_sdk (which takes plain dicts).
Block = dict[str, object]

# One section block holds at most 3000 characters; a message is one section of the answer.
MESSAGE_CHARS = 2900
FEEDBACK_ACTION = "hearth_feedback"

_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"`[^`\n]+`")
# Schemes Slack (or a client) may turn into links, and bare host names, which Slack auto-links too.
_URL = re.compile(
    r"\b(?:https?|ftp|file|mailto|data|javascript|slack):[^\s`<>()\[\]]+"
    r"|\b(?:[a-z0-9-]+\.)+[a-z]{2,24}\b(?:[/?#][^\s`<>()\[\]]*)?",
    re.I,
)
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.M)
_PLACEHOLDER = "\x00{}\x00"


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _inert(url: str) -> str:
    """A URL as code text: visible, not clickable, not unfurled."""
    return "`" + url.replace("`", "'") + "`"


def to_mrkdwn(text: str, allowed: Iterable[str] = ()) -> str:
    """Markdown from the model → Slack mrkdwn; only URLs in ``allowed`` become links."""
    allowed_set = {u for u in allowed if u}
    kept: list[str] = []

    def keep(fragment: str) -> str:
        kept.append(fragment)
        return _PLACEHOLDER.format(len(kept) - 1)

    def link(url: str, label: str) -> str:
        if url in allowed_set and url.lower().startswith(("http://", "https://")):
            return keep(f"<{escape(url)}|{escape(label.replace('|', '/')) or escape(url)}>")
        shown = escape(label)
        return keep(
            f"{shown} ({_inert(escape(url))})" if shown and shown != escape(url) else _inert(escape(url))
        )

    def bare(url: str) -> str:
        core = url.rstrip(".,;:!?'\"")
        return link(core, "") + url[len(core) :]

    text = text.replace("\x00", "")
    text = _FENCE.sub(
        lambda m: keep(escape(m.group(0)) + ("" if m.group(0).endswith("```") else "\n```")), text
    )
    text = _INLINE_CODE.sub(lambda m: keep(escape(m.group(0))), text)
    text = _IMAGE.sub(lambda m: link(m.group(2), m.group(1) or messages.SLACK_LINK_REMOVED), text)
    text = _LINK.sub(lambda m: link(m.group(2), m.group(1)), text)
    text = _URL.sub(lambda m: bare(m.group(0)), text)
    text = escape(text)
    text = _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", text)
    text = _HEADING.sub(lambda m: f"*{m.group(1)}*", text)
    return re.sub("\x00(\\d+)\x00", lambda m: kept[int(m.group(1))], text)


def split_text(text: str, limit: int = MESSAGE_CHARS) -> list[str]:
    """Split at paragraph, line, then word boundaries into parts of at most ``limit`` characters.

    A code fence cut in two is closed at the end of one part and reopened in the next.
    """
    if limit < 20:
        raise ValueError("split_text: limit must be at least 20 characters")
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[: limit - 4]  # room to close a fence
        cut = max(window.rfind("\n\n"), 0)
        if cut < limit // 3:
            cut = window.rfind("\n")
        if cut < limit // 3:
            cut = window.rfind(" ")
        if cut < limit // 3:
            cut = len(window)
        part, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if part.count("```") % 2 == 1:
            part += "\n```"
            rest = "```\n" + rest
        parts.append(part)
    if rest:
        parts.append(rest)
    return parts or [""]


def source_line(group: SourceGroup) -> str:
    """One cited document, once with every number that points into it: a link when it has a web
    address, else its title and path as text; then the places in it (``[1, 3] <url|Guide> (Leave; Pay)``).
    """
    title = escape(group.title or group.uri)
    where = f" ({escape(group.where)})" if group.where else ""
    if group.uri.lower().startswith(("http://", "https://")):
        return f"{group.label} <{escape(group.uri)}|{title.replace('|', '/')}>{where}"
    path = f" {_inert(escape(group.uri))}" if group.uri and group.uri != group.title else ""
    return f"{group.label} *{title}*{path}{where}"


def sources_block(answer: Answer) -> Block | None:
    """The sources of ``answer`` as one context line, one entry per document (None: it cites nothing)."""
    if not answer.citations:
        return None
    lines = [source_line(g) for g in grouped_sources(answer.citations)]
    return context([f"*{messages.SOURCES}:* " + " · ".join(lines)])


def footer_text(answer: Answer) -> str | None:
    """'Answered by MODEL (local|remote)', or None when no model answered (nothing found)."""
    if answer.backend == "none":
        return None
    where = messages.REMOTE if answer.backend == "remote" else messages.LOCAL
    return messages.FOOTER.format(model=escape(answer.model or answer.backend), where=where)


def section(text: str) -> Block:
    """A mrkdwn section block."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000] or " "}}


def context(lines: Sequence[str]) -> Block:
    """A context block (small grey text), at most 10 elements."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": line[:3000]} for line in lines[:10]]}


def feedback_actions(answer_id: str) -> Block:
    """The 👍/👎 buttons; their value names the answer."""
    return {
        "type": "actions",
        "block_id": "hearth_feedback",
        "elements": [
            {
                "type": "button",
                "action_id": f"{FEEDBACK_ACTION}_up",
                "value": f"up:{answer_id}",
                "text": {"type": "plain_text", "text": messages.SLACK_FEEDBACK_UP, "emoji": True},
            },
            {
                "type": "button",
                "action_id": f"{FEEDBACK_ACTION}_down",
                "value": f"down:{answer_id}",
                "text": {"type": "plain_text", "text": messages.SLACK_FEEDBACK_DOWN, "emoji": True},
            },
        ],
    }


def answer_parts(answer: Answer, limit: int = MESSAGE_CHARS) -> list[str]:
    """The answer body as mrkdwn parts, one per Slack message."""
    allowed = {c.uri for c in answer.citations}
    empty = messages.NOT_FOUND if answer.backend == "none" else messages.SLACK_EMPTY_ANSWER
    body = to_mrkdwn(answer.text.strip() or empty, allowed)
    if answer.notices:
        body += "\n\n" + "\n".join(f"_{escape(n)}_" for n in answer.notices)
    return split_text(body, limit)


def final_blocks(
    part: str,
    answer: Answer,
    *,
    header: str | None = None,
    last: bool = True,
    extra: Sequence[Block] = (),
) -> list[Block]:
    """Blocks of one message of a finished answer; the last one carries sources, footer and buttons."""
    blocks: list[Block] = []
    if header:
        blocks.append(context([header]))
    blocks.append(section(part))
    if not last:
        return blocks
    blocks.extend(extra)
    sources = sources_block(answer)
    if sources is not None:
        blocks.append(sources)
    footer = footer_text(answer)
    if footer:
        blocks.append(context([footer]))
    if answer.request_id:
        blocks.append(feedback_actions(answer.request_id))
    return blocks


def streaming_blocks(part: str, header: str | None = None) -> list[Block]:
    """Blocks of a message while its text is still streaming."""
    blocks = [context([header])] if header else []
    blocks.append(section(part + " …" if part else messages.THINKING))
    return blocks


def notice_blocks(text: str) -> list[Block]:
    """A plain one-section message (errors, limits, help)."""
    return [section(text)]


def text_table(columns: Sequence[str], rows: Sequence[Sequence[Cell]], max_rows: int = 15) -> str:
    """The core's monospace table in a code block (Slack has no table block for bots)."""
    # A section block holds 3000 characters: cut the table inside the fence, never the fence.
    return "```\n" + escape(core_text_table(columns, rows, max_rows=max_rows))[:2980] + "\n```"
