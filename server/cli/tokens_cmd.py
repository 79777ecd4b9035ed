"""`hearth tokens create|list|revoke`: bearer tokens for the REST API (and `hearth lsp --server`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import click

from core.db import Database
from server.auth import TokenStore
from server.cli import State, json_option, pass_state

T = TypeVar("T")


def _with_store(state: State, fn: Callable[[TokenStore], Awaitable[T]]) -> T:
    async def run() -> T:
        db = Database(state.settings.database_url)
        try:
            return await fn(TokenStore(db))
        finally:
            await db.aclose()

    return asyncio.run(run())


@click.group()
def tokens() -> None:
    """Manage REST API tokens (stored hashed in the state database)."""


@tokens.command("create")
@click.option("--user", required=True, help="Who the token is for (recorded in the audit log).")
@click.option(
    "--acl",
    multiple=True,
    metavar="TOKEN",
    help="ACL token the holder gets, e.g. group:eng (repeatable). public and user:NAME are implied.",
)
@json_option("Print JSON (id, user, acl, token).")
@pass_state
def create(state: State, user: str, acl: tuple[str, ...], as_json: bool) -> None:
    """Create a token; it is printed once and cannot be shown again."""
    info, token = _with_store(state, lambda store: store.create(user, list(acl)))
    if as_json:
        click.echo(json.dumps(info.as_dict() | {"token": token}))
        return
    click.echo(token)
    click.echo(
        f"Token {info.id} for {info.user} (acl: {', '.join(sorted(info.grants))}). "
        "Store it now: it is not shown again.",
        err=True,
    )


@tokens.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@json_option()
@pass_state
def list_(state: State, include_revoked: bool, as_json: bool) -> None:
    """List tokens (ids, users and ACLs; never the tokens themselves)."""
    infos = _with_store(state, lambda store: store.list(include_revoked=include_revoked))
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    if not infos:
        click.echo("No tokens. Create one with: hearth tokens create --user NAME --acl group:eng")
        return
    for i in infos:
        created = datetime.fromtimestamp(i.created_at, UTC).strftime("%Y-%m-%d %H:%M")
        status = "  REVOKED" if i.revoked_at is not None else ""
        click.echo(f"{i.id}  {i.user:<20} {created}  {','.join(i.acl) or '-'}{status}")


@tokens.command("revoke")
@click.argument("token_id", required=False)
@click.option("--user", default=None, help="Revoke every token of this user instead.")
@pass_state
def revoke(state: State, token_id: str | None, user: str | None) -> None:
    """Revoke a token by its id (from 'hearth tokens list'), or all of a user's with --user."""
    if (token_id is None) == (user is None):
        raise click.UsageError("Give a TOKEN_ID or --user NAME (not both).")
    count = _with_store(state, lambda store: store.revoke(token_id, user=user))
    if count == 0:
        raise click.ClickException(f"No active token {'of ' + user if user else token_id!r} to revoke.")
    click.echo(f"Revoked {count} token(s).")
