"""`hearth tables` against the shipped demo config: list, guarded query, and ask with the real local model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.cli import main
from tests.fixtures.tables import DEMO_DATA, file_digest, sqlite_fingerprint

DEMO_CONFIG = DEMO_DATA.parent / "hearth.yaml"


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["-c", str(DEMO_CONFIG), "tables", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_list_shows_the_demo_tables_with_row_counts() -> None:
    code, out, _ = _run("list")
    assert code == 0
    assert "tickets (sqlite)" in out and "tickets — 500 rows" in out and "sales — 144 rows" in out
    code, out, _ = _run("list", "--json", "--source", "sales")
    assert code == 0 and [t["table"] for t in json.loads(out)] == ["sales"]


def test_query_prints_a_readable_table_and_json() -> None:
    code, out, _ = _run(
        "query", "--source", "tickets", "SELECT status, count(*) AS n FROM tickets GROUP BY 1 ORDER BY 1"
    )
    assert code == 0
    assert "n by status: closed: 423, open: 77 (2 rows)." in out and "closed |" in out
    code, out, _ = _run("query", "--json", "--source", "sales", "SELECT sum(units) AS units FROM sales")
    data = json.loads(out)
    assert (
        code == 0
        and data["columns"] == ["units"]
        and data["chart"] is None
        and data["sql"].endswith("LIMIT 1000")
    )


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DELETE FROM tickets", "changes data"),
        ("SELECT * FROM tickets; DROP TABLE teams", "Only one statement"),
        ("ATTACH 'x.db' AS x", "attaches"),
        ("SELECT * FROM nowhere", "available: teams, tickets"),
    ],
)
def test_rejected_query_exits_non_zero_with_the_reason(sql: str, reason: str) -> None:
    before = sqlite_fingerprint(DEMO_DATA / "tickets.db"), file_digest(DEMO_DATA / "tickets.db")
    code, out, err = _run("query", "--source", "tickets", sql)
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and reason in err and "Traceback" not in err
    assert (sqlite_fingerprint(DEMO_DATA / "tickets.db"), file_digest(DEMO_DATA / "tickets.db")) == before


def test_unknown_source_names_the_available_ones() -> None:
    code, _, err = _run("query", "--source", "nope", "SELECT 1")
    assert code == 1 and "Unknown table source 'nope'; available: tickets, sales" in err


@pytest.mark.llama
@pytest.mark.slow
def test_ask_with_the_real_local_model_counts_tickets_per_team(bundled_model: Path) -> None:
    """The one real-model run: the demo config, the bundled Gemma 270M base model, the whole path.

    Sampling is seeded (``llm.local.seed``), so the model writes the same SQL on every run; the
    answer must be the true count per team, whatever order or aliases the SQL chose.
    """
    env = {
        "HEARTH_LLM__LOCAL__N_CTX": "1024",
        "HEARTH_LLM__MAX_TOKENS": "24",
        "HEARTH_LLM__LOCAL__N_THREADS": "2",
        "HEARTH_TABLE_LIMITS__REPAIRS": "0",
    }
    before = sqlite_fingerprint(DEMO_DATA / "tickets.db")
    with sqlite3.connect(f"file:{DEMO_DATA / 'tickets.db'}?mode=ro", uri=True) as db:
        truth = {team: n for team, n in db.execute("SELECT team, count(*) FROM tickets GROUP BY team")}
    code, out, err = _run("ask", "--json", "How many tickets are there per team?", env=env)
    assert code == 0, err
    data = json.loads(out)
    assert data["sql"].upper().startswith("SELECT") and data["backend"] == "local"
    assert data["source"] == "tickets"
    assert {row[0]: row[1] for row in data["rows"]} == truth
    assert sqlite_fingerprint(DEMO_DATA / "tickets.db") == before
