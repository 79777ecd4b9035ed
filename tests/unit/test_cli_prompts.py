"""`hearth prompts render`: the template's example or the caller's inputs, never a mix of both."""

from __future__ import annotations

from click.testing import CliRunner

from server.cli import main


def test_render_without_vars_shows_the_templates_own_example() -> None:
    result = CliRunner().invoke(main, ["prompts", "render", "answer"])
    assert result.exit_code == 0, result.output
    assert "New employees get 25 vacation days a year." in result.output  # the example's source


def test_render_with_vars_uses_only_those_inputs() -> None:
    result = CliRunner().invoke(main, ["prompts", "render", "answer", "--var", "question=Where is the wiki?"])
    assert result.exit_code == 0, result.output
    assert "Where is the wiki?" in result.output
    assert "25 vacation days" not in result.output and "Leave policy" not in result.output
    assert "No sources were found" in result.output


def test_render_with_vars_still_names_a_missing_required_input() -> None:
    result = CliRunner().invoke(main, ["prompts", "render", "answer", "--var", "sources=[]"])
    assert result.exit_code != 0
    assert "needs input(s) question" in result.output
