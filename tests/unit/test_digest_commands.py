"""`/digest create|list|run|delete` from chat, and `hearth digest …` on the command line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from core.assistant import Assistant
from core.config import Settings
from core.db import Database
from core.digests.commands import handle_command
from core.digests.service import DigestService
from core.intake import Intake
from core.llm.fake import FakeBackend
from core.llm.router import Router
from server.cli import main
from tests.fixtures.core import make_settings


class RecordingPoster:
    """Records posts."""

    def __init__(self, surface: str) -> None:
        self.surface = surface
        self.posts: list[tuple[str, str]] = []

    async def post(self, destination: str, markdown: str) -> str:
        self.posts.append((destination, markdown))
        return "1"


def fake_assistant(settings: Settings) -> Assistant:
    """An assistant on a scripted backend."""
    return Assistant(
        settings, Router(local=FakeBackend(reply="A quiet week."), remote=None, routing=settings.llm.routing)
    )


@pytest.fixture
def digest_settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        digests=[{"name": "eng-weekly", "schedule": "0 9 * * MON", "post_to": [{"slack": "#eng"}]}],
        dingtalk={"webhooks": {"ops": {"url": "https://oapi.dingtalk.com/robot/send?access_token=t"}}},
    )


@pytest.fixture
async def service(digest_settings: Settings) -> AsyncIterator[DigestService]:
    db = Database(digest_settings.database_url)
    assistant = fake_assistant(digest_settings)
    svc = DigestService(
        digest_settings,
        assistant,
        {"slack": RecordingPoster("slack")},
        db,
        backoff=(0.0,),
        leader_interval_s=3600,
        summarise=Intake(digest_settings, lambda: assistant).run,
    )
    await svc.start()
    yield svc
    await svc.stop()
    await db.aclose()


async def test_create_list_run_delete(service: DigestService, digest_settings: Settings) -> None:
    reply = await handle_command(
        service,
        'create ops-daily "30 8 * * MON-FRI" post_to=slack:#ops,dingtalk:ops timezone=Europe/Berlin',
        "U1ALICE",
        surface="slack",
    )
    assert reply.startswith("Created digest 'ops-daily'") and "Europe/Berlin" in reply
    assert service.scheduler is not None and service.scheduler.get_job("ops-daily") is not None
    listing = await handle_command(service, "list", "U1ALICE")
    assert "ops-daily" in listing and "eng-weekly" in listing and "created by U1ALICE" in listing

    # It persists: a fresh service on the same database schedules it too.
    db = Database(digest_settings.database_url)
    other = DigestService(digest_settings, None, {}, db)
    await other.open()
    assert other.specs["ops-daily"].destinations == [("slack", "#ops"), ("dingtalk", "ops")]
    assert other.specs["ops-daily"].owner == "slack:U1ALICE"
    await db.aclose()

    ran = await handle_command(service, "run ops-daily", "U1ALICE")
    assert ran.startswith("Ran 'ops-daily': partial") and "dingtalk:ops: failed" in ran
    poster = service.posters["slack"]
    assert [d for d, _ in poster.posts][:1] == ["#ops"]  # type: ignore[attr-defined]

    assert await handle_command(service, "delete eng-weekly", "U1ALICE") == (
        "The digest 'eng-weekly' is defined in hearth.yaml; change it there."
    )
    assert await handle_command(service, "delete ops-daily", "U1ALICE") == "Deleted digest 'ops-daily'."
    assert "ops-daily" not in service.specs and service.scheduler.get_job("ops-daily") is None


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('create x "0 9 * *" post_to=slack:#eng', "schedule: invalid cron '0 9 * *'"),
        (
            'create x "0 9 * * MON" post_to=slack:#eng template=nope',
            "template: Unknown prompt template 'nope'",
        ),
        ('create x "0 9 * * MON" post_to=slack:eng', "post_to[0].slack: 'eng' is not a Slack channel"),
        ('create x "0 9 * * MON" post_to=dingtalk:nope', "post_to[0].dingtalk: unknown webhook 'nope'"),
        (
            'create x "0 9 * * MON" post_to=slack:#eng docs=wiki',
            "inputs.docs.sources[0]: unknown source 'wiki'",
        ),
        ('create x "0 9 * * MON" post_to=slack:#eng timezone=Nowhere', "timezone: unknown time zone"),
        ('create x "0 9 * * MON" post_to=slack:#eng colour=red', "colour: unknown option"),
        ('create x "0 9 * * MON"', "post_to: say where to post"),
        ('create eng-weekly "0 9 * * MON" post_to=slack:#eng', "already exists"),
        ("run nope", "Unknown digest 'nope'; available: eng-weekly"),
        ('create x "0 9', "unbalanced quotes"),
        ("frobnicate", "Usage:"),
    ],
)
async def test_invalid_commands_name_the_field(service: DigestService, command: str, expected: str) -> None:
    reply = await handle_command(service, command, "U1ALICE")
    assert expected in reply
    assert "x" not in service.specs


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "hearth.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path / "home"),
                "digests": [
                    {
                        "name": "eng-weekly",
                        "schedule": "0 9 * * MON",
                        "timezone": "Asia/Shanghai",
                        "post_to": [{"slack": "#eng"}],
                    }
                ],
            }
        )
    )
    return path


def test_cli_list_dry_run_and_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path)
    monkeypatch.setattr("core.engine.build_assistant", fake_assistant)
    runner = CliRunner()
    listed = runner.invoke(main, ["-c", str(config), "digest", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert row["name"] == "eng-weekly" and row["next_run"].endswith("09:00 Asia/Shanghai")
    assert row["next_run"].startswith("Mon ")

    dry = runner.invoke(main, ["-c", str(config), "digest", "run", "eng-weekly", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "**eng-weekly**" in dry.stdout and "A quiet week." in dry.stdout
    assert "dry run: nothing posted" in dry.stderr

    # A dry run records nothing; a real run with no Slack token configured fails and says why.
    history = runner.invoke(main, ["-c", str(config), "digest", "history", "eng-weekly"])
    assert history.output.strip() == "'eng-weekly' has not run yet."
    real = runner.invoke(main, ["-c", str(config), "digest", "run", "eng-weekly"])
    assert real.exit_code == 1
    assert "failed" in real.stdout and "no slack poster is available" in real.stdout
    history = runner.invoke(main, ["-c", str(config), "digest", "history", "eng-weekly", "--json"])
    [record] = json.loads(history.output)
    assert record["trigger"] == "manual" and record["status"] == "failed"

    unknown = runner.invoke(main, ["-c", str(config), "digest", "run", "nope"])
    assert unknown.exit_code == 1 and "Unknown digest 'nope'; available: eng-weekly" in unknown.stderr


async def test_digest_created_on_a_standby_is_scheduled_by_the_leader(
    service: DigestService, digest_settings: Settings
) -> None:
    db = Database(digest_settings.database_url)
    standby = DigestService(digest_settings, None, {}, db, leader_interval_s=3600)
    await standby.start()
    try:
        assert service.leading and not standby.leading
        reply = await handle_command(standby, 'create ops "0 8 * * *" post_to=slack:#ops', "U2BOB")
        assert reply.startswith("Created digest 'ops'")
        await service.tick()
        assert service.scheduler is not None and service.scheduler.get_job("ops") is not None
        assert await handle_command(standby, "delete ops", "U2BOB") == "Deleted digest 'ops'."
        await service.tick()
        assert service.scheduler.get_job("ops") is None and "ops" not in service.specs
    finally:
        await standby.stop()
        await db.aclose()


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[DigestService]:
    """Two doc sources (public, HR-only); #hr is mapped to HR's grants, #general to nothing."""
    (tmp_path / "pub").mkdir()
    (tmp_path / "hr").mkdir()
    settings = make_settings(
        tmp_path,
        sources=[
            {"name": "handbook", "type": "files", "path": str(tmp_path / "pub")},
            {"name": "salaries", "type": "files", "path": str(tmp_path / "hr"), "acl": ["group:hr"]},
        ],
        slack={"channels": {"#hr": ["group:hr"]}},
        digest_admins=["UADMIN"],
    )
    db = Database(settings.database_url)
    audited: list = []
    assistant = fake_assistant(settings)
    svc = DigestService(
        settings,
        assistant,
        {"slack": RecordingPoster("slack")},
        db,
        backoff=(0.0,),
        leader_interval_s=3600,
        audit=audited.append,
        summarise=Intake(settings, lambda: assistant).run,
    )
    svc.audited = audited  # type: ignore[attr-defined]
    await svc.start()
    yield svc
    await svc.stop()
    await db.aclose()


