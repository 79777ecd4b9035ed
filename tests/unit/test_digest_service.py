"""Digest runs: exactly-once posting per fire time, retries, restarts, coalescing and leadership."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from core.assistant import Assistant
from core.config import Settings
from core.contracts import Answer, TablePart
from core.db import Database
from core.digests import inputs as digest_inputs
from core.digests.service import DigestService
from core.errors import SQLRejected
from core.intake import Intake
from core.llm.base import Usage
from core.llm.fake import FakeBackend
from core.llm.router import Router
from core.retrieval.sync import ChangedDoc
from tests.fixtures.core import make_settings

MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday


class RecordingPoster:
    """A Poster that records posts; ``fail`` makes the next N posts raise."""

    def __init__(self, surface: str, fail: int = 0) -> None:
        self.surface = surface
        self.fail = fail
        self.posts: list[tuple[str, str]] = []
        self.attempts = 0

    async def post(self, destination: str, markdown: str) -> str:
        self.attempts += 1
        if self.fail > 0:
            self.fail -= 1
            raise ConnectionError("destination unreachable")
        self.posts.append((destination, markdown))
        return f"m{len(self.posts)}"


class HangingPoster(RecordingPoster):
    """Records the post, then never returns (the process dies mid-post)."""

    def __init__(self, surface: str) -> None:
        super().__init__(surface)
        self.entered = asyncio.Event()

    async def post(self, destination: str, markdown: str) -> str:
        self.posts.append((destination, markdown))
        self.entered.set()
        await asyncio.Event().wait()
        return "never"


def digest(**overrides: Any) -> dict[str, Any]:
    """A spec as hearth.yaml would hold it."""
    spec: dict[str, Any] = {
        "name": "eng-weekly",
        "schedule": "0 9 * * MON",
        "post_to": [{"slack": "#eng"}],
        "owner": "slack:U0OWNER1",
    }
    spec.update(overrides)
    return spec


def settings_with(tmp_path: Path, *digests: dict[str, Any], **sections: Any) -> Settings:
    """Settings whose state DB is a SQLite file in tmp_path."""
    return make_settings(tmp_path, digests=list(digests) or [digest()], **sections)


class Env:
    """Builds services that share one database, like replicas or restarts."""

    def __init__(self, settings: Settings, backend: FakeBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.services: list[DigestService] = []
        self.done: asyncio.Queue[Any] = asyncio.Queue()

    def service(self, posters: dict[str, Any], **kw: Any) -> DigestService:
        assistant = Assistant(
            self.settings, Router(local=self.backend, remote=None, routing=self.settings.llm.routing)
        )
        kw.setdefault("backoff", (0.0, 0.0, 0.0))
        kw.setdefault("leader_interval_s", 3600.0)
        kw.setdefault("summarise", Intake(self.settings, lambda: assistant).run)
        svc = DigestService(self.settings, assistant, posters, Database(self.settings.database_url), **kw)
        svc.listeners.append(self.done.put_nowait)
        self.services.append(svc)
        return svc

    async def next_run(self) -> Any:
        return await asyncio.wait_for(self.done.get(), 10)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Callable[..., Env]]:
    made: list[Env] = []

    def build(*digests: dict[str, Any], backend: FakeBackend | None = None, **sections: Any) -> Env:
        e = Env(
            settings_with(tmp_path, *digests, **sections), backend or FakeBackend(reply="Two docs changed.")
        )
        made.append(e)
        return e

    yield build
    for e in made:
        for svc in e.services:
            await svc.stop()
            await svc.db.aclose()


@pytest.fixture(autouse=True)
def no_retrieval(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Changed docs come from this list (the real sync state is covered in the integration test)."""
    changed: list[dict[str, Any]] = []

    async def fake_changed(settings: Settings, sources: list[str], since: datetime) -> list[ChangedDoc]:
        return [
            ChangedDoc(d["uri"], d["uri"], d["title"], d["source"], d["updated_at"])
            for d in changed
            if d["source"] in sources and d["updated_at"] >= since
        ]

    monkeypatch.setattr(digest_inputs, "changed_docs", fake_changed)
    return changed


