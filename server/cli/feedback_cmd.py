"""`hearth feedback list|export`: the 👍/👎 people gave answers, with what was asked and answered."""

from __future__ import annotations

import asyncio
import csv
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from bot.slack.feedback import FeedbackStore, RatedAnswer
from core.db import Database
from core.errors import InputError
from server.cli import State, json_option, pass_state

_SPAN = re.compile(r"^(\d+)([mhdw])$")
_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
FIELDS = ("at", "vote", "user_id", "asker", "channel", "kind", "question", "answer", "model", "backend", "answer_id")


def since_epoch(span: str | None, now: float | None = None) -> float | None:
    """``7d`` / ``12h`` / ``30m`` / ``2w`` before now, as epoch seconds (None: all time)."""
    if span is None:
        return None
    match = _SPAN.match(span.strip())
    if match is None:
        raise InputError(f"--since takes a span such as 30m, 12h, 7d or 2w, not '{span}'.")
    return (time.time() if now is None else now) - int(match.group(1)) * _SECONDS[match.group(2)]


async def _rated(url: str, since: float | None, vote: int | None, limit: int | None) -> list[RatedAnswer]:
    db = Database(url)
    try:
        return await FeedbackStore(db).rated(since=since, vote=vote, limit=limit)
    finally:
        await db.aclose()


def _vote_filter(up: bool, down: bool) -> int | None:
    if up and down:
        raise InputError("Choose --up or --down, not both.")
    return 1 if up else -1 if down else None


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@click.group()
def feedback() -> None:
    """The votes people gave answers in Slack: list them, or export them as CSV."""


_since = click.option("--since", default=None, metavar="SPAN", help="Only votes newer than this: 30m, 12h, 7d, 2w.")
_up = click.option("--up", is_flag=True, help="Only 👍.")
_down = click.option("--down", is_flag=True, help="Only 👎 (the answers to look at first).")


@feedback.command("list")
@_since
@_up
@_down
@click.option("--limit", "-n", default=20, show_default=True, help="How many of the newest votes.")
@json_option("One JSON object per line.")
@pass_state
def list_votes(state: State, since: str | None, up: bool, down: bool, limit: int, as_json: bool) -> None:
    """Newest votes first, with the question, the answer and the model that gave it."""
    rows = asyncio.run(_rated(state.settings.database_url, since_epoch(since), _vote_filter(up, down), limit))
    if not rows:
        click.echo("No feedback yet." if since is None and not (up or down) else "No feedback matches.")
        return
    for row in rows:
        if as_json:
            click.echo(json.dumps({k: getattr(row, k) for k in FIELDS}, ensure_ascii=False))
            continue
        mark = "+1" if row.vote > 0 else "-1"
        served = f"{row.backend}/{row.model}" if row.backend else "-"
        click.echo(f"{_when(row.at)}  {mark}  {row.user_id:<12} {served:<28} {_short(row.question, 50)}")
        click.echo(f"{'':22}{_short(row.answer, 90)}")
    if not as_json:
        ups = sum(1 for r in rows if r.vote > 0)
        click.echo(f"\n{len(rows)} vote(s) shown: {ups} up, {len(rows) - ups} down.")


@feedback.command("export")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@_since
@_up
@_down
@pass_state
def export(state: State, path: Path, since: str | None, up: bool, down: bool) -> None:
    """Write every matching vote to PATH as CSV (UTF-8, one row per vote, newest first)."""
    rows = asyncio.run(_rated(state.settings.database_url, since_epoch(since), _vote_filter(up, down), None))
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        for row in rows:
            values = {k: getattr(row, k) for k in FIELDS}
            values["at"] = datetime.fromtimestamp(row.at, UTC).isoformat()
            writer.writerow([values[k] for k in FIELDS])
    tmp.replace(path)  # a reader never sees half a file
    click.echo(f"Wrote {len(rows)} vote(s) to {path}.")
