"""`hearth store info` and `hearth store migrate --to URL`: the vector store in use, and moving up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.config import Settings
from core.errors import InputError, RetrievalError
from core.jsontypes import JsonObject
from core.retrieval.migrate import MigrateReport, migrate, size_advice
from core.retrieval.owner import IndexClient, find_owner
from core.retrieval.store import ChunkStore, StoreInfo
from core.retrieval.stores import open_store
from server.cli import State, json_option, pass_state


@click.group()
def store() -> None:
    """The vector store: what is in use, and copying it to a Qdrant server."""


async def store_info(settings: Settings) -> StoreInfo:
    """The store in use (asked of the running `hearth serve` when it owns the store)."""
    owner = find_owner(settings)
    if owner is not None:
        data = (await IndexClient(owner).status()).get("store")
        if isinstance(data, dict):
            points, dim, disk = data.get("points"), data.get("dimension"), data.get("disk_bytes")
            kind = data.get("kind")
            return StoreInfo(
                kind if kind in ("edge", "local", "server") else "edge",  # type: ignore[arg-type]
                str(data.get("location", "")),
                int(points) if isinstance(points, int) else 0,
                int(dim) if isinstance(dim, int) else None,
                int(disk) if isinstance(disk, int) else None,
            )
    opened = open_store(settings)
    try:
        return await opened.info()
    finally:
        await opened.aclose()


@store.command("info")
@json_option("Print {kind, location, points, dimension, disk_bytes, advice}.")
@pass_state
def info(state: State, as_json: bool) -> None:
    """Which store is in use, how many chunks it holds, and whether it is time to move to a server."""
    found = asyncio.run(store_info(state.settings))
    fine, advice = size_advice(found)
    if as_json:
        data: JsonObject = {**found.as_dict(), "advice": advice, "fine": fine}
        click.echo(json.dumps(data, indent=2))
        return
    size = f", {found.disk_bytes / 1e6:.1f} MB on disk" if found.disk_bytes is not None else ""
    click.echo(f"{found.kind} store at {found.location}: {found.points} chunks{size}")
    click.echo(("" if fine else "consider moving: ") + advice)


def _target(settings: Settings, to: str) -> ChunkStore:
    if to.startswith(("http://", "https://")):
        return open_store(settings, url=to)
    path = to.removeprefix("edge:")
    if not path or "://" in path:
        raise InputError(f"'{to}' is neither a Qdrant URL (http://host:6333) nor a directory (edge:/path).")
    return open_store(settings, path=str(Path(path).expanduser().resolve()))


async def _migrate(settings: Settings, to: str, batch: int, console: Console) -> MigrateReport:
    if find_owner(settings) is not None:
        raise RetrievalError(
            "'hearth serve' owns the vector store — stop it, run 'hearth store migrate' again, then set "
            "store.url and start it (a copy that was interrupted resumes)."
        )
    source, target = open_store(settings), _target(settings, to)
    checkpoint = Path(settings.store_path) / f"{settings.store.collection}.migrate.json"
    bar = Progress(
        TextColumn("[bold]copying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("points"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = bar.add_task("copy", total=None)
    try:
        with bar:
            return await migrate(
                source,
                target,
                checkpoint,
                batch=batch,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    finally:
        await source.aclose()
        await target.aclose()


@store.command("migrate")
@click.option(
    "--to", "to", required=True, metavar="URL", help="A Qdrant server (http://host:6333) or edge:/dir."
)
@click.option(
    "--batch", default=256, show_default=True, type=click.IntRange(1, 10_000), help="Points per write."
)
@json_option("Print the migration report as JSON.")
@pass_state
def migrate_cmd(state: State, to: str, batch: int, as_json: bool) -> None:
    """Copy the index (vectors and payload) to a Qdrant server, in batches; an interrupted copy resumes.

    Uses store.api_key for the server. Afterwards set store.url to URL in hearth.yaml.
    """
    report = asyncio.run(_migrate(state.settings, to, batch, Console(stderr=True)))
    if as_json:
        click.echo(json.dumps(report.__dict__, indent=2))
        return
    resumed = f" (resumed after {report.resumed_from})" if report.resumed_from else ""
    click.echo(f"Copied {report.copied} points{resumed} to {report.target} in {report.seconds:.1f}s.")
    if to.startswith(("http://", "https://")):
        click.echo(
            f"Now set store.url: {to} in hearth.yaml (and store.api_key if it needs one), then restart."
        )
