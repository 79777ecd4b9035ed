"""The core's pure renderers: what a reader sees of a table answer in Markdown."""

from __future__ import annotations

from core.contracts import TablePart
from core.digests.inputs import render_rows
from core.render import markdown_cell, markdown_table


def test_markdown_table_shows_the_first_rows_and_counts_the_rest() -> None:
    rows = [["a", 2], ["b", 1], ["c", 7]]
    assert markdown_table(["team", "n"], rows, 2) == (
        "| team | n |\n|---|---|\n| a | 2 |\n| b | 1 |\n(+1 more rows)"
    )
    assert markdown_table(["team", "n"], rows, 3).splitlines()[-1] == "| c | 7 |"


def test_markdown_table_without_rows_says_so_in_the_callers_words() -> None:
    assert markdown_table(["team"], [], 5, empty="(keine Zeilen)") == "| team |\n|---|\n(keine Zeilen)"
    assert markdown_table([], [], 5) == "(no rows)"
    assert markdown_table(["n"], [[1], [2]], 1, more="…{count} 行").endswith("\n…1 行")


def test_cells_cannot_break_the_table() -> None:
    assert markdown_cell("a|b\nc") == "a\\|b c"
    assert markdown_cell(None) == ""
    assert markdown_cell(True) == "True" and markdown_cell(1.5) == "1.5"
    # A cut never leaves half of an escape, which would swallow the next border.
    clipped = markdown_cell("x" * 78 + "|zz", limit=80)
    assert clipped == "x" * 78 + "\\|…" and len(markdown_cell("y" * 200)) == 80
    line = markdown_table(["q"], [["a|b"]], 5).splitlines()[-1]
    assert line == "| a\\|b |"


def test_digest_renders_a_table_answer_with_its_own_words() -> None:
    part = TablePart(
        sql="SELECT team, n FROM t",
        source="tickets",
        columns=["team", "n"],
        rows=[[f"t{i}", i] for i in range(25)],
        chat_rows=10,
    )
    text = render_rows(part)
    assert text.splitlines()[:3] == ["| team | n |", "|---|---|", "| t0 | 0 |"]
    assert "| t19 | 19 |" in text and "t20" not in text and text.endswith("(+5 more rows)")
    assert render_rows(TablePart("SELECT 1", "tickets", ["n"], [], 10)).endswith("(no rows)")


def test_citations_are_grouped_one_line_per_document_in_first_cited_order() -> None:
    from core.contracts import Citation
    from core.render import grouped_sources

    def cite(n: int, doc: str, where: str) -> Citation:
        return Citation(n, doc.title(), f"handbook/{doc}.md", doc, f"{doc}-{n}", where, 1.0 / n)

    groups = grouped_sources(
        [cite(1, "leave", "Vacation"), cite(2, "travel", "Hotels"), cite(3, "leave", "Requesting time off"),
         cite(4, "leave", "Vacation")]
    )  # fmt: skip
    assert [(g.label, g.title, g.where) for g in groups] == [
        ("[1, 3, 4]", "Leave", "Vacation; Requesting time off"),
        ("[2]", "Travel", "Hotels"),
    ]
    assert grouped_sources([]) == []
