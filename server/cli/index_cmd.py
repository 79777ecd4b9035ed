"""`hearth index`, `hearth search`, `hearth sources list|types`, `hearth eval retrieval`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.config import Settings
from core.contracts import Hit
from core.retrieval.owner import IndexClient, find_owner
from server.cli import State, json_option, pass_state

if TYPE_CHECKING:
    from core.retrieval.sync import SourceReport

# The indexer, the store backends and the embedder are imported where a command needs them: a
# `hearth search` that goes through `hearth serve` uses none of them (bench/search_cli.py).


class BarProgress:
    """A rich progress bar on stderr (only drawn on a terminal)."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task: int | None = None

    def __enter__(self) -> BarProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.bar.stop()

    def begin(self, source: str, total_chunks: int) -> None:
        """A new bar per source."""
        self.task = self.bar.add_task(source, total=total_chunks)

    def advance(self, chunks: int) -> None:
        """Move the current bar."""
        if self.task is not None:
            self.bar.advance(self.task, chunks)  # type: ignore[arg-type]


def summary_lines(reports: Sequence[SourceReport]) -> list[str]:
    """The human summary printed after indexing."""
    lines = []
    for r in reports:
        if r.error:
            lines.append(f"{r.source}: FAILED — {r.error}")
            continue
        lines.append(
            f"{r.source}: {r.added} added, {r.updated} updated, {r.deleted} deleted, "
            f"{r.unchanged} unchanged, {len(r.skipped)} skipped; {r.chunks} chunks in {r.seconds:.1f}s"
        )
        for uri, reason in r.skipped:
            lines.append(f"  skipped {uri}: {reason}")
    return lines


async def _index(
    settings: Settings, names: Sequence[str], rebuild: bool, console: Console
) -> list[SourceReport]:
    owner = find_owner(settings)
    if owner is not None:
        # A running `hearth serve` owns the embedded store: it does the work, we draw its progress.
        client = IndexClient(owner)
        if console.is_terminal:
            with BarProgress(console) as bar:
                return await client.index(names, bar, rebuild=rebuild)
        return await client.index(names, None, rebuild=rebuild)
    from core.retrieval.sync import Indexer

    indexer = Indexer(settings)
    try:
        if console.is_terminal:
            with BarProgress(console) as bar:
                return await indexer.sync(names, bar, rebuild=rebuild)
        return await indexer.sync(names, None, rebuild=rebuild)
    finally:
        await indexer.aclose()


@click.command()
@click.option("--source", "names", multiple=True, metavar="NAME", help="Index only this source (repeatable).")
@click.option(
    "--rebuild", is_flag=True, help="Drop the index and the sync state first (after changing the embedder)."
)
@json_option("Print the per-source summary as JSON.")
@pass_state
def index(state: State, names: tuple[str, ...], rebuild: bool, as_json: bool) -> None:
    """Index the configured document sources: new and changed docs are embedded, vanished ones removed.

    While `hearth serve` runs on the embedded store, the server does the indexing (this command
    shows its progress); otherwise this process opens the store itself.
    """
    console = Console(stderr=True)
    reports = asyncio.run(_index(state.settings, names, rebuild, console))
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], ensure_ascii=False, indent=2))
    else:
        for line in summary_lines(reports):
            click.echo(line)
    if any(r.error for r in reports):
        raise SystemExit(1)


async def _search(
    settings: Settings, query: str, k: int, acl: frozenset[str] | None, mode: str | None
) -> list[Hit]:
    owner = find_owner(settings)
    if owner is not None:
        return await IndexClient(owner).search(query, acl=acl, k=k, mode=mode)
    from core.retrieval.search import DocsRetriever

    retriever = DocsRetriever(settings)
    try:
        return await retriever.search(query, acl=acl, k=k, mode=mode)  # type: ignore[arg-type]
    finally:
        await retriever.aclose()


async def _user_grants(settings: Settings, user: str) -> frozenset[str]:
    from core.db import Database
    from server.auth import TokenStore

    db = Database(settings.database_url)
    try:
        return await TokenStore(db).grants_for(user)
    finally:
        await db.aclose()


