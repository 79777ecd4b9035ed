"""`hearth prompts list|show|render`."""

from __future__ import annotations

import json

import click

from core.errors import HearthError
from core.prompts.registry import PromptRegistry
from server.cli import State, pass_state


@click.group()
def prompts() -> None:
    """List, show and render prompt templates."""


def _registry(state: State) -> PromptRegistry:
    return PromptRegistry(state.settings.prompts.dir)


@prompts.command("list")
@pass_state
def list_(state: State) -> None:
    """List templates with version, inputs and origin."""
    for tpl in _registry(state).list():
        origin = "built-in" if tpl.builtin else str(tpl.path)
        opt = [f"[{o}]" for o in tpl.optional]
        click.echo(f"{tpl.name:<22} v{tpl.version:<3} {', '.join(list(tpl.required) + opt):<34} {origin}")
        if tpl.description:
            click.echo(f"{'':<27}{tpl.description}")


@prompts.command("show")
@click.argument("name")
@pass_state
def show(state: State, name: str) -> None:
    """Print a template's source."""
    click.echo(_registry(state).get(name).path.read_text(encoding="utf-8"))


@prompts.command("render")
@click.argument("name")
@click.option(
    "--var",
    "variables",
    multiple=True,
    metavar="KEY=VALUE",
    help="An input; VALUE is parsed as JSON when it can be (lists, objects), else used as text.",
)
@pass_state
def render(state: State, name: str, variables: tuple[str, ...]) -> None:
    """Render a template with --var inputs, or with the template's own example when none is given."""
    registry = _registry(state)
    # The example is a whole set of inputs: mixing its values into the caller's would show a prompt
    # that no real request produces, so it is used only when no --var is given at all.
    values: dict[str, object] = {} if variables else dict(registry.get(name).example)
    for item in variables:
        key, sep, raw = item.partition("=")
        if not sep:
            raise HearthError(f"--var needs KEY=VALUE, got '{item}'.")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    rendered = registry.render(name, **values)
    for message in rendered.messages:
        click.echo(f"--- {message.role.value} ---")
        click.echo(message.content)
    if rendered.answer_prefix:
        click.echo("--- answer prefix ---")
        click.echo(rendered.answer_prefix)
