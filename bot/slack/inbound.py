"""Text as it arrives from Slack: mentions, links and entities back to plain text; code snippets."""

from __future__ import annotations

import re
from collections.abc import Mapping

# A JSON object as Slack sends it (bolt's ``body``, ``event``, ``command``, ``action``; Web API
# messages). Bolt leaves their values untyped; we read them as ``object`` and narrow.
Payload = dict[str, object]

_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_SUBTEAM = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto|ftp):[^|>]+)(?:\|([^>]*))?>")
_FENCED = re.compile(r"^\s*```([A-Za-z0-9_+#.-]*)[ \t]*\n?(.*?)\n?```\s*$", re.S)

# (language, pattern) in order; the first that matches wins. A guess only names the code for the prompt.
_LANGUAGE_HINTS: list[tuple[str, re.Pattern[str]]] = [
    (
        "python",
        re.compile(r"^\s*(def |class \w+[:(]|import \w|from \w+ import |print\(|elif |async def )", re.M),
    ),
    ("go", re.compile(r"^\s*(package \w+|func \w*\(|:= )", re.M)),
    ("rust", re.compile(r"\bfn \w+\(|\blet mut\b|\bimpl\b|println!\(")),
    ("typescript", re.compile(r":\s*(string|number|boolean)\b|\binterface \w+\s*\{")),
    ("javascript", re.compile(r"\b(function\s*\w*\(|const \w+ = |let \w+ = |=> |console\.log\()")),
    ("java", re.compile(r"\bpublic (static )?(class|void)\b|System\.out\.")),
    ("c++", re.compile(r"#include\s*<(iostream|vector|string)>|std::")),
    ("c", re.compile(r"#include\s*[<\"]|\bint main\s*\(")),
    ("sql", re.compile(r"^\s*(select|with|insert|update|delete|create)\b", re.I | re.M)),
    ("shell", re.compile(r"^\s*(#!/bin/(ba)?sh|\$ |sudo |apt-get |export \w+=)", re.M)),
    ("yaml", re.compile(r"^\w[\w-]*:\s*(\n\s+- |\S)", re.M)),
]


def field(payload: Mapping[str, object], key: str) -> str:
    """``payload[key]`` as text: '' when absent, null, or not a scalar."""
    value = payload.get(key)
    return "" if value is None or isinstance(value, (Mapping, list)) else str(value)


def member(payload: Mapping[str, object], key: str) -> Mapping[str, object]:
    """The object under ``payload[key]`` (empty when absent or not an object)."""
    value = payload.get(key)
    return value if isinstance(value, Mapping) else {}


def unescape(text: str) -> str:
    """Undo Slack's entity escaping (``&amp;`` ``&lt;`` ``&gt;``)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def plain_text(text: str, bot_user_id: str | None = None) -> str:
    """A message's text as a person typed it: the bot's own mention removed, links and entities unwrapped."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", "", text)
    text = _MENTION.sub(lambda m: f"@{m.group(1)}", text)
    text = _CHANNEL.sub(lambda m: f"#{m.group(2) or m.group(1)}", text)
    text = _SPECIAL.sub(lambda m: f"@{m.group(1)}", text)
    text = _SUBTEAM.sub(lambda m: m.group(2) or f"@{m.group(1)}", text)
    text = _LINK.sub(lambda m: m.group(1), text)
    return unescape(text).strip()


def code_snippet(text: str) -> tuple[str, str]:
    """Split ``/explain`` input into (code, language); the language comes from a fence tag or a guess."""
    fenced = _FENCED.match(text)
    if fenced:
        tag, code = fenced.group(1).lower(), fenced.group(2)
        return code.strip("\n"), tag or guess_language(code)
    return text.strip("\n"), guess_language(text)


def guess_language(code: str) -> str:
    """A best-effort language name for ``code``; 'code' when nothing matches."""
    for name, pattern in _LANGUAGE_HINTS:
        if pattern.search(code):
            return name
    return "code"
