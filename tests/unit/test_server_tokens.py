"""API tokens: stored hashed, verified, revoked; the `hearth tokens` CLI; and on a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from core.db import Database
from core.errors import InputError
from server.auth import TokenStore, api_tokens, digest
from server.cli import main


async def check_store(db: Database) -> None:
    store = TokenStore(db)
    info, token = await store.create("alice", ["group:eng", "group:eng", "team:db"])
    assert token.startswith(f"hth_{info.id}_")
    assert info.acl == ("group:eng", "team:db")
    assert info.grants == {"public", "user:alice", "group:eng", "team:db"}

    def raw(conn: Any) -> list[Any]:
        return list(conn.execute(sa.select(api_tokens)))

    rows = await db.run(raw)
    assert len(rows) == 1 and rows[0].token_hash == digest(token)
    assert token not in json.dumps([list(map(str, r)) for r in rows])  # only the hash is stored

    assert (await store.verify(token)) == info
    assert await store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert await store.verify("hth_" + "0" * 12 + "_" + "x" * 43) is None
    assert await store.verify("not-a-token") is None
    other_info, other = await store.create("bob", [])
    assert [i.user for i in await store.list()] == ["alice", "bob"]
    assert await store.revoke(info.id) == 1
    assert await store.verify(token) is None and await store.verify(other) == other_info
    assert [i.user for i in await store.list()] == ["bob"]
    assert len(await store.list(include_revoked=True)) == 2
    assert await store.revoke(user="bob") == 1 and await store.revoke(user="bob") == 0


async def test_token_store_on_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        await check_store(db)
    finally:
        await db.aclose()


@pytest.mark.postgres
async def test_token_store_on_postgresql(postgres_db: Any) -> None:
    db = Database(postgres_db.sqlalchemy_url)
    try:
        assert db.dialect == "postgresql"
        await check_store(db)
    finally:
        await db.aclose()


@pytest.mark.parametrize("user,acl", [("", []), ("al ice", []), ("alice", ["group eng"]), ("alice", [""])])
async def test_bad_names_are_refused(tmp_path: Path, user: str, acl: list[str]) -> None:
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    with pytest.raises(InputError):
        await TokenStore(db).create(user, acl)
    await db.aclose()


def test_tokens_cli_create_list_revoke() -> None:
    runner = CliRunner()
    created = runner.invoke(main, ["tokens", "create", "--user", "alice", "--acl", "group:eng", "--json"])
    assert created.exit_code == 0, created.output
    data = json.loads(created.output)
    assert data["token"].startswith("hth_") and data["acl"] == ["group:eng"]
    listed = runner.invoke(main, ["tokens", "list"])
    assert data["id"] in listed.output and "alice" in listed.output and data["token"] not in listed.output
    assert runner.invoke(main, ["tokens", "revoke", data["id"]]).exit_code == 0
    again = runner.invoke(main, ["tokens", "revoke", data["id"]])
    assert again.exit_code != 0 and "No active token" in again.output
    bad = runner.invoke(main, ["tokens", "create", "--user", "al ice"])
    assert bad.exit_code == 1 and "not valid" in bad.output


async def test_audit_cli_shows_the_newest_entries(tmp_path: Path) -> None:
    import asyncio

    from core.audit import AuditEntry, AuditLog
    from core.config import Settings

    db = Database(Settings().database_url)  # the CLI's database ($HEARTH_HOME from the fixture)
    log = AuditLog(db)
    log.start()
    log.record(
        AuditEntry(
            user="alice",
            surface="rest",
            action="ask",
            question="Where is the wiki?",
            sources=["file:///wiki.md"],
            backend="local",
            model="gemma",
        )
    )
    log.record(
        AuditEntry(user="U1", surface="slack", action="ask", question="VPN?", status="error", error="boom")
    )
    await log.aclose()
    await db.aclose()
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, main, ["audit"])
    lines = result.output.splitlines()
    assert "slack" in lines[0] and "error: boom" in lines[0] and "Where is the wiki?" in lines[1]
    only = await asyncio.to_thread(runner.invoke, main, ["audit", "--user", "alice", "--json"])
    rows = [json.loads(line) for line in only.output.splitlines()]
    assert [(r["user_name"], r["sources"], r["backend"]) for r in rows] == [
        ("alice", ["file:///wiki.md"], "local")
    ]
