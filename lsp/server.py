"""The Hearth language server assembled: instant code actions, the commands, the lifecycle hooks.

Listing code actions never touches the model; the work happens on `workspace/executeCommand`
(:mod:`lsp.commands`), in :class:`~lsp.language_server.HearthServer`.
"""

from __future__ import annotations

from lsprotocol import types

from core.code.context import RUNNABLE, language_of
from core.config import Settings
from lsp import completion
from lsp.backend import CodeBackend
from lsp.commands import HANDLERS
from lsp.contract import COMMANDS, EXPLAIN, GENERATE, GENERATE_TESTS, RUN_TESTS
from lsp.language_server import HearthServer

__all__ = ["COMMANDS", "HearthServer", "build_server", "code_actions"]

_ACTIONS = [
    (EXPLAIN, "Hearth: Explain", False),
    (GENERATE, "Hearth: Generate", True),
    (GENERATE_TESTS, "Hearth: Generate tests", True),
    (RUN_TESTS, "Hearth: Run tests", True),
]


def code_actions(server: HearthServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """The Hearth actions for a range: pure bookkeeping, never the model (this must stay instant)."""
    uri = params.text_document.uri
    doc = server.workspace.get_text_document(uri)
    language = language_of(doc.path or uri, doc.language_id)
    start, end = params.range.start, params.range.end
    args = [
        {
            "uri": uri,
            "range": {
                "start": {"line": start.line, "character": start.character},
                "end": {"line": end.line, "character": end.character},
            },
        }
    ]
    actions = []
    for command, title, needs_python in _ACTIONS:
        disabled = None
        if needs_python and language not in RUNNABLE:
            name = language or "this file type"
            disabled = types.CodeActionDisabled(reason=f"Hearth generates and runs Python only, not {name}.")
        actions.append(
            types.CodeAction(
                title=title,
                kind=types.CodeActionKind.Empty,
                disabled=disabled,
                command=types.Command(title=title, command=command, arguments=args),
            )
        )
    return actions


def build_server(settings: Settings, backend: CodeBackend) -> HearthServer:
    """The server with every feature and command registered."""
    server = HearthServer(settings, backend)
    server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.Empty]),
    )(code_actions)

    completion.register(server, settings.lsp.completion)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def _closed(ls: HearthServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.completions.snippets.forget(params.text_document.uri)

    @server.feature(types.INITIALIZED)
    def _initialized(ls: HearthServer, params: types.InitializedParams) -> None:
        ls.start_indexing()

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def _saved(ls: HearthServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.start_indexing()

    @server.feature(types.SHUTDOWN)
    async def _shutdown(ls: HearthServer, *args: object) -> None:
        await ls.aclose()

    for name, handler in HANDLERS.items():
        server.command(name)(handler)
    return server
