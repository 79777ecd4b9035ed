"""Pure renderers from core values to the text formats surfaces post; no I/O.

::

    markdown_table(["team", "n"], [["a", 2], ["b", 1]], max_rows=20)
    # | team | n |
    # |---|---|
    # | a | 2 |
    # | b | 1 |

Words a reader sees (``more``, ``empty``) are parameters, so each surface passes its own catalogue's.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.contracts import Cell

MAX_CELL_CHARS = 80


def markdown_cell(value: Cell, limit: int = MAX_CELL_CHARS) -> str:
    """One Markdown table cell: NULL as empty, one line, at most ``limit`` characters, pipes escaped."""
    text = "" if value is None else " ".join(str(value).splitlines())
    if len(text) > limit:
        # Cut before escaping, so a cut never leaves a lone backslash that escapes the next border.
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def markdown_row(cells: Sequence[Cell]) -> str:
    """``| a | b |``."""
    return "| " + " | ".join(markdown_cell(c) for c in cells) + " |"


def markdown_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    max_rows: int,
    *,
    more: str = "(+{count} more rows)",
    empty: str = "(no rows)",
) -> str:
    """A Markdown table of the first ``max_rows`` rows, then a ``more`` line for the rest (``empty`` if none)."""
    if not columns:
        return empty
    lines = [markdown_row(columns), "|" + "---|" * len(columns)]
    lines += [markdown_row(row) for row in rows[:max_rows]]
    if len(rows) > max_rows:
        lines.append(more.format(count=len(rows) - max_rows))
    if not rows:
        lines.append(empty)
    return "\n".join(lines)
