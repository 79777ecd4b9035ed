"""Where the language server gets model output from: the in-process core or a remote `hearth serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from core.assistant import Assistant
from core.code.context import CodeContext
from core.code.service import CodeService
from core.contracts import Answer, Delta, Retriever


class CodeBackend(Protocol):
    """The streaming code use cases the editor needs (both modes implement it)."""

    label: str

    def explain_stream(
        self, code: str, language: str, path: str | None = None, context: str | None = None
    ) -> AsyncIterator[Delta | Answer]:
        """Stream an explanation."""
        ...

    def generate_stream(
        self, code: str, language: str, path: str | None = None, context: str | None = None
    ) -> AsyncIterator[Delta | Answer]:
        """Stream the continuation of a comment/docstring preamble."""
        ...

    def tests_stream(
        self,
        code: str,
        language: str,
        path: str | None = None,
        context: str | None = None,
        *,
        failures: str | None = None,
        previous: str | None = None,
    ) -> AsyncIterator[Delta | Answer]:
        """Stream a pytest module."""
        ...

    def ask_stream(self, question: str) -> AsyncIterator[Delta | Answer]:
        """Stream an answer to a question about the workspace."""
        ...

    async def enrich(self, ctx: CodeContext, retriever: Retriever | None = None) -> CodeContext:
        """Add retrieved workspace chunks where this mode can (never fails)."""
        ...

    async def aclose(self) -> None:
        """Release connections and models."""
        ...


class InProcessBackend:
    """Runs the core in this process (the default)."""

    label = "in-process"

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.service: CodeService = assistant.code or CodeService(assistant)

    def explain_stream(
        self, code: str, language: str, path: str | None = None, context: str | None = None
    ) -> AsyncIterator[Delta | Answer]:
        """Stream an explanation from the local core."""
        return self.service.explain_stream(code, language, path, context)

    def generate_stream(
        self, code: str, language: str, path: str | None = None, context: str | None = None
    ) -> AsyncIterator[Delta | Answer]:
        """Stream generated code from the local core."""
        return self.service.generate_stream(code, language, path, context)

    def tests_stream(
        self,
        code: str,
        language: str,
        path: str | None = None,
        context: str | None = None,
        *,
        failures: str | None = None,
        previous: str | None = None,
    ) -> AsyncIterator[Delta | Answer]:
        """Stream tests from the local core."""
        return self.service.tests_stream(code, language, path, context, failures=failures, previous=previous)

    def ask_stream(self, question: str) -> AsyncIterator[Delta | Answer]:
        """Stream an answer from the local core."""
        return self.service.ask_stream(question)

    async def enrich(self, ctx: CodeContext, retriever: Retriever | None = None) -> CodeContext:
        """Add chunks from the workspace index (or the configured document retriever)."""
        return await self.service.with_workspace_context(ctx, retriever)

    async def aclose(self) -> None:
        """Free the model."""
        await self.assistant.aclose()
