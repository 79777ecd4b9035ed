"""The SQL guard: only one read-only SELECT gets through, rewritten from its parsed form.

The guard parses with sqlglot in the source's dialect and checks the syntax tree, never the
text: exactly one statement; a SELECT, a WITH … SELECT, or a set operation of SELECTs; no
statement node that writes, changes settings or touches files anywhere in the tree (a DELETE
hidden in a CTE included); no function that reads files, reaches the network or controls the
server; only tables from the catalog (and the query's own CTEs). What runs is the SQL
*regenerated* from the checked tree, without comments, so the database never sees text the
guard did not understand. A LIMIT is added (or lowered) to ``max_rows``::

    guarded = guard_sql("SELECT team, count(*) FROM tickets GROUP BY 1", "sqlite", max_rows=1000,
                        tables={"tickets"})
    guarded.sql  # 'SELECT team, COUNT(*) FROM tickets GROUP BY 1 LIMIT 1000'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from core.errors import SQLRejected

log = logging.getLogger(__name__)

DIALECTS = ("sqlite", "duckdb", "postgres")

# Schema names a table may be qualified with and still mean the source's own tables.
_DEFAULT_SCHEMAS = {"sqlite": {"main"}, "duckdb": {"main"}, "postgres": {"public"}}


def _node_types(*names: str) -> tuple[type[exp.Expression], ...]:
    """The sqlglot node classes among ``names`` that this sqlglot version has."""
    return tuple(t for n in names if isinstance(t := getattr(exp, n, None), type))


# Statement kinds that are never allowed anywhere in the tree, with the words used in the reason.
_FORBIDDEN: list[tuple[tuple[type[exp.Expression], ...], str]] = [
    (_node_types("Insert", "Update", "Delete", "Merge", "TruncateTable"), "changes data"),
    (
        _node_types("Create", "Drop", "Alter", "Comment", "Grant", "Revoke", "Analyze"),
        "changes the schema or permissions",
    ),
    (_node_types("Pragma"), "is a PRAGMA"),
    (_node_types("Attach", "Detach", "Use"), "attaches or switches databases"),
    (_node_types("Copy", "Export", "LoadData"), "copies data to or from files"),
    (_node_types("Set", "SetItem"), "changes settings"),
    (_node_types("Install"), "installs or loads extensions"),
    (
        _node_types(
            "Transaction", "Commit", "Rollback", "Kill", "Declare", "Execute", "Cache", "Uncache", "Refresh"
        ),
        "controls transactions or the server",
    ),
    (_node_types("Describe", "Show", "Summarize"), "is not a SELECT"),
    (_node_types("Command"), "is a command the guard does not allow"),
    (_node_types("Into"), "writes its result into a table (SELECT … INTO)"),
    (_node_types("Lock"), "locks rows (FOR UPDATE / FOR SHARE)"),
]

# Functions that read or write files, reach the network, run SQL from strings, or control the
# server. Names are compared in lower case; 'x*' matches a prefix, '*x' a suffix.
_FORBIDDEN_FUNCTIONS: dict[str, frozenset[str]] = {
    "postgres": frozenset(
        {
            "pg_*",
            "lo_*",
            "dblink*",
            "query_to_xml*",
            "table_to_xml*",
            "cursor_to_xml*",
            "database_to_xml*",
            "schema_to_xml*",
            "query_to_xmlschema",
            "set_config",
            "nextval",
            "setval",
            "txid_current",
            "current_setting",
            "inet_server_addr",
            "inet_server_port",
            "ts_stat",  # runs the SQL text it is given
            "ts_rewrite",
            "binary_upgrade_*",
            "brin_*",
            "gin_clean_pending_list",
        }
    ),
    "duckdb": frozenset(
        {
            "read_*",
            "parquet_*",
            "sqlite_*",
            "postgres_*",
            "mysql_*",
            "iceberg_*",
            "delta_*",
            "duckdb_*",
            "*_scan",
            "arrow_*",
            "python_*",
            "glob",
            "sniff_csv",
            "getenv",
            "query",
            "query_table",
            "json_execute_serialized_sql",
            "from_substrait*",
            "get_substrait*",
            "which_secret",
            "load_extension",
            "current_setting",
            "csv_scan",
            "parquet_scan",
            "pragma_*",
            "checkpoint",
            "force_checkpoint",
        }
    ),
    "sqlite": frozenset(
        {
            "load_extension",
            "readfile",
            "writefile",
            "edit",
            "fts3_tokenizer",
            "fts5*",
            "sqlite_*",
            "pragma_*",
            "zipfile",
            "fsdir",
            "lsdir",
            "shell*",
            "system",
            "eval",
        }
    ),
}
# Functions whose result grows with a number in the call: repeat('x', 300000000) or
# printf('%300000000c', 'x') builds a value no answer can carry, and DuckDB's memory limit does
# not bound strings built that way, so a literal size over the result limit is refused up front.
_BUILDERS = frozenset(
    {"repeat", "lpad", "rpad", "pad", "printf", "format", "space", "zeroblob", "randomblob", "replicate"}
)
_FORMAT_WIDTH = re.compile(r"\d+")
# printf('%.*c', n, 'x'): a width or precision taken from an argument (SQLite's printf walks the
# whole width even when the value is over its length limit, so a computed one costs CPU).
_STAR_WIDTH = re.compile(r"%[-+ #0]*(?:\*|\d*\.\*)")


def _constant_int(node: object) -> int | None:
    """The value of an integer expression made only of literals (``1000*1000*300``), else None."""
    if isinstance(node, exp.Literal):
        if node.is_string:
            return None
        try:
            return int(float(node.this))
        except (TypeError, ValueError):
            return None
    if isinstance(node, (exp.Paren, exp.Cast)):
        return _constant_int(node.this)
    if isinstance(node, exp.Neg):
        value = _constant_int(node.this)
        return -value if value is not None else None
    if isinstance(node, (exp.Mul, exp.Add, exp.Sub, exp.Pow)):
        left, right = _constant_int(node.this), _constant_int(node.expression)
        if left is None or right is None:
            return None
        if isinstance(node, exp.Pow):
            return left ** min(right, 64) if abs(left) < 2**32 else None
        return (
            left * right
            if isinstance(node, exp.Mul)
            else left + right
            if isinstance(node, exp.Add)
            else left - right
        )
    return None


def _built_size(func: exp.Func) -> int:
    """The largest size a string-building call asks for with literals (0 when none is given)."""
    biggest = 0
    for value in func.args.values():
        for arg in value if isinstance(value, list) else [value]:
            number = _constant_int(arg)
            if number is not None:
                biggest = max(biggest, number)
            elif isinstance(arg, exp.Literal) and arg.is_string:  # a printf/format width
                biggest = max([biggest, *(int(w) for w in _FORMAT_WIDTH.findall(str(arg.this)))])
    return biggest


def _computed_star_width(func: exp.Func) -> bool:
    """A printf whose format takes a width from an argument (``%*d``) and has a non-literal argument."""
    args = [a for v in func.args.values() for a in (v if isinstance(v, list) else [v])]
    starred = any(
        isinstance(a, exp.Literal) and a.is_string and _STAR_WIDTH.search(str(a.this)) for a in args
    )
    return starred and any(
        isinstance(a, exp.Expression) and not isinstance(a, exp.Literal) and _constant_int(a) is None
        for a in args
    )


# Harmless functions matched by a prefix above, allowed by exact name.
_ALLOWED_FUNCTIONS = frozenset({"pg_typeof", "pg_size_pretty"})
# Table-valued functions that may appear in FROM (they generate rows, they touch nothing).
_TABLE_FUNCTIONS = frozenset({"generate_series", "exploding_generate_series", "range", "unnest", "explode"})


@dataclass(frozen=True)
class GuardedSQL:
    """A statement that passed the guard: the SQL to run and what the guard changed."""

    sql: str
    dialect: str
    limit_added: bool
    limit: int
    tables: tuple[str, ...]


def _fn_names(func: exp.Func, dialect: str) -> set[str]:
    """Every name a function node may be known by (as parsed, as sqlglot names it, as it will run)."""
    names = {func.sql_name().lower()}
    if isinstance(func, exp.Anonymous):
        names.add(str(func.this).lower())
    try:
        rendered = func.sql(dialect=dialect, comments=False)
    except Exception:  # noqa: BLE001 — rendering is best effort; the other names still count
        rendered = ""
    head = rendered.split("(", 1)[0].strip().strip('"').lower()
    if head:
        names.add(head.rsplit(".", 1)[-1].strip('"'))
    return names


def _denied(name: str, dialect: str) -> bool:
    if name in _ALLOWED_FUNCTIONS:
        return False
    for pattern in _FORBIDDEN_FUNCTIONS[dialect]:
        if pattern.endswith("*") and name.startswith(pattern[:-1]):
            return True
        if pattern.startswith("*") and name.endswith(pattern[1:]):
            return True
        if name == pattern:
            return True
    return False


def _parse_one(sql: str, dialect: str) -> exp.Expression:
    text = sql.strip()
    if not text:
        raise SQLRejected("The query is empty — write one SELECT statement.")
    if "\x00" in text:
        raise SQLRejected("The query contains a NUL byte; send plain SQL text.")
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except (ParseError, TokenError) as exc:
        log.debug("guard parse error: %s", exc)
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise SQLRejected(f"The query is not valid {dialect} SQL ({first}).") from exc
    if not statements:
        raise SQLRejected("The query is empty — write one SELECT statement.")
    if len(statements) > 1:
        raise SQLRejected(f"Only one statement is allowed; this text holds {len(statements)}.")
    statement = statements[0]
    if not isinstance(statement, exp.Expression):
        raise SQLRejected("The query could not be understood — write one SELECT statement.")
    return statement


def guard_sql(
    sql: str,
    dialect: str,
    *,
    max_rows: int,
    tables: Collection[str] | None = None,
    max_value_bytes: int | None = None,
) -> GuardedSQL:
    """Check ``sql`` and return the SQL to run; raise SQLRejected with a one-sentence reason.

    ``tables`` are the names the query may read (lower case; ``schema.table`` for tables outside
    the default schema); ``None`` skips that check (the database's own read-only mode still holds).
    ``max_value_bytes``: refuse string-building calls (``repeat``, ``lpad``, ``printf`` …) whose
    literal size is larger (``table_limits.max_result_bytes``).
    """
    if dialect not in DIALECTS:
        raise SQLRejected(f"Unknown SQL dialect '{dialect}'; available: {', '.join(DIALECTS)}.")
    root = _parse_one(sql, dialect)
    while isinstance(root, exp.Subquery) and not root.args.get("alias"):
        root = root.this
    if not isinstance(root, (exp.Select, exp.Union, exp.Intersect, exp.Except)):
        kind = root.key.upper() if root.key else type(root).__name__
        for types, why in _FORBIDDEN:
            if types and isinstance(root, types):
                raise SQLRejected(f"Only SELECT queries are allowed; this statement {why}.")
        raise SQLRejected(f"Only SELECT queries are allowed; this is a {kind} statement.")

    for node in root.walk():
        for types, why in _FORBIDDEN:
            if types and isinstance(node, types):
                raise SQLRejected(f"Only read-only SELECT queries are allowed; this query {why}.")
        if isinstance(node, exp.Func):
            for name in _fn_names(node, dialect):
                if _denied(name, dialect):
                    raise SQLRejected(
                        f"The function {name}() is not allowed: it can touch files, the network "
                        "or the server."
                    )
            names = _fn_names(node, dialect)
            if max_value_bytes is not None and names & _BUILDERS and _built_size(node) > max_value_bytes:
                raise SQLRejected(
                    f"The query builds a value of {_built_size(node):,} characters with "
                    f"{max(names & _BUILDERS, key=len)}(), more than a result may hold "
                    f"({max_value_bytes:,} bytes, table_limits.max_result_bytes) — ask for less."
                )
            if names & {"printf", "format"} and _computed_star_width(node):
                raise SQLRejected(
                    "printf() widths computed by the query (%*d, %.*s with a column or expression) "
                    "are not allowed — write the width out."
                )
    used = _check_tables(root, dialect, tables)
    limited, added, limit = _apply_limit(root, max_rows)
    return GuardedSQL(
        sql=limited.sql(dialect=dialect, comments=False),
        dialect=dialect,
        limit_added=added,
        limit=limit,
        tables=tuple(sorted(used)),
    )


def _check_tables(root: exp.Expression, dialect: str, allowed: Collection[str] | None) -> set[str]:
    """The catalog tables the query reads; reject file paths, other databases and unknown tables."""
    cte_names = {cte.alias_or_name.lower() for cte in root.find_all(exp.CTE)}
    used: set[str] = set()
    allowed_set = {a.lower() for a in allowed} if allowed is not None else None
    for table in root.find_all(exp.Table):
        target = table.this
        if isinstance(target, exp.Func):
            names = _fn_names(target, dialect)
            if not names & _TABLE_FUNCTIONS:
                raise SQLRejected(f"The table function {sorted(names)[0]}() is not allowed in FROM.")
            continue
        if not isinstance(target, exp.Identifier):
            raise SQLRejected("Only named tables may appear in FROM — no file paths or expressions.")
        name = target.name.lower()
        if table.args.get("catalog") is not None:
            raise SQLRejected(
                f"The query names another database ({table.catalog}); only this source's tables may be read."
            )
        schema = table.db.lower() if table.db else ""
        if not schema and name in cte_names:
            continue
        if "/" in name or "\\" in name or name.endswith((".csv", ".parquet", ".json", ".db", ".gz")):
            raise SQLRejected(
                f"Reading files directly ('{target.name}') is not allowed; query the configured tables."
            )
        qualified = f"{schema}.{name}" if schema and schema not in _DEFAULT_SCHEMAS[dialect] else name
        if allowed_set is not None and qualified not in allowed_set:
            known = ", ".join(sorted(allowed_set)) or "none"
            raise SQLRejected(
                f"The query reads a table that does not exist here ('{qualified}'); available: {known}."
            )
        used.add(qualified)
    return used


def _literal_int(node: exp.Expression | None) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return int(node.this)
        except ValueError:
            return None
    return None


def _apply_limit(root: exp.Expression, max_rows: int) -> tuple[exp.Expression, bool, int]:
    """Add a LIMIT when missing and lower one above ``max_rows``."""
    current = root.args.get("limit")
    count: int | None = None
    if isinstance(current, exp.Limit):
        count = _literal_int(current.expression)
    elif isinstance(current, exp.Fetch):
        count = _literal_int(current.args.get("count"))
    if count is not None and 0 <= count <= max_rows:
        return root, False, count
    if isinstance(current, exp.Fetch):
        root.set("limit", None)
    limited = root.limit(max_rows, copy=True)  # type: ignore[attr-defined]
    return limited, current is None, max_rows
