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
from dataclasses import dataclass

from core.contracts import Cell, Citation

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


@dataclass(frozen=True)
class SourceGroup:
    """One cited document: every citation number that points into it, and the places in it."""

    numbers: tuple[int, ...]
    title: str
    uri: str
    locations: tuple[str, ...]

    @property
    def label(self) -> str:
        """``[1]`` or ``[1, 3]``: the numbers the answer text uses for this document."""
        return "[" + ", ".join(str(n) for n in self.numbers) + "]"

    @property
    def where(self) -> str:
        """The places, once each, in the order first cited (``Vacation; Requesting time off``)."""
        return "; ".join(self.locations)


def grouped_sources(citations: Sequence[Citation]) -> list[SourceGroup]:
    """The citations one line per document, in the order each document is first cited.

    Several chunks of one page are several citations (the answer cites them by number); a reader
    wants the page once, with the numbers that point into it.
    """
    order: list[str] = []
    groups: dict[str, list[Citation]] = {}
    for c in citations:
        key = c.doc_id or c.uri or c.title
        if key not in groups:
            order.append(key)
            groups[key] = []
        groups[key].append(c)
    out = []
    for key in order:
        cites = groups[key]
        first = cites[0]
        places = tuple(dict.fromkeys(c.location for c in cites if c.location))
        out.append(SourceGroup(tuple(c.number for c in cites), first.title or first.uri, first.uri, places))
    return out
