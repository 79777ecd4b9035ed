"""`hearth feedback`: spans, filters and plain errors (the Slack test drives real votes through it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from core.errors import InputError
from server.cli import main
from server.cli.feedback_cmd import since_epoch


def test_spans_count_back_from_now() -> None:
    assert since_epoch("30m", now=10_000.0) == 10_000.0 - 1800
    assert since_epoch("2w", now=2_000_000.0) == 2_000_000.0 - 14 * 86400
    assert since_epoch(None) is None
    with pytest.raises(InputError, match="--since takes a span"):
        since_epoch("3 days")


def test_an_empty_database_says_so_and_bad_flags_are_one_sentence(tmp_path: Path) -> None:
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(f"database:\n  url: 'sqlite:///{tmp_path / 'state.db'}'\n")
    empty = CliRunner().invoke(main, ["--config", str(cfg), "feedback", "list"])
    assert empty.exit_code == 0 and "No feedback yet." in empty.output
    both = CliRunner().invoke(main, ["--config", str(cfg), "feedback", "list", "--up", "--down"])
    assert both.exit_code != 0 and "Choose --up or --down, not both." in both.output
    assert "Traceback" not in both.output