async def test_manual_run_posts_once_per_fire_time(env: Callable[..., Env]) -> None:
    e = env(digest(post_to=[{"slack": "#eng"}, {"slack": "C0123ABCD"}]))
    slack = RecordingPoster("slack")
    svc = e.service({"slack": slack})
    await svc.open()
    run = await svc.run("eng-weekly", fire_time=MONDAY_9)
    assert run is not None and run.status == "posted"
    assert [d for d, _ in slack.posts] == ["#eng", "C0123ABCD"]
    assert "Two docs changed." in slack.posts[0][1]
    assert "**eng-weekly**" in slack.posts[0][1]
    # The same fire time again (a retry, a restart, another replica): nothing is posted.
    assert await svc.run("eng-weekly", fire_time=MONDAY_9) is None
    assert len(slack.posts) == 2
    # The model saw the digest template at digest priority.
    call = e.backend.calls[0]
    assert call.options.priority.name == "DIGEST"
    assert "eng-weekly" in call.messages[-1].content
    [record] = await svc.history("eng-weekly")
    assert record.deliveries["slack:#eng"].message_id == "m1"


async def test_failing_destination_is_retried_then_recorded_and_owner_told(env: Callable[..., Env]) -> None:
    e = env(
        digest(post_to=[{"slack": "#eng"}, {"dingtalk": "eng-robot"}]),
        dingtalk={"webhooks": {"eng-robot": {"url": "https://oapi.dingtalk.com/robot/send?access_token=x"}}},
    )
    slack = RecordingPoster("slack", fail=2)  # recovers on the third attempt
    dingtalk = RecordingPoster("dingtalk", fail=99)  # never recovers
    svc = e.service({"slack": slack, "dingtalk": dingtalk}, backoff=(0.0, 0.0, 0.0))
    await svc.open()
    run = await svc.run("eng-weekly", fire_time=MONDAY_9)
    assert run is not None and run.status == "partial"
    [record] = await svc.history("eng-weekly")
    assert record.deliveries["slack:#eng"].status == "posted"
    assert record.deliveries["slack:#eng"].attempts == 3
    failed = record.deliveries["dingtalk:eng-robot"]
    assert (failed.status, failed.attempts) == ("failed", 4)
    assert "destination unreachable" in (failed.error or "")
    # The owner got a DM naming the failed destination.
    owner_posts = [p for p in slack.posts if p[0] == "U0OWNER1"]
    assert len(owner_posts) == 1 and "dingtalk:eng-robot" in owner_posts[0][1]


async def test_missing_poster_is_recorded_not_lost(env: Callable[..., Env]) -> None:
    e = env()
    svc = e.service({})
    await svc.open()
    run = await svc.run("eng-weekly", fire_time=MONDAY_9)
    assert run is not None and run.status == "failed"
    assert "no slack poster" in (run.deliveries["slack:#eng"].error or "")


async def test_crash_before_posting_is_resumed_once(env: Callable[..., Env]) -> None:
    writing = asyncio.Event()

    def reply(messages: Any) -> str:
        writing.set()
        return "Resumed summary."

    e = env(backend=FakeBackend(reply=reply, first_token_delay=30))
    slack = RecordingPoster("slack")
    first = e.service({"slack": slack}, run_lease_s=60)
    await first.open()
    with time_machine.travel(MONDAY_9 + timedelta(seconds=5), tick=False) as clock:
        task = asyncio.create_task(first.run("eng-weekly", fire_time=MONDAY_9))
        await asyncio.wait_for(writing.wait(), 10)  # generation has started
        task.cancel()  # the process dies while the model is writing
        with pytest.raises(asyncio.CancelledError):
            await task
        [record] = await first.history("eng-weekly")
        assert record.status == "running" and slack.posts == []

        e.backend.first_token_delay = 0
        restarted = e.service({"slack": slack}, run_lease_s=60)
        await restarted.start()  # the lease has not run out: the claim is still respected
        assert await restarted.run("eng-weekly", fire_time=MONDAY_9) is None
        clock.shift(timedelta(seconds=61))
        await restarted.tick()  # finds the stale claim and resumes it
        run = await e.next_run()
    assert run.status == "posted" and run.claims == 2
    assert len(slack.posts) == 1 and "Resumed summary." in slack.posts[0][1]


