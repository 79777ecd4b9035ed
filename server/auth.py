"""Bearer tokens for the REST API: one per person, stored hashed, mapped to ACL tokens.

A token looks like ``hth_<id>_<secret>``; only ``sha256(token)`` is stored, next to the public
``id`` used to list and revoke it. The person holds ``public``, ``user:<name>`` and the ACL
tokens given at creation::

    store = TokenStore(Database(settings.database_url))
    info, token = await store.create("alice", ["group:eng"])   # token is shown once
    await store.verify(token)                                    # -> TokenInfo or None
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.engine import Connection

from core.db import Database, metadata
from core.errors import InputError
from core.ratelimit import RateLimiter
from server.observability import USER_KEY, Handler, error_response

log = logging.getLogger(__name__)

PREFIX = "hth"
_TOKEN = re.compile(r"^hth_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")
_USER = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")
_ACL = re.compile(r"^[A-Za-z0-9._:@+/-]{1,128}$")

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("user_name", sa.String(128), nullable=False, index=True),
    sa.Column("acl", sa.Text, nullable=False),  # JSON list of ACL tokens
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
)


@dataclass(frozen=True)
class TokenInfo:
    """What a token grants (never the token itself)."""

    id: str
    user: str
    acl: tuple[str, ...]
    created_at: float
    revoked_at: float | None = None

    @property
    def grants(self) -> frozenset[str]:
        """The ACL tokens a request made with this token carries."""
        return frozenset({"public", f"user:{self.user}", *self.acl})

    def as_dict(self) -> dict[str, object]:
        """JSON form for `hearth tokens list --json`."""
        return {
            "id": self.id,
            "user": self.user,
            "acl": list(self.acl),
            "created_at": self.created_at,
            "revoked": self.revoked_at is not None,
        }


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _info(row: sa.RowMapping) -> TokenInfo:
    return TokenInfo(
        row["id"], row["user_name"], tuple(json.loads(row["acl"])), row["created_at"], row["revoked_at"]
    )


class TokenStore:
    """Create, verify, list and revoke API tokens in the state database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, user: str, acl: list[str]) -> tuple[TokenInfo, str]:
        """A new token for ``user`` holding ``acl``; returns its info and the token (shown once)."""
        if not _USER.match(user):
            raise InputError(
                f"User name {user!r} is not valid — use letters, digits and . _ @ + - (at most 128)."
            )
        bad = [a for a in acl if not _ACL.match(a)]
        if bad:
            raise InputError(f"ACL token {bad[0]!r} is not valid — use e.g. group:eng or user:alice.")
        await self.db.ensure([api_tokens])
        token_id = secrets.token_hex(6)
        token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        info = TokenInfo(token_id, user, tuple(dict.fromkeys(acl)), time.time())

        def insert(conn: Connection) -> None:
            conn.execute(
                api_tokens.insert().values(
                    id=info.id,
                    user_name=user,
                    acl=json.dumps(list(info.acl)),
                    token_hash=digest(token),
                    created_at=info.created_at,
                )
            )

        await self.db.run(insert)
        return info, token

    async def verify(self, token: str) -> TokenInfo | None:
        """The token's info when it exists and is not revoked, else None."""
        match = _TOKEN.match(token)
        if not match:
            return None
        await self.db.ensure([api_tokens])

        def lookup(conn: Connection) -> TokenInfo | None:
            query = api_tokens.select().where(api_tokens.c.id == match.group(1))
            row = conn.execute(query).mappings().first()
            if (
                row is None
                or row["revoked_at"] is not None
                or not hmac.compare_digest(row["token_hash"], digest(token))
            ):
                return None
            return _info(row)

        return await self.db.run(lookup)

    async def list(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        """Every token, oldest first."""
        await self.db.ensure([api_tokens])

        def select(conn: Connection) -> list[TokenInfo]:
            query = api_tokens.select().order_by(api_tokens.c.created_at)
            if not include_revoked:
                query = query.where(api_tokens.c.revoked_at.is_(None))
            return [_info(r) for r in conn.execute(query).mappings()]

        return await self.db.run(select)

    async def grants_for(self, user: str) -> frozenset[str]:
        """What ``user`` may read through the API: the union of their active tokens' grants."""
        grants = {"public", f"user:{user}"}
        for info in await self.list():
            if info.user == user:
                grants |= info.grants
        return frozenset(grants)

    async def revoke(self, token_id: str | None = None, *, user: str | None = None) -> int:
        """Revoke one token by id, or every token of ``user``; returns how many were revoked."""
        if (token_id is None) == (user is None):
            raise InputError("Give either a token id or --user.")
        await self.db.ensure([api_tokens])
        column = api_tokens.c.id if token_id is not None else api_tokens.c.user_name
        value = token_id if token_id is not None else user

        def update(conn: Connection) -> int:
            result = conn.execute(
                api_tokens.update()
                .where(column == value, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            return int(result.rowcount or 0)

        return await self.db.run(update)


TOKENS = web.AppKey("tokens", TokenStore)
LIMITER = web.AppKey("rate_limiter", RateLimiter)
# Inline suggestions come about once per keystroke: they have a bucket (and a rate) of their own.
COMPLETION_LIMITER = web.AppKey("completion_rate_limiter", RateLimiter)
COMPLETION_PATH = "/v1/code/complete"
TOKEN_INFO = web.RequestKey("token_info", TokenInfo)
# Paths under /v1 anyone may read.
PUBLIC_PATHS = frozenset({"/v1/openapi.json"})


def bearer(request: web.Request) -> str | None:
    """The bearer token of ``request``, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _unauthorized(message: str) -> web.Response:
    return error_response(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="hearth"'})


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Guard /v1: a valid bearer token, then the per-token rate limit."""
    if not request.path.startswith("/v1/") or request.path in PUBLIC_PATHS:
        return await handler(request)
    token = bearer(request)
    if token is None:
        return _unauthorized("This endpoint needs a bearer token — create one with 'hearth tokens create'.")
    try:
        info = await request.app[TOKENS].verify(token)
    except Exception:  # noqa: BLE001 - the state database is down: not the client's fault
        log.exception("token check failed")
        return error_response(
            503,
            "unavailable",
            "Cannot check the token right now (state database unreachable).",
            {"Retry-After": "5"},
        )
    if info is None:
        return _unauthorized("The bearer token is not valid or was revoked.")
    request[TOKEN_INFO] = info
    request[USER_KEY] = info.user
    completing = request.path == COMPLETION_PATH and COMPLETION_LIMITER in request.app
    wait = request.app[COMPLETION_LIMITER if completing else LIMITER].check(info.id)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        return error_response(
            429,
            "rate_limited",
            f"Too many requests for this token; retry in {seconds}s (server.rate_limit_per_minute).",
            {"Retry-After": str(seconds)},
        )
    return await handler(request)
