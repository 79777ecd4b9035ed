"""Digests through the real parts: DingTalk webhooks on loopback, the retrieval sync state, the table
service and its SQL guard, `hearth serve`'s app, PostgreSQL advisory locks, and the bundled model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
import yaml
from click.testing import CliRunner

from core.assistant import Assistant
from core.config import Settings
from core.db import Database
from core.digests.service import DigestService
from core.intake import Intake
from core.llm.fake import FakeBackend
from core.llm.router import Router
from server.cli import main
from tests.fixtures.core import LLAMA_OVERRIDES, make_settings

MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SPEC = {"name": "eng-weekly", "schedule": "0 9 * * MON", "post_to": [{"dingtalk": "team"}]}


def webhooks(gateway: Any) -> dict[str, Any]:
    """The DingTalk section with the fake gateway's signed custom robot."""
    from tests.fixtures.dingtalk_gateway import WEBHOOK_SECRET

    return {
        "webhooks": {"team": {"url": gateway.webhook_url(), "secret": WEBHOOK_SECRET}},
        "request_timeout_s": 5,
    }


def fake_assistant(
    settings: Settings, reply: str = "Leave policy changed; team a has 2 tickets."
) -> Assistant:
    return Assistant(
        settings, Router(local=FakeBackend(reply=reply), remote=None, routing=settings.llm.routing)
    )


def sent_texts(gateway: Any) -> list[str]:
    return [c.body["markdown"]["text"] for c in gateway.calls_to("/robot/send")]


async def test_docs_tables_and_dingtalk_through_the_real_parts(tmp_path: Path, dingtalk_gateway: Any) -> None:
    from bot.dingtalk.poster import DingTalkPoster
    from core.retrieval.state import TABLES, DocState, SyncState
    from core.tables.service import TableService

    csv = tmp_path / "tickets.csv"
    csv.write_text("team,title\na,login broken\na,slow page\nb,typo\n")
    settings = make_settings(
        tmp_path,
        sources=[{"name": "handbook", "type": "files", "path": str(tmp_path)}],
        tables=[{"name": "tickets", "type": "csv", "path": str(csv)}],
        dingtalk=webhooks(dingtalk_gateway),
        digests=[
            SPEC
            | {
                "owner": "dingtalk:team",
                "inputs": {
                    "docs": {"sources": ["handbook"]},
                    "tables": [
                        {
                            "source": "tickets",
                            "title": "Open tickets",
                            "sql": "SELECT team, count(*) AS n FROM tickets GROUP BY team ORDER BY team",
                        },
                        {"source": "tickets", "sql": "DELETE FROM tickets"},
                    ],
                },
            }
        ],
    )
    db = Database(settings.database_url)
    await db.ensure(TABLES)
    now = time.time()
    await SyncState(db).put_docs(
        [
            DocState(
                "handbook", "leave.md", "file:///handbook/leave.md", "Leave policy", "h1", "s", 2, now, now
            ),
            DocState(
                "handbook",
                "old.md",
                "file:///handbook/old.md",
                "Old page",
                "h2",
                "s",
                1,
                now - 30 * 86400,
                now - 30 * 86400,
            ),
        ]
    )
    assistant = fake_assistant(settings)
    assistant.tables = TableService(settings, assistant.router, assistant.prompts)  # type: ignore[attr-defined]
    poster = DingTalkPoster(settings.dingtalk)
    service = DigestService(
        settings,
        assistant,
        {"dingtalk": poster},
        db,
        backoff=(0.0,),
        summarise=Intake(settings, lambda: assistant).run,
    )
    try:
        await service.open()
        run = await service.run("eng-weekly")
    finally:
        await poster.aclose()
        await assistant.aclose()
        await db.aclose()
    assert run is not None and run.status == "posted"
    digest, owner_note = sent_texts(dingtalk_gateway)
    assert "[Leave policy](file:///handbook/leave.md)" in digest and "Old page" not in digest
    assert "| a | 2 |" in digest and "| b | 1 |" in digest
    assert "Leave policy changed" in digest
    # The guard's reason is in the run record and the owner was told.
    assert run.reason is not None and "inputs.tables[1] (tickets)" in run.reason
    assert "left out a table" in owner_note
    # DingTalk shows a message's title as plain text (chat list, notifications): no Markdown in it.
    titles = [c.body["markdown"]["title"] for c in dingtalk_gateway.calls_to("/robot/send")]
    assert titles[0].startswith("eng-weekly · ") and digest.startswith("**eng-weekly** · ")
    assert not [t for t in titles if "*" in t or "#" in t or "`" in t]


