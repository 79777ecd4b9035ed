"""`hearth tables list | ask | query`: questions and SQL over the configured table sources."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from core.contracts import Answer
from core.errors import TableError
from core.tables.render import text_table
from core.tables.service import TableService, table_json
from server.cli import State, json_option, pass_state

T = TypeVar("T")


def _acl(tokens: tuple[str, ...]) -> frozenset[str] | None:
    return frozenset(tokens) if tokens else None


_ACL_OPTION = click.option(
    "--acl",
    "acl",
    multiple=True,
    metavar="TOKEN",
    help="Act as someone holding only these ACL tokens (repeatable). "
    "Default: the operator, who sees every source.",
)


def _run(state: State, with_model: bool, work: Callable[[TableService], Awaitable[T]]) -> T:
    """Build the service (with the model only when needed), run ``work``, close everything."""

    async def main() -> T:
        settings = state.settings
        if not settings.tables:
            raise TableError(
                "No table sources are configured — add a 'tables:' list to hearth.yaml (see the README)."
            )
        if with_model:
            from core.engine import build_assistant

            assistant = build_assistant(settings)
            service = assistant.tables or TableService(settings, assistant.router, assistant.prompts)
            try:
                return await work(service)
            finally:
                await service.aclose()
                await assistant.aclose()
        service = TableService(settings, router=None)
        try:
            return await work(service)
        finally:
            await service.aclose()

    return asyncio.run(main())


def render_answer(answer: Answer) -> str:
    """The readable form: the sentence and SQL, the table, then notes, files and the model line."""
    part = answer.table
    assert part is not None, "a table command answers with a table"
    lines = [answer.text, f"SQL: {part.sql}", ""]
    if part.columns:
        lines += [text_table(part.columns, part.rows, max_rows=part.chat_rows), ""]
    lines += [f"Note: {n}" for n in answer.notices]
    if part.chart:
        lines.append(f"Chart: {part.chart}")
    served = f"{answer.model} ({answer.backend})" if answer.model else "no model"
    lines.append(f"— source {part.source}, {served}, {answer.timings_ms.get('total', 0) / 1000:.1f}s")
    return "\n".join(lines).rstrip()


@click.group()
def tables() -> None:
    """Ask questions of CSV, Parquet, SQLite and PostgreSQL tables (read-only, guarded SQL)."""


@tables.command("list")
@click.option("--source", default=None, help="Only this source.")
@json_option("Print JSON: one object per table.")
@_ACL_OPTION
@pass_state
def list_cmd(state: State, source: str | None, as_json: bool, acl: tuple[str, ...]) -> None:
    """Show each source's tables, columns and row counts."""
    errors: list[str] = []
    catalogs = _run(state, False, lambda s: s.catalogs(source=source, acl=_acl(acl), errors=errors))
    for error in errors:
        click.echo(f"Warning: {error}", err=True)
    if as_json:
        click.echo(
            json.dumps([t.as_dict() for c in catalogs for t in c.tables], ensure_ascii=False, indent=2)
        )
    for catalog in catalogs if not as_json else []:
        click.echo(
            f"{catalog.source} ({catalog.dialect}){': ' + catalog.description if catalog.description else ''}"
        )
        if not catalog.tables:
            click.echo("  (no tables)")
        for table in catalog.tables:
            rows = f"{table.rows:,} rows" if table.rows is not None else "rows unknown"
            click.echo(f"  {table.name} — {rows}")
            for col in table.columns:
                sample = f"  e.g. {', '.join(col.samples)}" if col.samples else ""
                click.echo(f"    {col.name} {col.type}{sample}")
    if errors:
        sys.exit(1)


@tables.command("ask")
@click.argument("question")
@click.option(
    "--source", default=None, help="Ask this source (default: the one whose tables fit the question best)."
)
@json_option("Print JSON: sql, columns, rows, answer, chart, csv, notices…")
@_ACL_OPTION
@pass_state
def ask_cmd(state: State, question: str, source: str | None, as_json: bool, acl: tuple[str, ...]) -> None:
    """Answer a question from the tables: the model writes SQL, the guard checks it, it runs read-only.

    QUESTION may be '-' to read it from standard input.
    """
    if question == "-":
        question = sys.stdin.read()
    answer = _run(state, True, lambda s: s.ask(question, source=source, acl=_acl(acl)))
    click.echo(
        json.dumps(table_json(answer), ensure_ascii=False, indent=2) if as_json else render_answer(answer)
    )


@tables.command("query")
@click.argument("sql")
@click.option("--source", required=True, help="The source to run the SQL on.")
@json_option("Print JSON: sql, columns, rows, answer, chart, csv, notices…")
@_ACL_OPTION
@pass_state
def query_cmd(state: State, sql: str, source: str, as_json: bool, acl: tuple[str, ...]) -> None:
    """Run your own SELECT through the guard (one read-only statement; a LIMIT is added). '-' reads stdin."""
    if sql == "-":
        sql = sys.stdin.read()
    answer = _run(state, False, lambda s: s.query(source, sql, acl=_acl(acl)))
    click.echo(
        json.dumps(table_json(answer), ensure_ascii=False, indent=2) if as_json else render_answer(answer)
    )
