"""DingTalk signatures: verifying HTTP callbacks and signing custom-robot webhook URLs.

Both use ``Base64(HmacSHA256(key=secret, msg=f"{timestamp}\\n{secret}"))`` with ``timestamp`` in
milliseconds::

    verify_callback(headers.get("timestamp"), headers.get("sign"), app_secret, now_ms=now)
    if not await UsedSignatures(db).first_use(headers["timestamp"], headers["sign"]): ...  # a replay
    url = signed_webhook_url("https://oapi.dingtalk.com/robot/send?access_token=…", "SEC…", now)

DingTalk's sign covers the timestamp only, not the body: a captured (timestamp, sign) pair would
sign any body for as long as the timestamp is accepted. So the window is five minutes (as Slack's),
and each pair is accepted once: :class:`UsedSignatures` keeps the used pairs in the state database
(shared by every process, kept across restarts) until they fall out of the window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from urllib.parse import quote_plus

from core.db import Database
from core.errors import InputError

MAX_AGE_MS = 300_000  # five minutes either way, as Slack's request signatures
SIGNATURES = "dingtalk-sign"  # the seen_events namespace of used callback signatures


class CallbackRejected(InputError):
    """A callback whose signature or timestamp does not check out (answered with 401)."""


def sign(timestamp: str | int, secret: str) -> str:
    """The Base64 HMAC-SHA256 signature DingTalk computes for ``timestamp``."""
    message = f"{timestamp}\n{secret}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_callback(
    timestamp: str | None, signature: str | None, secret: str, *, now_ms: int, max_age_ms: int = MAX_AGE_MS
) -> None:
    """Raise :class:`CallbackRejected` unless ``signature`` signs a ``timestamp`` within ``max_age_ms``."""
    if not timestamp or not signature:
        raise CallbackRejected("missing 'timestamp' or 'sign' header")
    try:
        stamp = int(timestamp)
    except ValueError:
        raise CallbackRejected(f"timestamp {timestamp[:32]!r} is not a number of milliseconds") from None
    if abs(now_ms - stamp) > max_age_ms:
        raise CallbackRejected(
            f"timestamp is {abs(now_ms - stamp) // 1000}s away from now (limit {max_age_ms // 1000}s)"
        )
    if not hmac.compare_digest(sign(timestamp, secret).encode(), signature.encode()):
        raise CallbackRejected("signature does not match the app secret")


def signed_webhook_url(url: str, secret: str | None, timestamp_ms: int) -> str:
    """``url`` with ``timestamp`` and the URL-encoded ``sign`` appended (unchanged without a secret)."""
    if not secret:
        return url
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}timestamp={timestamp_ms}&sign={quote_plus(sign(timestamp_ms, secret))}"


class UsedSignatures:
    """Callback signatures already accepted, in the state database: each (timestamp, sign) works once."""

    def __init__(
        self, db: Database, *, max_age_ms: int = MAX_AGE_MS, wall: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.max_age_ms = max_age_ms
        self.wall = wall
        self._pruned_at = 0.0

    async def first_use(self, timestamp: str, signature: str) -> bool:
        """Record the pair; False when it was used before (a replay, from this process or another)."""
        await self._prune()
        return await self.db.first_time(SIGNATURES, f"{timestamp}:{signature}")

    async def _prune(self) -> None:
        """Forget pairs older than twice the window (they fail the time check anyway), once a minute."""
        now = self.wall()
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        await self.db.forget_seen(SIGNATURES, before=now - 2 * self.max_age_ms / 1000)