async def test_crash_while_posting_is_never_posted_twice(env: Callable[..., Env]) -> None:
    e = env()
    hanging = HangingPoster("slack")
    first = e.service({"slack": hanging}, run_lease_s=60)
    await first.open()
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        task = asyncio.create_task(first.run("eng-weekly", fire_time=MONDAY_9))
        await asyncio.wait_for(hanging.entered.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        slack = RecordingPoster("slack")
        restarted = e.service({"slack": slack}, run_lease_s=60)
        await restarted.open()
        clock.shift(timedelta(seconds=61))
        await restarted.tick()
        run = await e.next_run()
    assert len(hanging.posts) == 1
    assert [p for p in slack.posts if p[0] == "#eng"] == []  # not re-posted
    assert run.deliveries["slack:#eng"].status == "uncertain"
    assert run.status == "failed"
    assert any(p[0] == "U0OWNER1" and "uncertain" in p[1] for p in slack.posts)


async def test_missed_runs_while_stopped_coalesce_into_one(env: Callable[..., Env]) -> None:
    e = env()
    slack = RecordingPoster("slack")
    with time_machine.travel(MONDAY_9 - timedelta(minutes=1), tick=False) as clock:
        svc = e.service({"slack": slack})
        await svc.start()
        assert svc.leading
        assert svc.next_run("eng-weekly") == MONDAY_9
        await svc.stop()
        # Stopped for three weeks: three Monday runs are missed.
        clock.move_to(MONDAY_9 + timedelta(weeks=2, hours=3))
        again = e.service({"slack": slack})
        await again.start()
        run = await e.next_run()
        assert run.fire_time == (MONDAY_9 + timedelta(weeks=2)).isoformat()
        assert len(slack.posts) == 1
        # Nothing else is due: the scheduler's next run is next Monday.
        job = again.scheduler.get_job("eng-weekly")  # type: ignore[union-attr]
        assert job.next_run_time == MONDAY_9 + timedelta(weeks=3)
    assert e.done.empty()


async def test_two_schedulers_on_one_database_run_each_job_once(env: Callable[..., Env]) -> None:
    e = env()
    slack = RecordingPoster("slack")
    with time_machine.travel(MONDAY_9 - timedelta(minutes=1), tick=False) as clock:
        a = e.service({"slack": slack}, leader_lease_s=60)
        b = e.service({"slack": slack}, leader_lease_s=60)
        await a.start()
        await b.start()
        assert [a.leading, b.leading] == [True, False]
        clock.move_to(MONDAY_9 + timedelta(seconds=1))
        a.wakeup()
        b.wakeup()
        await e.next_run()
        # Even if both replicas fire the job (a lease handover race), the run record stops the second.
        results = await asyncio.gather(a.fire("eng-weekly"), b.fire("eng-weekly"))
        assert results == [None, None]
        assert len(slack.posts) == 1
        # The leader stops; the standby takes over without re-running what was done.
        await a.stop()
        await b.tick()
        assert b.leading
        job = b.scheduler.get_job("eng-weekly")  # type: ignore[union-attr]
        assert job.next_run_time == MONDAY_9 + timedelta(weeks=1)
    assert len(slack.posts) == 1


async def test_no_changes_posts_a_short_note_or_skips(
    env: Callable[..., Env], tmp_path: Path, no_retrieval: list[dict[str, Any]]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    source = {"name": "handbook", "type": "files", "path": str(docs)}
    e = env(
        digest(inputs={"docs": {"sources": ["handbook"]}}),
        digest(name="quiet", inputs={"docs": {"sources": ["handbook"]}}, on_no_changes="skip"),
        sources=[source],
    )
    slack = RecordingPoster("slack")
    svc = e.service({"slack": slack})
    await svc.open()
    posted = await svc.run("eng-weekly", fire_time=MONDAY_9)
    skipped = await svc.run("quiet", fire_time=MONDAY_9)
    assert posted is not None and posted.status == "posted"
    assert skipped is not None and skipped.status == "skipped"
    assert len(slack.posts) == 1 and "No changes since the last digest." in slack.posts[0][1]
    assert e.backend.calls == []  # no model call for an empty week
    # Next week a doc changed: it is listed, and "since" starts where the last run ended.
    no_retrieval.append(
        {
            "title": "Leave policy",
            "uri": "file:///hb/leave.md",
            "source": "handbook",
            "updated_at": datetime.now(UTC) + timedelta(minutes=1),
        }
    )
    with time_machine.travel(datetime.now(UTC) + timedelta(days=7), tick=False):
        run = await svc.run("eng-weekly", fire_time=MONDAY_9 + timedelta(weeks=1))
    assert run is not None and run.since == posted.until
    assert "[Leave policy](file:///hb/leave.md)" in slack.posts[-1][1]


class RejectingTables:
    """A table service whose guard rejects everything but SELECT 1 (answers as TableService does)."""

    async def query(self, source: str, sql: str) -> Answer:
        if sql != "SELECT 1 AS one":
            raise SQLRejected("Only one SELECT statement is allowed.")
        part = TablePart(sql=sql, source=source, columns=["one"], rows=[[1]], chat_rows=20)
        return Answer("1 row.", [], backend="none", model="", usage=Usage(), table=part)


async def test_rejected_sql_is_recorded_and_owner_told(env: Callable[..., Env], tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("team,n\na,1\n")
    e = env(
        digest(
            inputs={
                "tables": [
                    {"source": "tickets", "sql": "SELECT 1 AS one"},
                    {"source": "tickets", "sql": "DELETE FROM tickets"},
                ]
            }
        ),
        tables=[{"name": "tickets", "type": "csv", "path": str(csv)}],
    )
    slack = RecordingPoster("slack")
    svc = e.service({"slack": slack})
    await svc.open()
    svc.assistant.tables = RejectingTables()
    run = await svc.run("eng-weekly", fire_time=MONDAY_9)
    assert run is not None and run.status == "posted"
    assert "inputs.tables[1] (tickets)" in (run.reason or "") and "Only one SELECT" in (run.reason or "")
    digest_text = slack.posts[0][1]
    assert "| one |" in digest_text and "| 1 |" in digest_text and "query rejected" in digest_text
    assert any(p[0] == "U0OWNER1" and "left out a table" in p[1] for p in slack.posts)


async def test_the_summary_goes_through_the_front_door_and_a_failure_posts_the_facts(
    env: Callable[..., Env],
) -> None:
    from core.contracts import Kind, Outcome
    from core.errors import BackendUnavailable
    from core.intake import Intake

    seen: list[Outcome] = []

    class Watch:
        def observe(self, outcome: Outcome) -> None:
            seen.append(outcome)

    e = env(digest(post_to=[{"slack": "#eng"}]), backend=FakeBackend(error=BackendUnavailable("model gone")))
    slack = RecordingPoster("slack")
    holder: list[DigestService] = []
    intake = Intake(e.settings, lambda: holder[0].assistant, observers=[Watch()])  # type: ignore[arg-type,return-value]
    svc = e.service({"slack": slack}, summarise=intake.run)
    holder.append(svc)
    await svc.open()
    run = await svc.run("eng-weekly", fire_time=MONDAY_9)
    # The model failed: the digest still posts its facts, with a note saying why there is no summary.
    assert run is not None and run.status == "posted"
    assert "model gone" in slack.posts[0][1] and "**eng-weekly**" in slack.posts[0][1]
    [outcome] = seen
    assert outcome.ask.kind is Kind.DIGEST and outcome.ask.request.surface == "digest"
    assert outcome.status == "error" and outcome.refusal is not None
