"""`hearth lsp`: the language server for VS Code, Neovim and any LSP editor."""

from __future__ import annotations

import click

from server.cli import State, pass_state


@click.command()
@click.option("--stdio", is_flag=True, help="Talk LSP over stdin/stdout (the default; editors pass it).")
@click.option("--tcp", is_flag=True, help="Listen on 127.0.0.1 instead of stdio (for debugging).")
@click.option(
    "--port", default=2087, show_default=True, type=click.IntRange(0, 65535), help="Port for --tcp."
)
@click.option(
    "--server",
    "server_url",
    default=None,
    metavar="URL",
    help="Use a `hearth serve` at URL (thin client) instead of the in-process core; also lsp.server_url.",
)
@click.option(
    "--token",
    default=None,
    envvar="HEARTH_LSP_TOKEN",
    metavar="TOKEN",
    help="Bearer token for --server (or HEARTH_LSP_TOKEN, lsp.token).",
)
@pass_state
def lsp(state: State, stdio: bool, tcp: bool, port: int, server_url: str | None, token: str | None) -> None:
    """Run the Hearth language server (code actions: Explain, Generate, Generate tests, Run tests)."""
    from core.engine import build_assistant
    from lsp.backend import CodeBackend, InProcessBackend
    from lsp.remote import RemoteBackend
    from lsp.server import build_server

    settings = state.settings
    url = server_url or settings.lsp.server_url
    if token is None and settings.lsp.token is not None:
        token = settings.lsp.token.get_secret_value()
    backend: CodeBackend
    if url:
        backend = RemoteBackend(url, token, idle_timeout_s=settings.lsp.idle_timeout_s)
    else:
        backend = InProcessBackend(build_assistant(settings))
    server = build_server(settings, backend)
    if tcp:
        where = f"127.0.0.1:{port}" if port else "127.0.0.1 (a free port; --log-level INFO shows it)"
        click.echo(f"hearth lsp: serving LSP on {where}", err=True)
        server.start_tcp("127.0.0.1", port)
    else:
        server.start_io()