async def test_hearth_serve_runs_the_scheduled_digest(
    tmp_path: Path, dingtalk_gateway: Any, aiohttp_client: Callable[..., Any]
) -> None:
    from server.app import create_app
    from server.digests import DIGESTS

    settings = make_settings(tmp_path, dingtalk=webhooks(dingtalk_gateway), digests=[SPEC])
    assistant = fake_assistant(settings, reply="Quiet week.")
    done: asyncio.Queue[Any] = asyncio.Queue()
    with time_machine.travel(MONDAY_9 - timedelta(minutes=5), tick=False) as clock:
        client = await aiohttp_client(create_app(settings, assistant=assistant))
        service = client.app[DIGESTS]
        await asyncio.wait_for(service.started.wait(), 10)
        service.listeners.append(done.put_nowait)
        assert service.leading and service.scheduler.get_job("eng-weekly").next_run_time == MONDAY_9
        assert (await client.get("/healthz")).status == 200
        clock.move_to(MONDAY_9)
        service.wakeup()
        run = await asyncio.wait_for(done.get(), 10)
        assert run.status == "posted" and run.trigger == "schedule" and run.fire_time == MONDAY_9.isoformat()
        await client.close()
    [text] = sent_texts(dingtalk_gateway)
    assert text.startswith("**eng-weekly**") and "Quiet week." in text
    # Shutdown gave the leader lease back, so a standby takes over at once.
    engine = sa.create_engine(settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM digest_leader")).scalar() == 0
    engine.dispose()


@pytest.mark.postgres
async def test_two_replicas_on_postgresql_run_each_job_once(tmp_path: Path, postgres_db: Any) -> None:
    settings = make_settings(
        tmp_path,
        database={"url": postgres_db.sqlalchemy_url},
        digests=[SPEC | {"post_to": [{"slack": "#eng"}]}],
    )
    posts: list[str] = []

    class Poster:
        surface = "slack"

        async def post(self, destination: str, markdown: str) -> str:
            posts.append(destination)
            return "1"

    done: asyncio.Queue[Any] = asyncio.Queue()
    replicas = []
    for _ in range(2):
        db = Database(settings.database_url)
        engine = fake_assistant(settings)
        svc = DigestService(
            settings,
            engine,
            {"slack": Poster()},
            db,
            leader_interval_s=3600,
            summarise=Intake(settings, lambda engine=engine: engine).run,
        )
        svc.listeners.append(done.put_nowait)
        replicas.append(svc)
    a, b = replicas
    try:
        with time_machine.travel(MONDAY_9 - timedelta(minutes=1), tick=False) as clock:
            await a.start()
            await b.start()
            assert [a.leading, b.leading] == [True, False]
            with a.db.engine.connect() as conn:
                held = conn.execute(
                    sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
                ).scalar()
            assert held == 1
            clock.move_to(MONDAY_9 + timedelta(seconds=2))
            a.wakeup()
            b.wakeup()
            await asyncio.wait_for(done.get(), 10)
            assert await asyncio.gather(a.fire("eng-weekly"), b.fire("eng-weekly")) == [None, None]
            await a.stop()  # the leader goes away: the lock is free at once
            await b.tick()
            assert b.leading
            assert b.scheduler.get_job("eng-weekly").next_run_time == MONDAY_9 + timedelta(weeks=1)
    finally:
        for svc in replicas:
            await svc.stop()
            await svc.db.aclose()
    assert posts == ["#eng"]
    assert done.empty()


@pytest.mark.llama
def test_dry_run_with_the_bundled_model(tmp_path: Path, bundled_model: Path) -> None:
    config = tmp_path / "hearth.yaml"
    config.write_text(
        yaml.safe_dump(
            LLAMA_OVERRIDES
            | {
                "home": str(tmp_path / "home"),
                "digests": [
                    {"name": "eng-weekly", "schedule": "0 9 * * MON", "post_to": [{"slack": "#eng"}]}
                ],
            }
        )
    )
    result = CliRunner().invoke(main, ["-c", str(config), "digest", "run", "eng-weekly", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("**eng-weekly** · ")
    assert "(local)" in result.stdout  # the 'written by' line names the local model
    assert "dry run: nothing posted" in result.stderr


@pytest.fixture(autouse=True)
def _quiet_loggers() -> None:
    """APScheduler logs job runs at INFO; keep test output readable."""
    import logging

    logging.getLogger("apscheduler").setLevel(logging.WARNING)
