"""What a table source holds (tables, column types, samples, row counts) and which tables fit a question.

Relevance is lexical on purpose: table and column names are short, few and exact, so a token
overlap between the question and each table's names, sample values and description picks the
tables worth the prompt's space without loading an embedder::

    ranked = rank_tables("how many tickets did each team close?", tables)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from core.jsontypes import JsonObject


@dataclass(frozen=True)
class ColumnInfo:
    """One column: its name, its database type, and a few example values (text-like columns only)."""

    name: str
    type: str
    samples: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableInfo:
    """One table or view of a source."""

    source: str
    name: str
    columns: tuple[ColumnInfo, ...]
    rows: int | None = None

    def as_dict(self) -> JsonObject:
        """JSON form used by `hearth tables list --json`."""
        return {
            "source": self.source,
            "table": self.name,
            "rows": self.rows,
            "columns": [{"name": c.name, "type": c.type, "samples": list(c.samples)} for c in self.columns],
        }

    def ddl(self, quote: str = '"') -> str:
        """A compact CREATE TABLE line with sample values as comments: the form code models know best."""
        cols = []
        for c in self.columns:
            name = c.name if _PLAIN.fullmatch(c.name) else f"{quote}{c.name}{quote}"
            note = f" /* e.g. {', '.join(repr(_comment_safe(s)) for s in c.samples)} */" if c.samples else ""
            cols.append(f"{name} {c.type or 'TEXT'}{note}")
        rows = f" -- {self.rows:,} rows" if self.rows is not None else ""
        return f"CREATE TABLE {self.name} ({', '.join(cols)});{rows}"


@dataclass
class SourceCatalog:
    """The tables of one source, as described when the catalog was last read."""

    source: str
    dialect: str
    tables: list[TableInfo] = field(default_factory=list)
    description: str = ""

    def names(self) -> set[str]:
        """Lower-case table names the guard lets queries read."""
        return {t.name.lower() for t in self.tables}


# Rows of one catalog query, or None when the database refused it (no rights, an unreadable file…).
CatalogQuery = Callable[[str], Sequence[Sequence[object]] | None]


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (SQLite, DuckDB and PostgreSQL quote alike)."""
    return '"' + name.replace('"', '""') + '"'


def read_tables(
    source: str,
    layout: Iterable[tuple[str, str, Sequence[tuple[str, str]]]],
    query: CatalogQuery,
    *,
    samples: int,
    textish: Sequence[str],
    sample_sql: str,
) -> list[TableInfo]:
    """Each table of ``layout`` (name, quoted SQL name, [(column, type)]) with its row count and samples.

    ``sample_sql`` is the dialect's distinct-values query with ``{table}``, ``{column}`` and ``{n}``;
    samples are read for columns whose type contains one of ``textish`` (any case) or has no type.
    """
    marks = [t.upper() for t in textish]
    tables = []
    for name, sql_name, columns in layout:
        counted = query(f"SELECT count(*) FROM {sql_name}")
        count = counted[0][0] if counted else None
        infos = []
        for column, typ in columns:
            vals: tuple[str, ...] = ()
            if samples and (not typ or any(t in typ.upper() for t in marks)):
                got = query(sample_sql.format(table=sql_name, column=quote_ident(column), n=int(samples)))
                vals = tuple(str(r[0])[:40] for r in got or ())
            infos.append(ColumnInfo(column, typ, vals))
        tables.append(TableInfo(source, name, tuple(infos), count if isinstance(count, int) else None))
    return tables


def _comment_safe(text: str) -> str:
    """A sample value that cannot end the SQL comment it is shown in."""
    return " ".join(text.replace("*/", "* /").replace("/*", "/ *").split())


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[A-Za-z0-9]+")
_STOP = frozenset(
    "a an the of in on at to for by per and or is are was were be did do does how many much what which who "
    "show me list give each every all with from last this that than top most least".split()
)


def tokens(text: str) -> set[str]:
    """Lower-case word stems of ``text`` (snake_case and camelCase split, plural 's' dropped)."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("_", " ")
    out: set[str] = set()
    for word in _WORD.findall(spaced.lower()):
        if word in _STOP or len(word) < 2:
            continue
        out.add(_stem(word))
    return out


def _stem(word: str) -> str:
    """A crude stem that maps close/closes/closed and invoice/invoices to one form."""
    for suffix in ("ies", "es", "s", "ed", "ing"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def score_table(question: set[str], table: TableInfo, description: str = "") -> float:
    """How strongly a question's words point at ``table``."""
    name = tokens(table.name)
    columns: set[str] = set()
    samples: set[str] = set()
    for c in table.columns:
        columns |= tokens(c.name)
        for s in c.samples:
            samples |= tokens(s)
    return (
        3.0 * len(question & name)
        + 1.0 * len(question & columns)
        + 0.5 * len(question & samples)
        + 0.5 * len(question & tokens(description))
    )


def rank_tables(
    question: str, tables: Sequence[TableInfo], description: str = ""
) -> list[tuple[float, TableInfo]]:
    """Tables ordered by relevance to ``question`` (stable for ties, so config order breaks them)."""
    q = tokens(question)
    scored = [(score_table(q, t, description), i, t) for i, t in enumerate(tables)]
    scored.sort(key=lambda x: (-x[0], x[1]))
    return [(s, t) for s, _, t in scored]


def schema_for_prompt(question: str, catalog: SourceCatalog, *, max_tables: int, budget_chars: int) -> str:
    """The CREATE TABLE lines of the tables most relevant to ``question`` that fit ``budget_chars``."""
    ranked = rank_tables(question, catalog.tables, catalog.description)
    relevant = [t for s, t in ranked if s > 0] or [t for _, t in ranked]
    lines: list[str] = []
    used = 0
    for table in relevant[:max_tables]:
        line = table.ddl()
        if used + len(line) > budget_chars:
            # Drop sample values before dropping the table.
            bare = TableInfo(
                table.source, table.name, tuple(ColumnInfo(c.name, c.type) for c in table.columns), table.rows
            )
            line = bare.ddl()
            if used + len(line) > budget_chars:
                if lines:
                    break
                line = line[:budget_chars]
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)