@click.command()
@click.argument("query")
@click.option("--k", "k", default=5, show_default=True, type=click.IntRange(1, 100), help="Results to show.")
@json_option("Print [{rank, score, doc_id, uri, title, text, chunk_id}].")
@click.option(
    "--acl",
    "acl",
    multiple=True,
    metavar="TOKEN",
    help="Search as someone holding only these ACL tokens (repeatable). Default: the operator.",
)
@click.option(
    "--user",
    "user",
    default=None,
    metavar="ID",
    help="Search as this person: public, user:ID and the ACL tokens of their REST tokens (plus any --acl).",
)
@click.option(
    "--mode",
    type=click.Choice(["dense", "bm25", "rrf", "hybrid"]),
    default=None,
    help="Search mode (default: retrieval.mode): hybrid is the full pipeline, rrf the plain dense+BM25 fusion.",
)
@pass_state
def search(
    state: State, query: str, k: int, as_json: bool, acl: tuple[str, ...], user: str | None, mode: str | None
) -> None:
    """Show the chunks that best match QUERY, ranked."""
    tokens: frozenset[str] | None = frozenset(acl) if acl else None
    if user is not None:
        tokens = (tokens or frozenset()) | asyncio.run(_user_grants(state.settings, user))
    hits = asyncio.run(_search(state.settings, query, k, tokens, mode))
    if as_json:
        click.echo(json.dumps([h.as_dict(i) for i, h in enumerate(hits, 1)], ensure_ascii=False, indent=2))
        return
    if not hits:
        click.echo("No results (is the index built? run 'hearth index').")
    for i, h in enumerate(hits, 1):
        where = f" ({h.location})" if h.location else ""
        click.echo(f"{i}. [{h.score:.4f}] {h.title} — {h.uri}{where}")
        snippet = " ".join(h.text.split())
        click.echo(f"   {snippet[:240]}{'…' if len(snippet) > 240 else ''}")


@click.group()
def sources() -> None:
    """Document sources: list them with their sync status, or list connector types."""


@sources.command("list")
@json_option()
@pass_state
def sources_list(state: State, as_json: bool) -> None:
    """Each configured source, its document count and last sync."""
    from core.retrieval.sync import source_status

    rows = asyncio.run(source_status(state.settings))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No sources configured — add a 'sources:' list to hearth.yaml.")
        return
    table = Table("source", "type", "acl", "docs", "chunks", "skipped", "last sync")
    for r in rows:
        table.add_row(
            r["name"],
            r["type"],
            ", ".join(r["acl"]),
            str(r["docs"]),
            str(r["chunks"]),
            str(r["skipped"]),
            r["last_sync"] or "never",
        )
    Console().print(table)


@sources.command("types")
def sources_types() -> None:
    """The connector types a source can use."""
    from core.retrieval.connectors import CONNECTORS

    for name in CONNECTORS.names():
        click.echo(name)


@click.group(name="eval")
def eval_group() -> None:
    """Measure quality on a labelled set."""


async def _evaluate(settings: Settings, file: Path) -> dict[str, dict[str, float]]:
    from core.retrieval.evaluation import evaluate, load_queries
    from core.retrieval.owner import RemoteRetriever
    from core.retrieval.search import DocsRetriever

    queries = load_queries(file)
    owner = find_owner(settings)
    retriever = RemoteRetriever(owner) if owner is not None else DocsRetriever(settings)
    try:
        return await evaluate(retriever, queries)
    finally:
        await retriever.aclose()


@eval_group.command("retrieval")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@json_option('Print {"dense": {"recall@1": …, "recall@5": …, …}, "bm25": …, "rrf": …, "hybrid": …}.')
@pass_state
def eval_retrieval(state: State, file: Path, as_json: bool) -> None:
    """recall@1/@5, MRR@10 and nDCG@10 by page of dense, BM25, plain RRF and the full pipeline on FILE.

    FILE holds JSON lines {"query": …, "relevant": [doc id or uri, …]}; every method runs on the same index.
    """
    results = asyncio.run(_evaluate(state.settings, file))
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    from core.retrieval.evaluation import LABELS

    table = Table("mode", "recall@1", "recall@5", "MRR@10", "nDCG@10")
    for mode, m in results.items():
        table.add_row(
            f"{mode} ({LABELS[mode]})" if LABELS.get(mode, mode) != mode else mode,
            f"{m['recall@1']:.3f}",
            f"{m['recall@5']:.3f}",
            f"{m['mrr@10']:.3f}",
            f"{m['ndcg@10']:.3f}",
        )
    Console().print(table)
