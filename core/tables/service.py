"""Questions over tables, end to end: pick the source and tables, write SQL, guard it, run it, present it.

::

    service = TableService(settings, router, prompts)
    answer = await service.ask("How many tickets did each team close?", acl=frozenset({"public"}))
    answer.text, answer.table    # one sentence; the TablePart (sql, columns, rows, chart, csv)
    table_json(answer)           # {"sql", "columns", "rows", "answer", "chart", …}
    await service.query("tickets", "SELECT count(*) FROM tickets")   # SQL a person wrote, same guard
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from pathlib import Path
from typing import Any

from core.contracts import Answer, TablePart
from core.errors import SQLRejected, TableError
from core.llm.base import GenOptions, Priority, Usage, collect
from core.llm.router import Router
from core.prompts.registry import PromptRegistry
from core.refusals import require_text
from core.tables.catalog import SourceCatalog, rank_tables, schema_for_prompt, tokens
from core.tables.config import TablesConfigured, TableSourceSpec
from core.tables.guard import GuardedSQL, guard_sql
from core.tables.render import chart_title, draw_chart, json_rows, prune_results, summary, write_csv
from core.tables.sources import QueryFailed, QueryResult, TableSource, make_source, megabytes, run_query
from core.tables.sql_text import extract_sql

log = logging.getLogger(__name__)

_MAX_QUESTION_CHARS = 2000
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TEMPLATE_CHARS = 700  # the template's own text around the schema and question
_CHARS_PER_TOKEN = 3


class NotSQL(TableError):
    """The model's reply held no SQL query."""


def table_json(answer: Answer) -> dict[str, Any]:
    """The JSON contract of `hearth tables ask --json` and POST /v1/tables/ask (extend it, never break it)."""
    part = answer.table
    assert part is not None, "not a table answer"
    return {
        "sql": part.sql,
        "columns": list(part.columns),
        "rows": [list(r) for r in part.rows],
        "answer": answer.text,
        "chart": str(part.chart) if part.chart else None,
        "csv": str(part.csv) if part.csv else None,
        "source": part.source,
        "notices": list(answer.notices),
        "backend": answer.backend,
        "model": answer.model,
        "timings_ms": {k: round(v, 1) for k, v in answer.timings_ms.items()},
    }


def worked_examples(question: str, catalog: SourceCatalog) -> list[dict[str, str]]:
    """Two question/SQL pairs over the most relevant table (base models follow patterns, not orders)."""
    ranked = rank_tables(question, catalog.tables, catalog.description)
    if not ranked:
        return []
    table = ranked[0][1]
    examples = [
        {
            "question": f"How many rows does {table.name} have?",
            "sql": f"SELECT COUNT(*) AS n FROM {table.name}",
        }
    ]
    label = next(
        (c for c in table.columns if c.samples and not any(t in c.type.upper() for t in ("DATE", "TIME"))),
        None,
    )
    if label is not None and _PLAIN_NAME.fullmatch(label.name):
        examples.append(
            {
                "question": f"How many {table.name} are there per {label.name}?",
                "sql": f"SELECT {label.name}, COUNT(*) AS n FROM {table.name} "
                f"GROUP BY {label.name} ORDER BY n DESC",
            }
        )
    return examples


def may_read(spec: TableSourceSpec, acl: frozenset[str] | None) -> bool:
    """Whether someone holding ``acl`` may query ``spec`` (``None`` is the operator)."""
    return acl is None or bool(set(spec.acl) & acl)


