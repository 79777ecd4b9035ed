"""Masking secrets in text: the one function ``config show``, the logs and error sentences share.

What it masks, wherever it appears in a string:

- the password of a URL (``postgresql://hearth:s3cret@db/x`` → ``postgresql://hearth:****@db/x``),
  and a whole user part that looks like a token (``https://ghp_…@github.com``);
- credential query parameters (``access_token=``, ``token=``, ``sign=``, ``key=``, ``secret=``,
  ``password=``, ``signature=`` …: DingTalk and Slack webhooks, signed URLs, API keys);
- ``password=…`` in libpq keyword strings, ``Authorization: Bearer …`` / ``Basic …``;
- token shapes that stand alone: Slack ``xoxb-``/``xapp-``, OpenAI-style ``sk-…``, Hearth's own
  ``hth_…`` API tokens, DingTalk ``SEC…`` signing secrets.

::

    redact("POST https://oapi.dingtalk.com/robot/send?access_token=abc123 failed")
    # 'POST https://oapi.dingtalk.com/robot/send?access_token=**** failed'

It is idempotent (masking a masked text changes nothing) and never raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from core.jsontypes import JsonValue

MASK = "****"

# Query parameters whose value is a credential (after ``?``, ``&`` or ``;``).
_QUERY_NAMES = (
    r"access_token|accesstoken|refresh_token|id_token|token|auth|authorization|sign|signature|sig|"
    r"key|api_key|apikey|api-key|x-api-key|secret|client_secret|app_secret|password|passwd|pwd|"
    r"session_key|sessionkey|private_key|code"
)
# Names that mean a credential wherever they stand (libpq ``password=…``, YAML ``api_key: …``).
_CLEAR_NAMES = (
    r"access_token|refresh_token|api_key|apikey|client_secret|app_secret|secret|password|passwd|"
    r"bot_token|app_token|signing_secret|private_key"
)
_SUBSTITUTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host → keep the user, mask the password.
    (
        re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s/:@?#]*:)(?!\*\*\*\*@)[^\s/@?#]+@", re.I),
        rf"\g<head>{MASK}@",
    ),
    # scheme://<token>@host (no password): a user part of 20+ token characters is a credential.
    (re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://)[A-Za-z0-9_\-.~]{20,}@", re.I), rf"\g<head>{MASK}@"),
    # ?access_token=… &sign=… ;key=… (and the same written loose in a sentence: "(token=…)")
    (
        re.compile(rf"(?P<head>(?:[?&;]|(?<![\w.-]))(?:{_QUERY_NAMES})=)(?!\*\*\*\*)[^\s&#;'\",)]+", re.I),
        rf"\g<head>{MASK}",
    ),
    # password=… (libpq keyword strings, log lines), "api_key": "…", secret: …
    (
        re.compile(
            rf"(?P<head>[\"']?\b(?:{_CLEAR_NAMES})[\"']?\s*[=:]\s*[\"']?)(?!\*\*\*\*)[^\s\"',}}&;]+",
            re.I,
        ),
        rf"\g<head>{MASK}",
    ),
    # Authorization headers as clients print them.
    (
        re.compile(r"(?P<head>\b(?:Bearer|Basic)\s+)(?!\*\*\*\*)[A-Za-z0-9_\-.~+/=]{8,}"),
        rf"\g<head>{MASK}",
    ),
    # Token shapes that need no name beside them.
    (re.compile(r"\bxox[abposer]-[A-Za-z0-9-]{6,}"), f"xox-{MASK}"),
    (re.compile(r"\bxapp-[A-Za-z0-9-]{6,}"), f"xapp-{MASK}"),
    (re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{16,}"), f"sk-{MASK}"),
    (re.compile(r"\bhth_[A-Za-z0-9]+_[A-Za-z0-9_-]{16,}"), f"hth_{MASK}"),
    (re.compile(r"\bSEC[0-9a-f]{32,}\b"), f"SEC{MASK}"),
)


def redact(text: str) -> str:
    """``text`` with every credential it carries replaced by ``****``."""
    if not text:
        return text
    for pattern, replacement in _SUBSTITUTIONS:
        text = pattern.sub(replacement, text)
    return text


_SECRET_KEY = re.compile(rf"^(?:{_CLEAR_NAMES}|token|.*_token|.*_secret|.*_password)$", re.I)


def redact_data(value: JsonValue, key: str = "") -> JsonValue:
    """A JSON value with :func:`redact` applied to every string, and values under secret keys masked."""
    if isinstance(value, str):
        if key and _SECRET_KEY.match(key) and value and set(value) != {"*"}:
            return "**********"
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_data(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_data(v, key) for v in value]
    return value
