"""Table questions from Slack and REST: hostile model SQL is refused and changes nothing; a table
source's ACL holds for the audience that will see the answer."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot import messages
from core.assistant import Assistant
from core.llm.fake import FakeBackend
from core.llm.router import Router
from core.refusals import Reason
from core.tables.service import TableService
from server.app import create_app
from server.auth import TOKENS
from tests.fixtures.core import make_settings
from tests.fixtures.slack_api import command_body

# Statements that write or reach outside the catalog: refused, whatever the model says.
HOSTILE = [
    "DELETE FROM sales",
    "DROP TABLE sales",
    "UPDATE sales SET revenue = 0",
    "ATTACH DATABASE '/tmp/x.db' AS x",
    "WITH gone AS (DELETE FROM sales RETURNING *) SELECT * FROM gone",
]
# A read smuggling a write after it: at most the read runs; nothing is written.
SMUGGLED = ["SELECT 1; DELETE FROM sales", "SELECT * FROM sales; PRAGMA writable_schema = 1"]
REFUSED = (
    messages.REFUSALS[Reason.TABLE_ERROR].split("{")[0],
    messages.REFUSALS[Reason.SQL_REJECTED].split("{")[0],
    messages.REFUSALS[Reason.TABLE_NO_SQL].split("{")[0],
)


def shop(tmp_path: Path) -> Path:
    db = tmp_path / "shop.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE sales (month TEXT, revenue INTEGER)")
        conn.executemany("INSERT INTO sales VALUES (?, ?)", [("2026-02", 10), ("2026-03", 12)])
    return db


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def engine(
    tmp_path: Path, reply: str, acl: list[str] | None = None, **sections: Any
) -> tuple[Assistant, Path]:
    db = shop(tmp_path)
    table = {"name": "shop", "type": "sqlite", "path": str(db)} | ({"acl": acl} if acl else {})
    settings = make_settings(tmp_path, tables=[table], **sections)
    assistant = Assistant(
        settings, Router(local=FakeBackend(reply=reply), remote=None, routing=settings.llm.routing)
    )
    assistant.tables = TableService(settings, assistant.router, assistant.prompts)
    return assistant, db


@pytest.mark.parametrize("sql", HOSTILE + SMUGGLED)
async def test_hostile_model_sql_through_slack_data_is_refused_and_changes_nothing(
    make_slack, slack_api, tmp_path: Path, sql: str
) -> None:
    assistant, db = engine(tmp_path, sql)
    before = digest(db)
    h = await make_slack(assistant)
    try:
        await h.send(command_body("/data", "monthly revenue?", response_url=slack_api.response_url()))
        await h.bot.drain()
    finally:
        await assistant.tables.aclose()  # type: ignore[union-attr]
    shown = " ".join(
        c.blocks_text() for c in slack_api.calls if c.method in ("chat.postMessage", "chat.update")
    )
    assert "Traceback" not in shown
    if sql in HOSTILE:
        assert any(sentence in shown for sentence in REFUSED), shown
    assert digest(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sales").fetchone() == (2,)


@pytest.mark.parametrize("sql", HOSTILE + SMUGGLED)
async def test_hostile_model_sql_through_rest_is_a_422_and_changes_nothing(
    aiohttp_client: Any, tmp_path: Path, sql: str
) -> None:
    assistant, db = engine(tmp_path, sql)
    before = digest(db)
    client = await aiohttp_client(create_app(assistant.settings, assistant=assistant))
    _, token = await client.app[TOKENS].create("alice", [])
    resp = await client.post(
        "/v1/tables/ask", json={"question": "monthly revenue?"}, headers={"Authorization": f"Bearer {token}"}
    )
    body = await resp.json()
    if sql in HOSTILE:
        assert resp.status == 422 and body["error"]["code"] in ("table_error", "rejected")
        assert "Traceback" not in body["message"]
    elif resp.status == 200:  # only the read ran
        assert "DELETE" not in body["sql"].upper() and "PRAGMA" not in body["sql"].upper()
    else:
        assert resp.status == 422 and body["error"]["code"] in ("table_error", "rejected")
    assert digest(db) == before


async def test_a_finance_table_is_not_answered_into_a_general_channel(
    make_slack, slack_api, tmp_path: Path
) -> None:
    assistant, _ = engine(tmp_path, "SELECT month, revenue FROM sales ORDER BY month", acl=["group:finance"])
    h = await make_slack(assistant, users={"U1": ["group:finance"]}, channels={"CFIN": ["group:finance"]})
    try:
        # In #general the audience holds only public: the finance table is not theirs to see.
        await h.send(
            command_body("/data", "monthly revenue?", channel="CGEN", response_url=slack_api.response_url())
        )
        await h.bot.drain()
        refused = " ".join(c.blocks_text() for c in slack_api.calls if c.method == "chat.update")
        assert messages.REFUSALS[Reason.TABLES_NO_ACCESS] in refused and "2026-03" not in refused
        # In the finance channel (and in a DM) the same asker gets the rows.
        await h.send(
            command_body("/data", "monthly revenue?", channel="CFIN", response_url=slack_api.response_url())
        )
        await h.bot.drain()
        shown = " ".join(
            c.blocks_text() for c in slack_api.calls if c.method in ("chat.postMessage", "chat.update")
        )
        assert "2026-03" in shown and "12" in shown
    finally:
        await assistant.tables.aclose()  # type: ignore[union-attr]
