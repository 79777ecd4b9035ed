"""The CLI spinner: drawn on a terminal until the first words, never on a pipe."""

from __future__ import annotations

import io
import time

from rich.console import Console

from server.cli.spinner import Spinner


def test_on_a_terminal_the_spinner_draws_its_text_and_clears_on_stop() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=60)
    with Spinner("Loading the model…", console) as spinner:
        assert spinner.active
        spinner.update("Searching the docs…")
        time.sleep(0.3)  # the refresh thread draws at least one frame
        spinner.stop()
        assert not spinner.active
        spinner.stop()  # idempotent
        spinner.update("ignored once stopped")
    drawn = out.getvalue()
    assert "Searching the docs…" in drawn
    assert "ignored once stopped" not in drawn


def test_on_a_pipe_nothing_is_drawn() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False)
    with Spinner("Loading the model…", console) as spinner:
        assert not spinner.active
        spinner.update("Searching…")
    assert out.getvalue() == ""
