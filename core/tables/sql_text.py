"""Find the SQL in what a model wrote: a code fence, prose around a query, or a base model's continuation.

A base model is primed with ``SELECT`` (the template's answer prefix) and continues from there; a
chat model writes a whole statement, often in a fence with a sentence around it. Both end up as
one statement sqlglot can parse, or None::

    extract_sql(" team, count(*) FROM tickets GROUP BY team;\\n-- next", "SELECT", "sqlite")
    # 'SELECT team, count(*) FROM tickets GROUP BY team'
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_START = re.compile(r"\b(SELECT|WITH)\b", re.I)
_MAX_TRIMMED_WORDS = 8
_OTHER_STATEMENT = re.compile(
    r"\s*(INSERT|UPDATE|DELETE|MERGE|REPLACE|UPSERT|DROP|CREATE|ALTER|TRUNCATE|PRAGMA|ATTACH|DETACH|COPY|SET|"
    r"RESET|CALL|EXEC|EXECUTE|DO|GRANT|REVOKE|VACUUM|INSTALL|LOAD|EXPORT|IMPORT|BEGIN|COMMIT|ROLLBACK|LOCK|"
    r"ANALYZE|EXPLAIN|SHOW|DESCRIBE|SUMMARIZE|CHECKPOINT|VALUES|TABLE)\b",
    re.I,
)
_QUERY_TYPES = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery)


def _parses(candidate: str, dialect: str) -> str | None:
    """``candidate`` if sqlglot reads it as one query over at least one table; else None."""
    text = candidate.strip().rstrip(";").strip()
    if not text:
        return None
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except (ParseError, TokenError, ValueError):
        return None
    # A query that reads no table cannot answer a question about the data ("SELECT I cannot").
    if len(statements) == 1 and isinstance(statements[0], _QUERY_TYPES) and statements[0].find(exp.Table):
        return text
    return None


def _shrink(candidate: str, dialect: str) -> str | None:
    """The longest leading part of ``candidate`` (cut at ';' or line ends) that parses as a query."""
    first = candidate.split(";", 1)[0]
    if (ok := _parses(first, dialect)) is not None:
        return ok
    lines = first.splitlines()
    for end in range(len(lines) - 1, 0, -1):
        if (ok := _parses("\n".join(lines[:end]), dialect)) is not None:
            return ok
    # Small models often run a valid query into a broken tail ("ORDER BY n, COUNT(*) AS n"):
    # drop trailing words, a few at most, until what is left parses.
    words = first.split()
    for end in range(len(words) - 1, max(1, len(words) - _MAX_TRIMMED_WORDS) - 1, -1):
        if (ok := _parses(" ".join(words[:end]), dialect)) is not None:
            return ok
    return None


def extract_sql(output: str, prefix: str, dialect: str) -> str | None:
    """The query in a model's ``output`` (continuing ``prefix``), or None when there is none."""
    text = output.replace("<end_of_turn>", "").strip()
    fenced = _FENCE.search(text)
    candidates: list[str] = []
    if fenced:
        candidates.append(fenced.group(1))
    starts_with_query = _START.match(text) is not None or text.startswith("(")
    if prefix and not starts_with_query and not fenced and not _OTHER_STATEMENT.match(text):
        candidates.append(f"{prefix} {text}")
    if starts_with_query:
        candidates.append(text)
    found = _START.search(text)
    if found and not starts_with_query:
        candidates.append(text[found.start() :])
    for candidate in candidates:
        if (sql := _shrink(candidate, dialect)) is not None:
            return sql
    # A statement that is not a query (DELETE…, PRAGMA…) is passed on whole, so the guard refuses
    # it with its reason instead of it being mistaken for prose.
    for candidate in (fenced.group(1) if fenced else "", text):
        if _OTHER_STATEMENT.match(candidate):
            return candidate.strip()
    return None
