"""`hearth serve`."""

from __future__ import annotations

import asyncio
import logging
import signal

import click
from aiohttp import web

from server.app import create_app
from server.cli import State, pass_state

log = logging.getLogger(__name__)


@click.command()
@click.option("--host", default=None, help="Address to bind (server.host; default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (server.port; default 8080; 0 picks a free one).")
@pass_state
def serve(state: State, host: str | None, port: int | None) -> None:
    """Run the HTTP server: chat endpoints, REST API, scheduler, /healthz."""
    settings = state.settings
    if host is not None:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    asyncio.run(_serve(state))


async def _serve(state: State) -> None:
    settings = state.settings
    app = create_app(settings)
    runner = web.AppRunner(app, shutdown_timeout=settings.server.shutdown_timeout_s, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
    bound = [s.getsockname() for s in (runner.server and site._server.sockets or [])]  # type: ignore[union-attr]
    for addr in bound:
        # Printed (and flushed) so scripts and tests can find a port chosen with --port 0.
        click.echo(f"Hearth listening on http://{addr[0]}:{addr[1]}", err=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: no new work, finishing in-flight answers")
    await runner.cleanup()
