"""`hearth config show|path`."""

from __future__ import annotations

import json

import click
import yaml

from core.config import config_path_from
from server.cli import State, pass_state


@click.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@pass_state
def show(state: State, as_json: bool) -> None:
    """Print the effective configuration (file + environment + defaults), secrets masked."""
    data = state.settings.masked()
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
