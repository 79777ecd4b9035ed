"""`hearth digest list | run NAME [--dry-run] | history NAME`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypedDict, TypeVar
from zoneinfo import ZoneInfo

import click

from core.assistant import Assistant
from core.db import Database
from core.digests.service import DigestService
from core.digests.store import RunRecord
from core.intake import Intake
from core.intake_metrics import METRICS
from server.cli import State, json_option, pass_state

T = TypeVar("T")


class _Listed(TypedDict):
    """One digest as ``hearth digest list --json`` prints it."""

    name: str
    schedule: str
    timezone: str
    next_run: str
    post_to: list[str]
    last_run: str
    origin: str


async def _with_service(
    state: State, fn: Callable[[DigestService], Awaitable[T]], *, engine: bool = False, post: bool = False
) -> T:
    """Open a service (no scheduling) on the state DB, optionally with the engine and posters."""
    from server.digests import build_chat_activity, build_posters, close_posters

    settings = state.settings
    posters = build_posters(settings) if post else {}
    db = Database(settings.database_url)
    # Running a digest by hand reads the same inputs as the scheduler, chat activity included.
    chat = build_chat_activity(settings) if engine else None
    assistant: Assistant | None = None
    # Summaries pass the core's front door, as in `hearth serve` (limits, metrics); the engine comes later.
    intake = Intake(
        settings, lambda: assistant, observers=[METRICS], not_ready=lambda: "the model is still loading"
    )
    service = DigestService(
        settings, None, posters, db, backoff=(2.0, 10.0, 30.0), chat_activity=chat, summarise=intake.run
    )
    try:
        await service.open()
        if engine:
            from core.engine import build_assistant

            assistant = await asyncio.to_thread(build_assistant, settings)
            service.assistant = assistant
        return await fn(service)
    finally:
        await close_posters(posters)
        if service.assistant is not None:
            await service.assistant.aclose()
        await db.aclose()


def _local(moment: datetime | None, tz: str) -> str:
    return f"{moment.astimezone(ZoneInfo(tz)):%a %Y-%m-%d %H:%M} {tz}" if moment else "never"


def _describe(run: RunRecord) -> str:
    parts = [
        f"{k} {d.status}"
        + (f" after {d.attempts} attempts" if d.attempts > 1 else "")
        + (f" ({d.error})" if d.error and d.status != "posted" else "")
        for k, d in run.deliveries.items()
    ]
    return "; ".join(parts)


@click.group()
def digest() -> None:
    """Scheduled digests: list them, run one now, see past runs."""


@digest.command("list")
@json_option()
@pass_state
def list_cmd(state: State, as_json: bool) -> None:
    """Each digest with its schedule, destinations and next run."""

    async def work(service: DigestService) -> list[_Listed]:
        rows: list[_Listed] = []
        for name in sorted(service.specs):
            spec = service.specs[name]
            last = await service.store.history(name, 1)
            rows.append(
                {
                    "name": name,
                    "schedule": spec.schedule,
                    "timezone": spec.timezone,
                    "next_run": _local(service.next_run(name), spec.timezone),
                    "post_to": [f"{s}:{d}" for s, d in spec.destinations],
                    "last_run": f"{last[0].fire_time} {last[0].status}" if last else "never",
                    "origin": f"chat ({service.created_by[name]})"
                    if name in service.created_by
                    else "hearth.yaml",
                }
            )
        return rows

    rows = asyncio.run(_with_service(state, work))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No digests. Add one under 'digests:' in hearth.yaml (see the README).")
        return
    for row in rows:
        click.echo(f"{row['name']}  {row['schedule']} ({row['timezone']})  next: {row['next_run']}")
        click.echo(f"    to: {', '.join(row['post_to'])}   last: {row['last_run']}   from: {row['origin']}")


@digest.command("run")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Print the digest instead of posting it (records nothing).")
@pass_state
def run_cmd(state: State, name: str, dry_run: bool) -> None:
    """Run digest NAME now and post it (or print it with --dry-run)."""

    async def check(service: DigestService) -> None:
        service.spec(name)

    async def work(service: DigestService) -> RunRecord | None:
        return await service.run(name, dry_run=dry_run)

    asyncio.run(_with_service(state, check))  # an unknown name fails before the model loads
    run = asyncio.run(_with_service(state, work, engine=True, post=not dry_run))
    if run is None:
        click.echo(f"'{name}' is already running or has just run; nothing was posted again.", err=True)
        raise SystemExit(1)
    if dry_run:
        click.echo(run.text or "")
        click.echo(
            f"\n(dry run: nothing posted; period {run.since} – {run.until}"
            + ("; it would be skipped: no changes" if run.status == "skipped" else "")
            + ")",
            err=True,
        )
    else:
        detail = _describe(run)
        click.echo(f"{name}: {run.status}" + (f" — {detail}" if detail else ""))
    if run.reason:
        click.echo(f"Note: {run.reason}", err=True)
    if run.status in ("failed", "partial"):
        raise SystemExit(1)


@digest.command("history")
@click.argument("name")
@click.option("--limit", default=20, show_default=True, help="Runs to show.")
@json_option()
@pass_state
def history_cmd(state: State, name: str, limit: int, as_json: bool) -> None:
    """Past runs of NAME, newest first, with each destination's outcome."""
    runs = asyncio.run(_with_service(state, lambda s: s.history(name, limit)))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "fire_time": r.fire_time,
                        "trigger": r.trigger,
                        "status": r.status,
                        "claims": r.claims,
                        "started_at": datetime.fromtimestamp(r.started_at, UTC).isoformat(timespec="seconds"),
                        "since": r.since,
                        "until": r.until,
                        "reason": r.reason,
                        "notes": r.notes,
                        "deliveries": {k: vars(d) for k, d in r.deliveries.items()},
                    }
                    for r in runs
                ],
                indent=2,
            )
        )
        return
    if not runs:
        click.echo(f"'{name}' has not run yet.")
        return
    for r in runs:
        click.echo(f"{r.fire_time}  {r.trigger:<8} {r.status:<8} {_describe(r)}")
        if r.reason:
            click.echo(f"    reason: {r.reason}")
