"""Finding SQL in model output, picking relevant tables, and rendering results for chat."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pytest

from core.prompts.registry import PromptRegistry
from core.tables.catalog import ColumnInfo, SourceCatalog, TableInfo, rank_tables, schema_for_prompt, tokens
from core.tables.render import chart_kind, draw_chart, json_rows, summary, text_table, write_csv
from core.tables.service import worked_examples
from core.tables.sql_text import extract_sql


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            " team, count(*) FROM tickets GROUP BY team;\n-- Question: next",
            "SELECT team, count(*) FROM tickets GROUP BY team",
        ),
        ("SELECT a FROM t", "SELECT a FROM t"),
        ("select a from t;", "select a from t"),
        (
            "Here it is:\n```sql\nSELECT a FROM t WHERE x = 1;\n```\nThis counts.",
            "SELECT a FROM t WHERE x = 1",
        ),
        (
            "```\nWITH c AS (SELECT a FROM t) SELECT a FROM c\n```",
            "WITH c AS (SELECT a FROM t) SELECT a FROM c",
        ),
        ("```sql\nSELECT a FROM t", "SELECT a FROM t"),  # cut by a stop sequence before the closing fence
        ("The query is SELECT count(*) FROM t; hope it helps", "SELECT count(*) FROM t"),
        (
            " team, COUNT(*) AS n FROM tickets GROUP BY team ORDER BY team, COUNT(*) AS n",
            "SELECT team, COUNT(*) AS n FROM tickets GROUP BY team ORDER BY team, COUNT(*)",
        ),
        (
            " * FROM tickets\nWHERE status = 'open'\nand then some prose that is not sql",
            "SELECT * FROM tickets\nWHERE status = 'open'",
        ),
        ("DELETE FROM tickets", "DELETE FROM tickets"),  # passed on so the guard gives its reason
        ("<end_of_turn> count(*) FROM t", "SELECT count(*) FROM t"),
    ],
)
def test_extract_sql_finds_the_query(output: str, expected: str) -> None:
    assert extract_sql(output, "SELECT", "sqlite") == expected


@pytest.mark.parametrize(
    "output", ["", "I cannot help with that.", "42", "Sorry!\n\n\n", "SELECT 1", " 1 + 1"]
)
def test_extract_sql_returns_none_for_prose_and_table_less_output(output: str) -> None:
    assert extract_sql(output, "SELECT", "sqlite") is None


def _table(name: str, *cols: str, samples: dict[str, tuple[str, ...]] | None = None) -> TableInfo:
    samples = samples or {}
    return TableInfo("src", name, tuple(ColumnInfo(c, "TEXT", samples.get(c, ())) for c in cols), 10)


def test_tokens_split_names_and_drop_plurals_and_stop_words() -> None:
    assert tokens("How many TicketsClosed per team_name?") == tokens("ticket close team name")
    assert len(tokens("ticket close team name")) == 4
    for forms in (("close", "closes", "closed"), ("invoice", "invoices"), ("category", "categories")):
        assert len({frozenset(tokens(f)) for f in forms}) == 1


def test_relevant_tables_reach_the_prompt_and_others_stay_out() -> None:
    tables = [_table(f"misc_{i}", "a", "b") for i in range(30)]
    tables.insert(17, _table("invoices", "customer", "amount", "paid_on"))
    tables.insert(3, _table("customers", "name", "region", samples={"region": ("emea", "apac")}))
    catalog = SourceCatalog("src", "sqlite", tables)
    ranked = rank_tables("total invoice amount per customer", tables)
    assert [t.name for _, t in ranked[:2]] == ["invoices", "customers"]
    schema = schema_for_prompt(
        "invoice amount per customer in emea", catalog, max_tables=5, budget_chars=2000
    )
    assert "CREATE TABLE invoices" in schema and "CREATE TABLE customers" in schema
    assert "misc_" not in schema


def test_schema_fits_the_budget_by_dropping_samples_then_tables() -> None:
    big = _table("events", *[f"column_{i}" for i in range(40)], samples={"column_1": ("x" * 30, "y" * 30)})
    small = _table("event_types", "name")
    catalog = SourceCatalog("src", "sqlite", [big, small])
    schema = schema_for_prompt("events by type", catalog, max_tables=5, budget_chars=700)
    assert len(schema) <= 700 and "e.g." not in schema


def test_sample_values_cannot_close_the_comment_they_sit_in() -> None:
    evil = _table("t", "c", samples={"c": ("*/ DROP TABLE t; /*",)})
    assert "*/ DROP" not in evil.ddl()


def test_prompts_render_per_dialect_with_schema_examples_and_repair() -> None:
    registry = PromptRegistry()
    catalog = SourceCatalog(
        "s", "postgres", [_table("tickets", "team", "status", samples={"team": ("core",)})]
    )
    examples = worked_examples("tickets per team", catalog)
    assert examples[1]["sql"] == "SELECT team, COUNT(*) AS n FROM tickets GROUP BY team ORDER BY n DESC"
    for dialect in ("sqlite", "duckdb", "postgres"):
        rendered = registry.render(
            f"sql_{dialect}",
            question="q?",
            schema="CREATE TABLE t (a INT);",
            examples=examples,
            previous_sql="SELECT b FROM t",
            error="no column b",
        )
        text = rendered.messages[-1].content
        assert rendered.answer_prefix == "SELECT" and ";" in rendered.stop
        assert "CREATE TABLE t (a INT);" in text and "no column b" in text and text.rstrip().endswith("q?")


def test_text_table_aligns_numbers_and_counts_hidden_rows() -> None:
    rows = [("north", 1200, 3.5), ("south", 7, None)] + [("x", i, 0.0) for i in range(30)]
    table = text_table(["region", "units", "share"], rows, max_rows=2)
    lines = table.splitlines()
    assert lines[0].startswith("region | units | share")
    assert lines[2] == "north  |  1200 |   3.5" and lines[3].endswith("NULL")
    assert lines[-1] == "… 30 more row(s)"


def test_summary_states_the_numbers() -> None:
    assert summary(["n"], [(42,)], more=False) == "The answer is 42 (n)."
    assert summary(["team", "n"], [("a", 3), ("b", 2)], more=False) == "n by team: a: 3, b: 2 (2 rows)."
    assert summary(["a", "b"], [(1, 2)], more=False) == "a = 1; b = 2."
    assert summary(["a"], [], more=False) == "No rows matched."
    assert summary(["a", "b", "c"], [(1, 2, 3)] * 7, more=True) == "7+ rows."


def test_json_rows_make_database_values_serialisable() -> None:
    rows = json_rows(
        [(dt.date(2026, 1, 2), decimal.Decimal("1.50"), decimal.Decimal("3"), b"\x00\x01", float("nan"))]
    )
    assert rows == [["2026-01-02", 1.5, 3, "<2 bytes>", "nan"]]


def test_chart_kind_picks_line_bar_or_nothing() -> None:
    assert chart_kind(["day", "n"], [("2026-01-01", 1), ("2026-01-02", 3)]) == "line"
    assert chart_kind(["day", "n"], [(dt.date(2026, 1, 1), 1), (dt.date(2026, 1, 2), 3)]) == "line"
    assert chart_kind(["team", "n"], [("a", 1), ("b", 2)]) == "bar"
    assert chart_kind(["team", "n"], [("a", 1)]) is None  # one row: the sentence says it all
    assert chart_kind(["team", "lead"], [("a", "x"), ("b", "y")]) is None
    assert chart_kind(["id", "n"], [(i, i) for i in range(5)]) is None
    assert chart_kind(["team", "n"], [(str(i), i) for i in range(50)]) is None  # too many bars


def test_chart_and_csv_files_are_written(tmp_path: Path) -> None:
    png = draw_chart(tmp_path, "src", ["team", "n"], [("a", 1), ("b", 2)], "n by team")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
    path = write_csv(tmp_path, "a/b", ["x", "y"], [(1, dt.date(2026, 1, 1))])
    assert path.parent == tmp_path and path.read_text().splitlines() == ["x,y", "1,2026-01-01"]
