"""DingTalk signatures: verifying HTTP callbacks and signing custom-robot webhook URLs.

Both use ``Base64(HmacSHA256(key=secret, msg=f"{timestamp}\\n{secret}"))`` with ``timestamp`` in
milliseconds::

    verify_callback(headers.get("timestamp"), headers.get("sign"), app_secret, now_ms=now)
    url = signed_webhook_url("https://oapi.dingtalk.com/robot/send?access_token=…", "SEC…", now)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote_plus

from core.errors import InputError

MAX_AGE_MS = 3_600_000


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
