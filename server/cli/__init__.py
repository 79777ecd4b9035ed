"""The `hearth` command line.

Each command group lives in its own module and is listed in ``_COMMANDS`` (imported lazily);
adding one is a new module plus one line here.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from core.config import Settings, load_settings
from core.errors import ConfigError, HearthError
from core.home import make_home_private
from core.logs import harden_logging
from core.redact import redact

# command name -> "module:attribute" of its click command or group. Modules are imported only
# when their command runs (or for --help), so `hearth lsp` does not pay for qdrant or torch.
_COMMANDS: dict[str, str] = {
    "config": "server.cli.config_cmd:config",
    "prompts": "server.cli.prompts_cmd:prompts",
    "ask": "server.cli.ask_cmd:ask",
    "tables": "server.cli.tables_cmd:tables",
    "doctor": "server.cli.doctor_cmd:doctor",
    "serve": "server.cli.serve_cmd:serve",
    "lsp": "server.cli.lsp_cmd:lsp",
    "digest": "server.cli.digest_cmd:digest",
    "tokens": "server.cli.tokens_cmd:tokens",
    "audit": "server.cli.audit_cmd:audit",
    "feedback": "server.cli.feedback_cmd:feedback",
    "index": "server.cli.index_cmd:index",
    "search": "server.cli.index_cmd:search",
    "sources": "server.cli.index_cmd:sources",
    "store": "server.cli.store_cmd:store",
    "eval": "server.cli.eval_cmd:eval_group",
}


class State:
    """What every command gets: the config path, loaded lazily once."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The validated settings (loaded on first use)."""
        if self._settings is None:
            self._settings = load_settings(self.config)
            make_home_private(self._settings.home)  # 0700 home, 0600 files from here on
        return self._settings


pass_state = click.make_pass_decorator(State)
_Command = TypeVar("_Command", bound=Callable[..., object])


def json_option(help: str = "Print JSON.") -> Callable[[_Command], _Command]:
    """The ``--json`` flag of every command that can print JSON (passed as ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def setup_logging(level: str) -> None:
    """Log to stderr so stdout stays clean for answers and JSON."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "sentence_transformers", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    harden_logging()  # no secret in any log line; repeated errors rate-limited


class HearthGroup(click.Group):
    """Loads subcommands on demand and turns Hearth errors into one plain sentence and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = _COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module, _, attr = spec.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"Configuration error: {redact(str(exc))}", err=True)
            sys.exit(2)
        except HearthError as exc:
            logging.getLogger("hearth").debug("command failed", exc_info=True)
            click.echo(f"Error: {redact(str(exc))}", err=True)
            sys.exit(1)


@click.group(cls=HearthGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="hearth.yaml to use (default: $HEARTH_CONFIG, then ./hearth.yaml, then built-in defaults).",
)
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log verbosity on stderr.",
)
@click.version_option(package_name="hearth")
@click.pass_context
def main(ctx: click.Context, config: Path | None, log_level: str) -> None:
    """Hearth: a self-hosted team assistant over your docs, tables and code.

    \b
    Quick start:
      hearth doctor                 check models, stores and settings
      hearth ask "How do I …?"      ask a question with the local model
      hearth serve                  run the bots, the REST API and the scheduler
    """
    setup_logging(log_level)
    ctx.obj = State(config)
