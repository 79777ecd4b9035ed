"""Where the language server's model calls go: the in-process core or a remote `hearth serve`.

Either way a question passes the core's front door once: in process through ``core.intake``
(:class:`FrontDoor`), remotely through the intake of the `hearth serve` the REST client talks to.
"""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator
from typing import Protocol

from core.assistant import Assistant
from core.code.completion import Completer
from core.code.context import CodeContext
from core.code.service import CodeService
from core.code.workbench import CodeModel
from core.contracts import Answer, Ask, Code, Completion, Delta, Kind, Request, Retriever
from core.intake import Intake
from core.intake_metrics import METRICS
from core.llm.base import Priority
from core.refusals import Refusal, Refused


class CodeBackend(Protocol):
    """A mode of the language server: the model the code workbench calls, and what to close at shutdown."""

    label: str

    @property
    def model(self) -> CodeModel:
        """The model calls (explain, generate, tests, ask, workspace context)."""
        ...

    async def aclose(self) -> None:
        """Release connections and models."""
        ...


class FrontDoor:
    """The code model behind the intake: every call is an ``Ask`` from the editor (checks, metrics)."""

    def __init__(self, intake: Intake, code: CodeService, *, user: str, acl: frozenset[str]) -> None:
        self.intake = intake
        self.code = code
        self.user = user
        self.acl = acl  # the editor user's grants: team docs are searched as them, never as the operator

    def _request(self, text: str) -> Request:
        return Request(text=text, user=self.user, surface="lsp", acl=self.acl, priority=Priority.EDITOR)

    async def _run(self, ask: Ask) -> AsyncIterator[Delta | Answer]:
        async for event in self.intake.run(ask):
            if isinstance(event, Refusal):
                raise Refused(event)
            yield event

    def _code(self, kind: Kind, code: Code) -> AsyncIterator[Delta | Answer]:
        verb = {Kind.EXPLAIN: "explain", Kind.GENERATE: "generate", Kind.TESTS: "tests for"}[kind]
        return self._run(Ask(kind, self._request(f"{verb} {code.path or code.language} code"), code=code))

    def explain_stream(self, code: Code) -> AsyncIterator[Delta | Answer]:
        """Explain ``code`` through the intake."""
        return self._code(Kind.EXPLAIN, code)

    def generate_stream(self, code: Code) -> AsyncIterator[Delta | Answer]:
        """Implement ``code`` through the intake."""
        return self._code(Kind.GENERATE, code)

    def tests_stream(self, code: Code) -> AsyncIterator[Delta | Answer]:
        """Write tests for ``code`` through the intake."""
        return self._code(Kind.TESTS, code)

    def ask_stream(self, question: str) -> AsyncIterator[Delta | Answer]:
        """Answer a question about the workspace through the intake."""
        return self._run(Ask(Kind.ASK, self._request(question)))

    def complete_stream(self, completion: Completion) -> AsyncIterator[Delta | Answer]:
        """An inline suggestion at the editor's cursor, through the intake."""
        what = f"complete {completion.path or completion.language} code"
        return self._run(Ask(Kind.COMPLETE, self._request(what), completion=completion))

    def completion_stats(self) -> dict[str, object]:
        """What the core's completer did (generations started, finished, cancelled)."""
        engine = self.intake.engine
        return Completer.of(engine).stats.as_dict() if engine is not None else {}

    async def with_workspace_context(
        self, ctx: CodeContext, retriever: Retriever | None = None
    ) -> CodeContext:
        """Workspace context is gathered before the question reaches the front door."""
        return await self.code.with_workspace_context(ctx, retriever)


class InProcessBackend:
    """Runs the core in this process (the default): the assistant's code service, behind the intake."""

    label = "in-process"

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        if assistant.code is None:
            assistant.code = CodeService(assistant)
        intake = Intake(assistant.settings, lambda: assistant, observers=[METRICS])
        lsp = assistant.settings.lsp
        user = lsp.user or getpass.getuser()
        acl = frozenset(lsp.acl) | {f"user:lsp:{user}"}
        self.model: CodeModel = FrontDoor(intake, assistant.code, user=user, acl=acl)

    async def aclose(self) -> None:
        """Free the model."""
        await self.assistant.aclose()
