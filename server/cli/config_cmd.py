"""`hearth config show|path|example`."""

from __future__ import annotations

import json

import click
import yaml

from core.config import config_path_from
from core.redact import redact_data
from server.cli import State, json_option, pass_state


@click.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@json_option("Print JSON instead of YAML.")
@pass_state
def show(state: State, as_json: bool) -> None:
    """Print the effective configuration (file + environment + defaults), secrets masked.

    Secret fields show as ``**********``; credentials inside plain strings (a password in
    ``store.url``, a webhook's ``access_token``, an API key in a query) as ``****``.
    """
    data = redact_data(state.settings.masked())
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


@config.command("path")
@pass_state
def path(state: State) -> None:
    """Print which config file is in use."""
    file = config_path_from(state.config)
    click.echo(str(file) if file else "(none: built-in defaults and HEARTH_* environment variables)")


@config.command("example")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write to this file instead of standard output.",
)
def example(output: str | None) -> None:
    """Print a hearth.yaml documenting every key with its default (deploy/hearth.example.yaml)."""
    from server.config_example import render_example

    text = render_example()
    if output is None:
        click.echo(text, nl=False)
    else:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"Wrote {output}", err=True)
