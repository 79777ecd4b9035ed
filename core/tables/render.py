"""Turning rows into what people read: a short answer, a text table that fits chat, a CSV file, a chart.

Charts are drawn with matplotlib's Agg canvas on a fresh Figure (no pyplot state), so they are
safe to draw in a worker thread. A chart is drawn only where it helps: a time series (first
column dates, then numbers) or a category breakdown (labels, then one number, 2–30 rows).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import math
import re
import textwrap
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.contracts import Cell

_ISO_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
_CELL_CHARS = 40


def json_value(value: object) -> Cell:
    """A JSON-safe form of a database value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    return str(value)


def json_rows(rows: Sequence[Sequence[object]]) -> list[list[Cell]]:
    """Rows as JSON-safe lists."""
    return [[json_value(v) for v in row] for row in rows]


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, decimal.Decimal)):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def format_value(value: object) -> str:
    """How one value reads in a table or a sentence."""
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return (
            f"{value:,.2f}"
            if abs(value) >= 1000
            else f"{value:.4g}"
            if abs(value) < 1
            else f"{value:.2f}".rstrip("0").rstrip(".")
        )
    if isinstance(value, decimal.Decimal):
        return format_value(float(value)) if value != value.to_integral_value() else f"{int(value):,}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    text = str(json_value(value))
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def text_table(columns: Sequence[str], rows: Sequence[Sequence[object]], *, max_rows: int) -> str:
    """A monospace table of at most ``max_rows`` rows; numbers right-aligned."""
    shown = rows[:max_rows]
    cells = [[format_value(v) for v in row] for row in shown]
    numeric = [
        all(_number(r[i]) is not None or r[i] is None for r in shown) and bool(shown)
        for i in range(len(columns))
    ]
    heads = [c if len(c) <= _CELL_CHARS else c[: _CELL_CHARS - 1] + "…" for c in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)]

    def line(values: Sequence[str]) -> str:
        return " | ".join(
            v.rjust(w) if numeric[i] else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out = [line(heads), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    if len(rows) > len(shown):
        out.append(f"… {len(rows) - len(shown):,} more row(s)")
    return "\n".join(out)


def write_csv(directory: Path, stem: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    """Write the rows to ``directory/<stem>-<id>.csv`` and return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{_safe_stem(stem)}-{uuid.uuid4().hex[:8]}.csv"
    tmp = path.with_suffix(".part")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(json_rows(rows))
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class Pruned:
    """What one pruning pass removed."""

    files: int
    bytes: int


def prune_results(directory: Path, *, keep_days: float, max_mb: float, now: float | None = None) -> Pruned:
    """Delete result files older than ``keep_days``, then the oldest until the rest fit in ``max_mb``.

    Only files Hearth writes there are touched (``*.csv``, ``*.png``, and ``*.part`` left by a crash
    more than an hour ago); files from the last minute are kept whatever the budget (the answer on its
    way points at them); a file another pass removed first is skipped.
    """
    now = time.time() if now is None else now
    found: list[tuple[float, int, Path]] = []
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return Pruned(0, 0)
    for path in entries:
        if path.suffix not in (".csv", ".png", ".part") or not path.is_file():
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        found.append((st.st_mtime, st.st_size, path))
    found.sort()  # oldest first
    cutoff = now - keep_days * 86400
    total = sum(size for _, size, _ in found)
    budget = max_mb * 2**20
    removed = freed = 0
    for mtime, size, path in found:
        if mtime > now - 60:
            continue  # just written: the answer being sent points at it
        if path.suffix == ".part":
            if mtime > now - 3600:
                continue  # perhaps still being written
        elif mtime >= cutoff and total <= budget:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        total -= size
        removed += 1
        freed += size
    return Pruned(removed, freed)


def _safe_stem(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:40] or "result"


def _as_time(value: object) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        text = value.strip()
        try:
            return dt.datetime.fromisoformat(text if len(text) > 7 else text + "-01")
        except ValueError:
            return None
    return None


def chart_kind(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str | None:
    """'line' for a time series, 'bar' for a category breakdown, None when a chart would not help."""
    if len(columns) < 2 or len(rows) < 2:
        return None
    numeric_cols = [i for i in range(1, len(columns)) if all(_number(r[i]) is not None for r in rows)]
    if not numeric_cols:
        return None
    if all(_as_time(r[0]) is not None for r in rows):
        return "line"
    if len(rows) <= 30 and all(isinstance(r[0], str) or r[0] is None for r in rows) and numeric_cols[0] == 1:
        return "bar"
    return None


def _comparable_series(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> list[int]:
    """Numeric columns to plot together: up to four, on the same scale as the first (within 10x)."""
    numeric = [i for i in range(1, len(columns)) if all(_number(r[i]) is not None for r in rows)]
    if not numeric:
        return []

    def peak(i: int) -> float:
        return max(abs(_number(r[i]) or 0.0) for r in rows) or 1.0

    first = peak(numeric[0])
    return [i for i in numeric if first / 10 <= peak(i) <= first * 10][:4]


def chart_title(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A title naming what is plotted against what ("revenue by month")."""
    kind = chart_kind(columns, rows)
    if kind == "line":
        return f"{', '.join(columns[i] for i in _comparable_series(columns, rows))} by {columns[0]}"
    if kind == "bar":
        return f"{columns[1]} by {columns[0]}"
    return ""


def draw_chart(
    directory: Path, stem: str, columns: Sequence[str], rows: Sequence[Sequence[object]], title: str
) -> Path | None:
    """Draw the chart ``chart_kind`` picks into a PNG and return its path (None when no chart fits)."""
    kind = chart_kind(columns, rows)
    if kind is None:
        return None
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if kind == "line":
        points = sorted(((_as_time(r[0]) or dt.datetime.min, r) for r in rows), key=lambda p: p[0])
        xs = np.array([p[0] for p in points], dtype="datetime64[us]")
        for i in _comparable_series(columns, rows):
            ax.plot(
                xs,
                [_number(p[1][i]) or 0.0 for p in points],
                marker="o" if len(xs) <= 40 else None,
                label=columns[i],
            )
        fig.autofmt_xdate()
        if len(_comparable_series(columns, rows)) > 1:
            ax.legend()
        else:
            ax.set_ylabel(columns[_comparable_series(columns, rows)[0]])
    else:
        labels = ["NULL" if r[0] is None else str(r[0])[:20] for r in rows]
        ax.barh(labels[::-1], [_number(r[1]) or 0.0 for r in rows][::-1])
        ax.set_xlabel(columns[1])
    ax.set_title(textwrap.shorten(title, 90, placeholder="…"), fontsize=10, wrap=True)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{_safe_stem(stem)}-{uuid.uuid4().hex[:8]}.png"
    fig.savefig(path)
    return path


def summary(columns: Sequence[str], rows: Sequence[Sequence[object]], *, more: bool) -> str:
    """One sentence that states the number(s)."""
    if not rows:
        return "No rows matched."
    if len(rows) == 1 and len(columns) == 1:
        return f"The answer is {format_value(rows[0][0])} ({columns[0]})."
    if len(rows) == 1:
        return "; ".join(f"{c} = {format_value(v)}" for c, v in zip(columns, rows[0], strict=True)) + "."
    count = f"{len(rows):,}{'+' if more else ''} rows"
    if len(columns) == 2 and all(_number(r[1]) is not None for r in rows):
        head = ", ".join(f"{format_value(r[0])}: {format_value(r[1])}" for r in rows[:5])
        rest = f", … ({count})" if len(rows) > 5 else f" ({count})"
        return f"{columns[1]} by {columns[0]}: {head}{rest}."
    return f"{count}."
