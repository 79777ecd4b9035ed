"""User-facing DingTalk text in the reply's language (English from bot/messages.py, or its Chinese twin)."""

from __future__ import annotations

import re
from typing import Literal

from bot import messages
from core.refusals import Refusal

Lang = Literal["zh", "en"]
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def pick_language(setting: str, text: str) -> Lang:
    """The reply language: the configured one, or (``auto``) Chinese when the message contains Chinese."""
    if setting == "zh":
        return "zh"
    if setting == "en":
        return "en"
    return "zh" if _CJK.search(text or "") else "en"


def say(key: str, lang: Lang, **values: object) -> str:
    """The catalogue sentence ``key`` (a constant name in bot/messages.py) in ``lang``, formatted."""
    template: str = messages.DINGTALK_ZH.get(key, "") if lang == "zh" else ""
    if not template:
        template = getattr(messages, key)
    return template.format(**values) if values else template


def refusal_text(refusal: Refusal, lang: Lang) -> str:
    """The core's refusal in ``lang``, from the chat catalogue."""
    return refusal.text(messages.REFUSALS_ZH if lang == "zh" else messages.REFUSALS)
