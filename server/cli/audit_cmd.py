"""`hearth audit`: who asked what, through which surface, answered by which backend."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import click
import sqlalchemy as sa

from core.audit import audit_log
from core.db import Database
from server.cli import State, json_option, pass_state


async def _rows(url: str, limit: int, user: str | None, surface: str | None) -> list[sa.RowMapping]:
    db = Database(url)
    try:
        await db.ensure([audit_log])

        def select(conn: sa.Connection) -> list[sa.RowMapping]:
            query = audit_log.select().order_by(audit_log.c.id.desc()).limit(limit)
            if user:
                query = query.where(audit_log.c.user_name == user)
            if surface:
                query = query.where(audit_log.c.surface == surface)
            return list(conn.execute(query).mappings())

        return await db.run(select)
    finally:
        await db.aclose()


@click.command()
@click.option("--limit", "-n", default=20, show_default=True, help="How many of the newest entries.")
@click.option("--user", default=None, help="Only this user (token user, Slack or DingTalk id).")
@click.option("--surface", default=None, help="Only this surface: rest, lsp, slack, dingtalk, …")
@json_option("One JSON object per line.")
@pass_state
def audit(state: State, limit: int, user: str | None, surface: str | None, as_json: bool) -> None:
    """Show the audit log, newest first: who asked what, the sources, the backend that answered."""
    rows = asyncio.run(_rows(state.settings.database_url, limit, user, surface))
    if not rows:
        click.echo("No audited requests yet.")
        return
    for row in rows:
        if as_json:
            decoded = {**row, "sources": json.loads(row["sources"]), "timings": json.loads(row["timings"])}
            click.echo(json.dumps(decoded, ensure_ascii=False))
            continue
        when = datetime.fromtimestamp(row["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        question = " ".join(row["question"].split())
        question = question if len(question) <= 60 else question[:57] + "…"
        served = f"{row['backend']}/{row['model']}" if row["backend"] else "-"
        status = "" if row["status"] == "ok" else f" [{row['status']}: {row['error'][:60]}]"
        click.echo(
            f"{when}  {row['surface']:<8} {row['user_name']:<16} {row['action']:<14} "
            f"{served:<28} {row['duration_ms']:>8.0f} ms  {question}{status}"
        )
