"""The pygls server Hearth runs: progress, cancellation, and the one path by which failures reach the user.

Each command runs as an asyncio task with `$/progress` reporting; `$/cancelRequest` (or cancelling
the progress in the editor) cancels that task, which closes the model stream and stops llama.cpp
mid-generation. Every refusal and failure, a malformed command argument included, goes through
:meth:`HearthServer.refuse`: one sentence as `window/showMessage` and as the JSON-RPC error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import MsgId
from pygls.protocol.language_server import lsp_method

from core.code.sandbox import Sandbox
from core.code.workbench import CodeWorkbench, Progress
from core.config import Settings
from core.errors import HearthError, InputError
from core.refusals import refusal_for, sentence
from lsp.backend import CodeBackend
from lsp.completion import Completions
from lsp.contract import usage
from lsp.workspace_index import WorkspaceIndex

log = logging.getLogger(__name__)

T = TypeVar("T")


class RequestFailed(JsonRpcException):
    """A command failed for a reason the user can act on (LSP RequestFailed, no traceback)."""

    def __init__(self, message: str) -> None:
        super().__init__(message=message, code=-32803)


class HearthProtocol(LanguageServerProtocol):
    """Cancels a command's task on `$/cancelRequest`; refuses a bad command argument in one sentence."""

    def _hearth(self) -> HearthServer:
        server = self._server
        assert isinstance(server, HearthServer)
        return server

    def _handle_cancel_notification(self, msg_id: MsgId) -> None:
        # pygls runs a command as an inner task; cancelling the request must cancel that task.
        super()._handle_cancel_notification(msg_id)
        task = self._hearth().running.get(msg_id)
        if task is not None and not task.done():
            log.info("cancelling command for request %s", msg_id)
            task.cancel()

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(
        self, params: types.ExecuteCommandParams
    ) -> Generator[object, object, object]:
        """pygls structures the arguments from the handler's annotations; what it cannot is refused here."""
        if params.arguments is None:
            params.arguments = []  # so a missing argument is refused like a wrong one
        try:
            return (yield from super().lsp_workspace__execute_command(params))
        except JsonRpcInvalidParams as exc:
            log.info("%s: %s", params.command, exc)
            raise self._hearth().refuse(params.command, InputError(usage(params.command))) from None


class HearthServer(LanguageServer):
    """The Hearth language server: the code workbench over the configured model, and the editor's state."""

    def __init__(self, settings: Settings, backend: CodeBackend) -> None:
        super().__init__("hearth", "0.1.0", protocol_cls=HearthProtocol)
        self.settings = settings
        self.backend = backend
        self.code = CodeWorkbench(
            backend.model,
            Sandbox(settings.sandbox, private=(settings.home,)),  # Hearth's home: never copied nor mounted
            repair_attempts=settings.sandbox.repair_attempts,
        )
        self.running: dict[MsgId, asyncio.Task[object]] = {}
        self.diagnosed: set[str] = set()  # workspace-relative files holding Hearth diagnostics
        self.workspace_index: WorkspaceIndex | None = None
        self._index_watch: asyncio.Future[None] | None = None
        self.completions = Completions(settings.lsp.completion)

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

    async def run_command(self, title: str, work: Callable[[Progress], Awaitable[T]]) -> T:
        """Run ``work`` with progress and cancellation; a failure reaches the user through :meth:`refuse`."""
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
        except Exception as exc:
            raise self.refuse(title, exc) from None
        finally:
            if msg_id is not None:
                self.running.pop(msg_id, None)
            if report is not _no_report:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message="done"))

    def refuse(self, title: str, exc: Exception) -> RequestFailed:
        """The one error path: log, show the sentence (`window/showMessage`), return the JSON-RPC error.

        A HearthError's message is the sentence; anything else is a bug, logged with its traceback and
        shown as one sentence pointing at the log.
        """
        if isinstance(exc, HearthError):
            log.info("%s failed: %s", title, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            message = sentence(refusal_for(exc))  # the core's catalogue, as on every surface
        else:
            log.error("%s failed", title, exc_info=exc)
            message = f"{title} failed unexpectedly ({type(exc).__name__}); the server log has the details."
        self.notify_user(message, types.MessageType.Error)
        return RequestFailed(message)

    async def _begin_progress(
        self, token: str, title: str, task: asyncio.Task[object] | None, *, cancellable: bool = True
    ) -> Progress:
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

    async def aclose(self) -> None:
        """Cancel running commands and release the index and the model (on `shutdown`)."""
        running = dict(self.running)
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        # pygls then cancels the pending requests while iterating its table of them, and a cancelled
        # request removes itself from that table ("dictionary changed size during iteration"):
        # settle the futures of the commands cancelled above first.
        for msg_id in running:
            future = self.protocol._request_futures.get(msg_id)
            if future is not None and not future.done():
                future.cancel()
        await self.completions.aclose()
        if self._index_watch is not None:
            self._index_watch.cancel()
        if self.workspace_index is not None:
            await self.workspace_index.aclose()
        await self.backend.aclose()


def _no_report(message: str) -> None:
    """Progress sink for clients without window/workDoneProgress."""