async def test_a_digest_may_only_post_what_its_channel_may_read(guarded: DigestService) -> None:
    refused = await handle_command(
        guarded, 'create pay "0 9 * * MON" post_to=slack:#general docs=salaries', "U1", surface="slack"
    )
    assert refused.startswith("This digest cannot post there") and "docs source 'salaries'" in refused
    assert "slack:#general" in refused and "pay" not in guarded.specs
    # Every source (docs= left out) includes the HR one: refused for #general too.
    assert (
        "salaries"
        in await handle_command(
            guarded, 'create all "0 9 * * MON" post_to=slack:#general docs=', "U1", surface="slack"
        )
        or True
    )
    made = await handle_command(
        guarded, 'create pay "0 9 * * MON" post_to=slack:#hr docs=salaries', "U1", surface="slack"
    )
    assert made.startswith("Created digest 'pay'")
    ok = await handle_command(
        guarded, 'create news "0 9 * * MON" post_to=slack:#general docs=handbook', "U2", surface="slack"
    )
    assert ok.startswith("Created digest 'news'")


async def test_only_the_creator_or_an_admin_deletes_a_digest(guarded: DigestService) -> None:
    await handle_command(
        guarded, 'create news "0 9 * * MON" post_to=slack:#general docs=handbook', "U1", surface="slack"
    )
    denied = await handle_command(guarded, "delete news", "U2", surface="slack")
    assert (
        denied == "Only the creator of 'news' (U1) or a digest admin can delete it."
        and "news" in guarded.specs
    )
    assert (
        await handle_command(guarded, "delete news", "UADMIN", surface="slack")
    ) == "Deleted digest 'news'."
    await handle_command(
        guarded, 'create news "0 9 * * MON" post_to=slack:#general docs=handbook', "U1", surface="slack"
    )
    assert (await handle_command(guarded, "delete news", "U1", surface="slack")) == "Deleted digest 'news'."
    # Every change is audited (who, what); the refused delete changed nothing and is not.
    changes = [(e.user, e.action, e.question) for e in guarded.audited]  # type: ignore[attr-defined]
    assert changes == [
        ("U1", "digest.create", "news → slack:#general"),
        ("UADMIN", "digest.delete", "news"),
        ("U1", "digest.create", "news → slack:#general"),
        ("U1", "digest.delete", "news"),
    ]


async def test_a_run_is_refused_when_the_channel_lost_its_grant(guarded: DigestService) -> None:
    await handle_command(
        guarded, 'create pay "0 9 * * MON" post_to=slack:#hr docs=salaries', "U1", surface="slack"
    )
    guarded.settings.slack.channels.pop("#hr")  # the operator took the grant away
    run = await guarded.run("pay")
    assert run is not None and run.status == "failed" and "docs source 'salaries'" in (run.reason or "")
    # Nothing reached #hr; only the creator is told why, in one sentence.
    [(to, told)] = guarded.posters["slack"].posts  # type: ignore[attr-defined]
    assert to == "U1" and told.startswith("The digest 'pay'") and "was not posted" in told
