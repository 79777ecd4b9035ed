"""What a DingTalk message asks for: `/ask`, `/data`, `/explain`, `/digest`, `/help`, or Chinese forms."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Kind(enum.Enum):
    """The use case a message maps to."""

    ASK = "ask"
    DATA = "data"
    EXPLAIN = "explain"
    HELP = "help"
    DIGEST = "digest"


# Longest first so that "提问" wins over "问".
_WORDS: dict[str, Kind] = {
    "/ask": Kind.ASK,
    "/data": Kind.DATA,
    "/explain": Kind.EXPLAIN,
    "/help": Kind.HELP,
    "提问": Kind.ASK,
    "问": Kind.ASK,
    "数据": Kind.DATA,
    "查数": Kind.DATA,
    "解释": Kind.EXPLAIN,
    "帮助": Kind.HELP,
    "/digest": Kind.DIGEST,
    "摘要": Kind.DIGEST,
}
_PATTERN = re.compile(
    r"^(?P<word>" + "|".join(re.escape(w) for w in sorted(_WORDS, key=len, reverse=True)) + r")"
    r"(?:[\s:：,，]+|$)(?P<rest>.*)$",
    re.DOTALL | re.IGNORECASE,
)
_MENTION = re.compile(r"^(?:@\S+\s+)+")


@dataclass(frozen=True)
class Command:
    """A parsed message: the use case, its argument, and whether the user typed a command word."""

    kind: Kind
    text: str
    explicit: bool


def parse(text: str) -> Command:
    """Map message text to a Command; text without a command word is a question (``explicit=False``)."""
    body = _MENTION.sub("", text.strip()).strip()
    match = _PATTERN.match(body)
    if match is None:
        return Command(Kind.ASK, body, explicit=False)
    return Command(_WORDS[match["word"].lower()], match["rest"].strip(), explicit=True)


def code_and_language(text: str) -> tuple[str, str]:
    """Split `/explain` input into code and a language name (from a ```lang fence when present)."""
    fenced = re.match(r"^```([\w+#.-]*)\s*\n(.*?)\n?```\s*$", text.strip(), re.DOTALL)
    if fenced:
        return fenced[2], fenced[1] or "source"
    return text.strip(), "source"
