"""`hearth serve`: the HTTP process (chat endpoints, REST API, /readyz, /metrics)."""

from __future__ import annotations

import asyncio
import io
import logging
import signal

import click
from click.core import ParameterSource

from core.logs import harden_logging
from server.app import create_app, describe
from server.cli import State, pass_state
from server.indexing import announce
from server.listener import start_listener
from server.observability import configure_json_logging

log = logging.getLogger(__name__)
_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


@click.command()
@click.option("--host", default=None, help="Address to bind (server.host; default 127.0.0.1).")
@click.option(
    "--port", type=int, default=None, help="Port to bind (server.port; default 8080; 0 picks a free one)."
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "text"]),
    default="json",
    show_default=True,
    help="Log lines on stderr: one JSON object each (for log shippers) or plain text.",
)
@click.option(
    "--log-level",
    type=click.Choice(_LEVELS, case_sensitive=False),
    default=None,
    help="Log verbosity (default: `hearth --log-level` when given, else log_level in hearth.yaml).",
)
@pass_state
def serve(state: State, host: str | None, port: int | None, log_format: str, log_level: str | None) -> None:
    """Run the HTTP server: chat endpoints, REST API, scheduler, /healthz, /readyz, /metrics.

    SIGTERM (or Ctrl-C) stops accepting connections, lets in-flight answers finish for up to
    server.shutdown_timeout_s, cancels the rest with a clean error to their clients, and flushes
    the audit log before exiting.
    """
    settings = state.settings
    if host is not None:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    level = (log_level or _group_log_level() or settings.log_level).upper()
    if log_format == "json":
        configure_json_logging(level)
    else:
        logging.getLogger().setLevel(level)
        harden_logging()
    asyncio.run(_serve(state))


def _group_log_level() -> str | None:
    """``hearth --log-level X serve``: X when it was given on the command line, else None."""
    root = click.get_current_context().find_root()
    if root.get_parameter_source("log_level") in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
        value = root.params.get("log_level")
        return str(value) if value else None
    return None


def dump_tasks() -> None:
    """Log every asyncio task's stack (SIGUSR1): what a stuck server is waiting for."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(file=out)
    log.warning("asyncio tasks:\n%s", out.getvalue())


async def _serve(state: State) -> None:
    settings = state.settings
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    app = create_app(settings)
    try:
        runner, urls = await start_listener(app, settings.server)
    except OSError as exc:
        raise click.ClickException(
            f"Cannot listen on {settings.server.host}:{settings.server.port} ({exc.strerror}) — "
            "pick another with --port or server.port."
        ) from exc
    for url in urls:
        # Printed (and flushed) so scripts and tests can find a port chosen with --port 0.
        click.echo(f"Hearth listening on {url}", err=True)
    await announce(app, urls)  # the embedded index's owner: hearth index/search go through this server
    log.info("serving", extra={"routes": [r["path"] for r in describe(app) if r["method"] != "HEAD"]})
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        log.info("received %s: no new connections, finishing in-flight answers", sig.name)
        stop.set()
        # A second signal ends the process at once.
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    await stop.wait()
    await runner.cleanup()
    log.info("stopped")