class TableService:
    """Catalog, text-to-SQL with repair, guarded execution and rendering over the configured sources."""

    def __init__(
        self,
        settings: TablesConfigured,
        router: Router | None,
        prompts: PromptRegistry | None = None,
        *,
        sources: dict[str, TableSource] | None = None,
    ) -> None:
        self.settings = settings
        self.limits = settings.table_limits
        self.router = router
        self.prompts = prompts or PromptRegistry(settings.prompts.dir)
        self.specs = {s.name: s for s in settings.tables}
        self._sources: dict[str, TableSource] = dict(sources or {})
        self._catalogs: dict[str, tuple[float, SourceCatalog]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # --- sources and catalog -------------------------------------------------------------

    def visible(self, acl: frozenset[str] | None) -> list[TableSourceSpec]:
        """The sources ``acl`` may query, in config order."""
        return [s for s in self.specs.values() if may_read(s, acl)]

    def spec(self, name: str, acl: frozenset[str] | None) -> TableSourceSpec:
        """The source called ``name`` if ``acl`` may read it (others are reported as unknown)."""
        spec = self.specs.get(name)
        if spec is None or not may_read(spec, acl):
            names = ", ".join(s.name for s in self.visible(acl)) or "none"
            raise TableError(f"Unknown table source '{name}'; available: {names}")
        return spec

    def source(self, name: str) -> TableSource:
        """The live source object for a configured name."""
        if name not in self._sources:
            self._sources[name] = make_source(self.specs[name], self.settings)
        return self._sources[name]

    async def catalog(self, name: str, *, refresh: bool = False) -> SourceCatalog:
        """The tables of source ``name`` (cached for ``table_limits.catalog_ttl_s``)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            cached = self._catalogs.get(name)
            if cached and not refresh and time.monotonic() - cached[0] < self.limits.catalog_ttl_s:
                return cached[1]
            source = self.source(name)
            tables = await asyncio.to_thread(source.describe, self.limits.samples)
            catalog = SourceCatalog(name, source.dialect, tables, self.specs[name].description)
            self._catalogs[name] = (time.monotonic(), catalog)
            return catalog

    async def catalogs(
        self,
        *,
        source: str | None = None,
        acl: frozenset[str] | None = None,
        errors: list[str] | None = None,
    ) -> list[SourceCatalog]:
        """Catalogs of one source or of every source ``acl`` may read.

        With ``errors`` given, a source that cannot be read is skipped and its reason appended
        there (one broken database should not take the others down); without, the first failure raises.
        """
        specs = [self.spec(source, acl)] if source else self.visible(acl)
        results = await asyncio.gather(*(self.catalog(s.name) for s in specs), return_exceptions=True)
        catalogs: list[SourceCatalog] = []
        for spec, result in zip(specs, results, strict=True):
            if isinstance(result, SourceCatalog):
                catalogs.append(result)
            elif isinstance(result, TableError) and errors is not None:
                log.warning("table source %s skipped: %s", spec.name, result)
                errors.append(str(result))
            elif isinstance(result, BaseException):
                raise result
        return catalogs

    def _no_sources(self, acl: frozenset[str] | None) -> TableError:
        if not self.specs:
            return TableError(
                "No table sources are configured — add a 'tables:' list to hearth.yaml (see the README).",
                key="tables_unavailable",
            )
        return TableError(
            "You do not have access to any table source; ask the operator to add you to one.",
            key="tables_no_access",
        )

    # --- ask -----------------------------------------------------------------------------

    async def ask(
        self,
        question: str,
        *,
        source: str | None = None,
        acl: frozenset[str] | None = None,
        priority: Priority = Priority.CHAT,
        request_id: str = "",
    ) -> Answer:
        """Answer ``question`` from the tables ``acl`` may read: model SQL, guarded, run, rendered."""
        started = time.perf_counter()
        text = " ".join(question.split())
        require_text(text, _MAX_QUESTION_CHARS)
        if self.router is None:
            raise TableError(
                "No model is available for table questions — use 'hearth tables query' with SQL instead."
            )
        if source is None and not self.visible(acl):
            raise self._no_sources(acl)
        skipped: list[str] = []
        catalogs = await self.catalogs(source=source, acl=acl, errors=None if source else skipped)
        if not catalogs:
            raise (
                TableError(f"No table source could be read: {skipped[0]}")
                if skipped
                else self._no_sources(acl)
            )
        catalog = self._pick(text, catalogs)
        if not catalog.tables:
            raise TableError(f"Table source '{catalog.source}' has no tables to query.")
        timings = {"catalog": (time.perf_counter() - started) * 1000}
        result, guarded, backend, model = await self._write_and_run(text, catalog, priority, timings)
        answer = await self._present(catalog.source, guarded, result, text)
        answer.backend, answer.model, answer.request_id = backend, model, request_id
        answer.notices.extend(f"Skipped a source: {reason}" for reason in skipped)
        timings["total"] = (time.perf_counter() - started) * 1000
        answer.timings_ms = timings
        return answer

    @staticmethod
    def _pick(question: str, catalogs: list[SourceCatalog]) -> SourceCatalog:
        """The source whose best table matches the question best (config order breaks ties)."""
        best, best_score = catalogs[0], -1.0
        q = tokens(question)
        for catalog in catalogs:
            ranked = rank_tables(question, catalog.tables, catalog.description)
            score = (ranked[0][0] if ranked else 0.0) + 0.5 * len(q & tokens(catalog.source))
            if score > best_score:
                best, best_score = catalog, score
        return best

    async def _write_and_run(
        self, question: str, catalog: SourceCatalog, priority: Priority, timings: dict[str, float]
    ) -> tuple[QueryResult, GuardedSQL, str, str]:
        """Ask the model for SQL; on a refusal or a database error send it back, at most ``repairs`` times."""
        assert self.router is not None
        n_ctx = self.settings.llm.local.n_ctx
        max_tokens = min(self.settings.llm.max_tokens, 256)
        budget = max(400, (n_ctx - max_tokens - 64) * _CHARS_PER_TOKEN - len(question) - _TEMPLATE_CHARS)
        schema = schema_for_prompt(
            question, catalog, max_tables=self.limits.prompt_tables, budget_chars=budget
        )
        examples = worked_examples(question, catalog)
        template = f"sql_{catalog.dialect}"
        previous: str | None = None
        error: TableError | None = None
        backend = model = ""
        for attempt in range(self.limits.repairs + 1):
            variables: dict[str, Any] = {
                "question": question,
                "schema": schema,
                "today": dt.date.today().isoformat(),
            }
            if catalog.description:
                variables["description"] = catalog.description
            if examples:
                variables["examples"] = examples
            if previous is not None:
                variables.update(previous_sql=previous[:600], error=str(error)[:300])
            rendered = self.prompts.render(template, **variables)
            options = GenOptions(
                max_tokens=max_tokens,
                temperature=0.0 if previous is None else 0.4,
                stop=list(rendered.stop),
                priority=priority,
                answer_prefix=rendered.answer_prefix,
                seed=self.settings.llm.local.seed,
            )
            t0 = time.perf_counter()
            output, final = await collect(self.router.stream(rendered.messages, options))
            timings["generation"] = timings.get("generation", 0.0) + (time.perf_counter() - t0) * 1000
            backend, model = final.backend or "local", final.model or ""
            sql = extract_sql(output, rendered.answer_prefix, catalog.dialect)
            log.info("table question attempt %d on %s: model wrote %r", attempt + 1, catalog.source, output)
            try:
                if sql is None:
                    raise NotSQL("The reply was not one valid SELECT query over the tables above.")
                guarded = guard_sql(
                    sql,
                    catalog.dialect,
                    max_rows=self.limits.max_rows,
                    tables=catalog.names(),
                    max_value_bytes=self.limits.max_result_bytes,
                )
                t0 = time.perf_counter()
                result = await run_query(
                    self.source(catalog.source),
                    guarded.sql,
                    max_rows=self.limits.max_rows,
                    timeout_s=self.limits.timeout_s,
                    max_bytes=self.limits.max_result_bytes,
                )
                timings["query"] = (time.perf_counter() - t0) * 1000
                return result, guarded, backend, model
            except (SQLRejected, QueryFailed, NotSQL) as exc:
                previous, error = (sql or output.strip() or "(nothing)"), exc
                log.info("attempt %d failed: %s", attempt + 1, exc)
        assert error is not None
        raise self._gave_up(previous or "", error)

    def _gave_up(self, sql: str, error: TableError) -> TableError:
        attempts = self.limits.repairs + 1
        if isinstance(error, NotSQL):
            return TableError(
                f"The model did not write a SQL query for this question ({attempts} tries) — rephrase it "
                "with the table and column names, or run your own SQL with 'hearth tables query'.",
                key="table_no_sql",
                attempts=attempts,
            )
        reason = str(error).rstrip(".")
        return TableError(
            f"Could not answer from the tables after {attempts} tries: {reason}. Last SQL: {sql}"
        )

    # --- query ---------------------------------------------------------------------------

    async def query(self, source: str, sql: str, *, acl: frozenset[str] | None = None) -> Answer:
        """Run SQL a person wrote on ``source``, through the same guard and limits."""
        started = time.perf_counter()
        spec = self.spec(source, acl)
        catalog = await self.catalog(spec.name)
        guarded = guard_sql(
            sql,
            catalog.dialect,
            max_rows=self.limits.max_rows,
            tables=catalog.names(),
            max_value_bytes=self.limits.max_result_bytes,
        )
        result = await run_query(
            self.source(spec.name),
            guarded.sql,
            max_rows=self.limits.max_rows,
            timeout_s=self.limits.timeout_s,
            max_bytes=self.limits.max_result_bytes,
        )
        answer = await self._present(spec.name, guarded, result, chart_title(result.columns, result.rows))
        answer.timings_ms = {"total": (time.perf_counter() - started) * 1000}
        return answer

    # --- presentation --------------------------------------------------------------------

    async def _present(self, source: str, guarded: GuardedSQL, result: QueryResult, title: str) -> Answer:
        """Sentence, chat table, CSV for long results, chart where it helps, notes on caps."""
        notices: list[str] = []
        n = len(result.rows)
        if result.bytes_capped:
            notices.append(
                f"The result is larger than {megabytes(self.limits.max_result_bytes)}; only the first "
                f"{n:,} rows are kept — select fewer or shorter columns, or add a filter."
            )
        elif result.more:
            notices.append(
                f"The result has more than {n:,} rows; only the first {n:,} are kept — "
                "add a filter or an aggregate."
            )
        elif guarded.limit_added and n >= guarded.limit:
            notices.append(
                f"Only the first {n:,} rows were fetched (LIMIT {guarded.limit:,} was added); "
                "there may be more."
            )
        results_dir = self.settings.path("results")
        csv_path: Path | None = None
        if n > self.limits.chat_rows:
            csv_path = await asyncio.to_thread(write_csv, results_dir, source, result.columns, result.rows)
            # The file's name, never the server's path: chat attaches the file, REST returns the rows.
            notices.append(
                f"Showing {self.limits.chat_rows} of {n:,} rows; all of them are in {csv_path.name}."
            )
        chart: Path | None = None
        try:
            chart = await asyncio.to_thread(
                draw_chart, results_dir, source, result.columns, result.rows, title
            )
        except Exception:  # noqa: BLE001 — a chart is a bonus; the answer stands without it
            log.warning("chart drawing failed", exc_info=True)
        if csv_path is not None or chart is not None:
            await asyncio.to_thread(self._prune, results_dir)
        sentence = summary(
            result.columns, result.rows, more=result.more or (guarded.limit_added and n >= guarded.limit)
        )
        part = TablePart(
            sql=guarded.sql,
            source=source,
            columns=list(result.columns),
            rows=json_rows(result.rows),
            chat_rows=self.limits.chat_rows,
            chart=chart,
            csv=csv_path,
        )
        return Answer(sentence, [], "none", "", Usage(), notices=notices, table=part)

    def _prune(self, results_dir: Path) -> None:
        """Keep <home>/results bounded in age and size (files just written are the newest: kept)."""
        try:
            pruned = prune_results(
                results_dir, keep_days=self.limits.results_keep_days, max_mb=self.limits.results_max_mb
            )
        except OSError as exc:  # pruning is housekeeping: the answer stands without it
            log.warning("could not prune %s: %s", results_dir, exc)
            return
        if pruned.files:
            log.info(
                "pruned %d old result file(s), %.1f MB, from %s",
                pruned.files,
                pruned.bytes / 2**20,
                results_dir,
            )

    async def aclose(self) -> None:
        """Close sources that keep connections open."""
        for source in self._sources.values():
            await asyncio.to_thread(source.close)
        self._sources.clear()
