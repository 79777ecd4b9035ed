"""<home>/results stays bounded: old files go, then the oldest past the size budget; fresh ones stay."""

from __future__ import annotations

import os
from pathlib import Path

from core.tables.render import prune_results

NOW = 1_800_000_000.0
DAY = 86400.0


def make(directory: Path, name: str, age_s: float, size: int = 10) -> Path:
    path = directory / name
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def test_files_past_the_age_go_and_everything_else_stays(tmp_path: Path) -> None:
    old_csv = make(tmp_path, "sales-1.csv", 8 * DAY)
    old_png = make(tmp_path, "sales-1.png", 9 * DAY)
    recent = make(tmp_path, "sales-2.csv", 2 * DAY)
    stale_part = make(tmp_path, "sales-3.part", 2 * 3600)
    writing = make(tmp_path, "sales-4.part", 60 * 5)
    foreign = make(tmp_path, "notes.txt", 30 * DAY)  # not Hearth's: never touched
    pruned = prune_results(tmp_path, keep_days=7, max_mb=100, now=NOW)
    assert pruned.files == 3 and pruned.bytes == 30
    assert not old_csv.exists() and not old_png.exists() and not stale_part.exists()
    assert recent.exists() and writing.exists() and foreign.exists()


def test_over_the_budget_the_oldest_go_first_but_not_the_file_just_written(tmp_path: Path) -> None:
    mb = 2**20
    a = make(tmp_path, "a.csv", 3 * DAY, mb)
    b = make(tmp_path, "b.csv", 2 * DAY, mb)
    c = make(tmp_path, "c.csv", 1 * DAY, mb)
    just = make(tmp_path, "d.csv", 5, 3 * mb)  # bigger than the whole budget on its own
    pruned = prune_results(tmp_path, keep_days=30, max_mb=2.5, now=NOW)
    assert not a.exists() and not b.exists() and not c.exists()
    assert just.exists() and pruned.files == 3


def test_a_missing_directory_is_nothing_to_do(tmp_path: Path) -> None:
    assert prune_results(tmp_path / "absent", keep_days=1, max_mb=1, now=NOW).files == 0
