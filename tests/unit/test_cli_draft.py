"""`hearth ask` shows the streamed draft on a terminal only, and prints the checked answer in its place."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from core.contracts import Answer, Delta
from core.llm.base import Usage
from server.cli import main
from server.cli.draft import Draft


def test_on_a_terminal_the_draft_is_drawn_as_it_streams_and_erased_on_stop() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=60)
    with Draft(console) as draft:
        assert not draft.shown  # nothing drawn before the first words (the spinner owns the screen)
        draft.add("Tokyo is 250 EUR. ")
        draft.add("Paris is 999 EUR.")
        assert draft.shown
        time.sleep(0.3)  # the refresh thread draws at least one frame
        draft.stop()
        assert not draft.shown
        draft.add(" later text")  # after stop: kept in .text, never drawn
        assert not draft.shown
    drawn = out.getvalue()
    assert "Paris is 999 EUR." in drawn
    assert "later text" not in drawn
    assert "\x1b[" in drawn  # drawn with cursor movements, so that stop can erase it


def test_on_a_pipe_the_draft_is_never_written() -> None:
    out = io.StringIO()
    with Draft(Console(file=out, force_terminal=False)) as draft:
        draft.add("Tokyo is 250 EUR.")
        assert not draft.shown
    assert out.getvalue() == ""


class _Verified:
    """An intake whose model wrote a sentence the verifier then dropped (core/grounding)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def run(self, ask: Any) -> AsyncIterator[Any]:
        yield Delta("Tokyo is 250 EUR per night. ")
        yield Delta("Paris is 999 EUR per night.")
        yield Answer("Tokyo is 250 EUR per night. [1]", [], "local", "fake-model", Usage())


class _Assistant:
    async def aclose(self) -> None:
        pass


def test_a_pipe_gets_the_checked_answer_once_and_never_the_dropped_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("server.cli.ask_cmd.Intake", _Verified)
    monkeypatch.setattr("server.cli.ask_cmd.build_assistant", lambda settings: _Assistant())
    config = tmp_path / "hearth.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "ask", "What is the hotel cap in Tokyo?"])
    assert result.exit_code == 0, result.output
    assert "Paris" not in result.output
    assert result.output.count("Tokyo is 250 EUR per night. [1]") == 1
    assert "fake-model (local)" in result.output
