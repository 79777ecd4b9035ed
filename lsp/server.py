"""The pygls language server: instant code actions, work on `workspace/executeCommand`.

Listing code actions never touches the model. Each command runs as an asyncio task with
`$/progress` reporting; `$/cancelRequest` (or cancelling the progress in the editor) cancels that
task, which closes the model stream and stops llama.cpp mid-generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from core.code.context import RUNNABLE, language_of
from core.code.sandbox import Sandbox
from core.config import Settings
from core.errors import HearthError
from lsp.backend import CodeBackend
from lsp.workspace_index import WorkspaceIndex

log = logging.getLogger(__name__)

EXPLAIN, GENERATE, GENERATE_TESTS, RUN_TESTS, ASK = (
    "hearth.explain",
    "hearth.generate",
    "hearth.generateTests",
    "hearth.runTests",
    "hearth.ask",
)
COMMANDS = [EXPLAIN, GENERATE, GENERATE_TESTS, RUN_TESTS, ASK]
_ACTIONS = [
    (EXPLAIN, "Hearth: Explain", False),
    (GENERATE, "Hearth: Generate", True),
    (GENERATE_TESTS, "Hearth: Generate tests", True),
    (RUN_TESTS, "Hearth: Run tests", True),
]


class RequestFailed(JsonRpcException):
    """A command failed for a reason the user can act on (LSP RequestFailed, no traceback)."""

    def __init__(self, message: str) -> None:
        super().__init__(message=message, code=-32803)


class HearthProtocol(LanguageServerProtocol):
    """pygls runs a command as an inner task; make `$/cancelRequest` for the request cancel that task."""

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        super()._handle_cancel_notification(msg_id)
        server = self._server
        if isinstance(server, HearthServer):
            task = server.running.get(msg_id)
            if task is not None and not task.done():
                log.info("cancelling command for request %s", msg_id)
                task.cancel()


class HearthServer(LanguageServer):
    """The Hearth language server."""

    def __init__(self, settings: Settings, backend: CodeBackend) -> None:
        super().__init__("hearth", "0.1.0", protocol_cls=HearthProtocol)
        self.settings = settings
        self.backend = backend
        self.running: dict[Any, asyncio.Task[Any]] = {}
        self.sandbox = Sandbox(settings.sandbox)
        self.diagnosed: set[str] = set()  # workspace-relative files holding Hearth diagnostics
        self.workspace_index: WorkspaceIndex | None = None
        self._index_watch: asyncio.Future[None] | None = None

    def start_indexing(self) -> None:
        """Index the workspace folder in the background (in-process mode, lsp.index_workspace)."""
        root = self.workspace.root_path
        if not root or not self.settings.lsp.index_workspace or self.backend.label != "in-process":
            return
        if self.workspace_index is None:
            self.workspace_index = WorkspaceIndex(self.settings, Path(root))
        self.workspace_index.schedule()
        if self._index_watch is None or self._index_watch.done():
            self._index_watch = asyncio.ensure_future(self._report_indexing(self.workspace_index))

    async def _report_indexing(self, index: WorkspaceIndex) -> None:
        """`$/progress` while the workspace index syncs (editors show it in the status line)."""
        token = f"hearth-index-{time.monotonic_ns()}"
        report = await self._begin_progress(token, "Hearth: indexing workspace", None, cancellable=False)
        await index.idle()
        message = f"failed: {index.last_error}" if index.last_error else (index.summary or "done")
        if report is not _no_report:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))

    async def run_command(self, title: str, work: Callable[[Callable[[str], None]], Awaitable[Any]]) -> Any:
        """Run ``work`` with progress, cancellation, and errors turned into one sentence for the user."""
        msg_id = self.protocol.msg_id
        task = asyncio.current_task()
        if msg_id is not None and task is not None:
            self.running[msg_id] = task
        token = f"hearth-{msg_id}-{id(task)}"
        report = await self._begin_progress(token, title, task)
        try:
            return await work(report)
        except asyncio.CancelledError:
            log.info("%s cancelled", title)
            raise
        except HearthError as exc:
            log.info("%s failed: %s", title, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            self.notify_user(str(exc), types.MessageType.Error)
            raise RequestFailed(str(exc)) from None
        except Exception as exc:
            log.exception("%s failed", title)
            message = f"{title} failed unexpectedly ({type(exc).__name__}); the server log has the details."
            self.notify_user(message, types.MessageType.Error)
            raise RequestFailed(message) from None
        finally:
            self.running.pop(msg_id, None)
            if report is not _no_report:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message="done"))

    async def _begin_progress(
        self, token: str, title: str, task: asyncio.Task[Any] | None, *, cancellable: bool = True
    ) -> Callable[[str], None]:
        caps = self.client_capabilities.window
        if not (caps and caps.work_done_progress):
            return _no_report
        try:
            await asyncio.wait_for(self.work_done_progress.create_async(token), 5)
        except Exception as exc:  # a client that cannot create progress still gets the result
            log.info("no progress for %s: %s", title, exc)
            return _no_report
        self.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title=title, cancellable=cancellable)
        )
        cancelled = self.work_done_progress.tokens.get(token)
        if cancelled is not None and task is not None:
            cancelled.add_done_callback(lambda fut: task.cancel() if fut.cancelled() else None)

        def report(message: str) -> None:
            self.work_done_progress.report(token, types.WorkDoneProgressReport(message=message))

        return report

    def notify_user(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        """window/showMessage."""
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    @property
    def supports_show_document(self) -> bool:
        """Whether the client can open a document we point it at."""
        window = self.client_capabilities.window
        return bool(window and window.show_document and window.show_document.support)


def _no_report(message: str) -> None:
    """Progress sink for clients without window/workDoneProgress."""


def code_actions(server: HearthServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """The Hearth actions for a range: pure bookkeeping, never the model (this must stay instant)."""
    uri = params.text_document.uri
    doc = server.workspace.get_text_document(uri)
    language = language_of(doc.path or uri, doc.language_id)
    args = [
        {
            "uri": uri,
            "range": {
                "start": {"line": params.range.start.line, "character": params.range.start.character},
                "end": {"line": params.range.end.line, "character": params.range.end.character},
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
    from lsp import commands

    server = HearthServer(settings, backend)
    server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.Empty]),
    )(code_actions)

    @server.feature(types.INITIALIZED)
    def _initialized(ls: HearthServer, params: types.InitializedParams) -> None:
        ls.start_indexing()

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def _saved(ls: HearthServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.start_indexing()

    @server.feature(types.SHUTDOWN)
    async def _shutdown(ls: HearthServer, *args: Any) -> None:
        running = dict(ls.running)
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        # pygls then cancels the pending requests while iterating its table of them, and a cancelled
        # request removes itself from that table ("dictionary changed size during iteration"):
        # settle the futures of the commands cancelled above first.
        for msg_id in running:
            future = ls.protocol._request_futures.get(msg_id)
            if future is not None and not future.done():
                future.cancel()
        if ls._index_watch is not None:
            ls._index_watch.cancel()
        if ls.workspace_index is not None:
            await ls.workspace_index.aclose()
        await ls.backend.aclose()

    handlers: dict[str, Callable[..., Awaitable[Any]]] = {
        EXPLAIN: commands.explain,
        GENERATE: commands.generate,
        GENERATE_TESTS: commands.generate_tests,
        RUN_TESTS: commands.run_tests,
        ASK: commands.ask,
    }
    for name, handler in handlers.items():
        server.command(name)(_command(handler))
    return server


def _command(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def run(ls: HearthServer, *args: Any) -> Any:
        return await handler(ls, list(args))

    run.__name__ = handler.__name__
    return run
