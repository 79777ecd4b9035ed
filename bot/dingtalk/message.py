"""An incoming DingTalk robot message, parsed from the callback / Stream payload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import InputError

# A JSON object as DingTalk sends it (callbacks, Stream frames, OpenAPI answers) or as we send it;
# what we read from one is ``object`` until narrowed.
Payload = dict[str, object]

ONE_TO_ONE = "1"
GROUP = "2"


@dataclass(frozen=True)
class Incoming:
    """The fields of a robot message the bot uses."""

    msg_id: str
    staff_id: str
    conversation_id: str
    conversation_type: str
    text: str | None  # None: not a text message (picture, file…)
    session_webhook: str | None = None
    webhook_expires_ms: int | None = None
    sender_nick: str = ""
    robot_code: str | None = None
    in_at_list: bool = False

    @property
    def is_group(self) -> bool:
        """Whether the message came from a group chat."""
        return self.conversation_type == GROUP

    @classmethod
    def from_payload(cls, data: object) -> Incoming:
        """Parse the JSON DingTalk sends; raise InputError naming what is missing or malformed."""
        if not isinstance(data, Mapping):
            raise InputError("The DingTalk payload must be a JSON object.")
        missing = [k for k in ("msgId", "conversationId", "conversationType") if not _str(data.get(k))]
        staff_id = _str(data.get("senderStaffId")) or _str(data.get("senderId"))
        if not staff_id:
            missing.append("senderStaffId")
        if missing:
            raise InputError(f"The DingTalk payload lacks {', '.join(missing)}.")
        conversation_type = _str(data.get("conversationType"))
        if conversation_type not in (ONE_TO_ONE, GROUP):
            raise InputError(f"Unknown conversationType {conversation_type!r}; expected '1' or '2'.")
        expires = data.get("sessionWebhookExpiredTime")
        try:
            expires_ms = int(expires) if expires not in (None, "") else None
        except (TypeError, ValueError):
            raise InputError("sessionWebhookExpiredTime must be a number of milliseconds.") from None
        return cls(
            msg_id=_str(data.get("msgId")),
            staff_id=staff_id,
            conversation_id=_str(data.get("conversationId")),
            conversation_type=conversation_type,
            text=_text(data),
            session_webhook=_str(data.get("sessionWebhook")) or None,
            webhook_expires_ms=expires_ms,
            sender_nick=_str(data.get("senderNick")),
            robot_code=_str(data.get("robotCode")) or None,
            in_at_list=bool(data.get("isInAtList")),
        )


def _str(value: object) -> str:
    """A scalar field as a string ('' when absent)."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)


def _text(data: Mapping[str, object]) -> str | None:
    """The message text: ``text.content`` for text, the joined text parts of rich text, else None."""
    kind = data.get("msgtype", "text")
    if kind == "text":
        text = data.get("text")
        if not isinstance(text, Mapping) or not isinstance(text.get("content"), str):
            raise InputError("A text message needs text.content.")
        return str(text["content"])
    if kind == "richText":
        content = data.get("content")
        parts = content.get("richText") if isinstance(content, Mapping) else None
        if not isinstance(parts, list):
            raise InputError("A richText message needs content.richText.")
        return "\n".join(str(p["text"]) for p in parts if isinstance(p, Mapping) and "text" in p)
    return None
