"""The model calls of the code use cases: explain, generate and write tests, as token streams.

::

    code = CodeService(assistant)
    async for event in code.explain_stream("def f(): ...", "python", path="pkg/mod.py"):
        ...                                     # Delta(text) … then the Answer

The streams take plain strings, so the REST endpoints (``/v1/code/explain|generate|tests``) and the
in-process editor call the same thing. What the model returned becomes code, tests run and repairs
loop in :class:`core.code.workbench.CodeWorkbench`, on whichever side of the wire holds the workspace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypedDict

from core.code.context import CodeContext, require_runnable
from core.code.generation import extract_tests, preamble_for_tests, with_imports
from core.contracts import Answer, Code, Delta, Request, Retriever
from core.errors import InputError
from core.llm.base import Priority

log = logging.getLogger(__name__)

_RETRIEVAL_TIMEOUT_S = 2.0


class PromptBudget(Protocol):
    """How many prompt characters fit the model's context window."""

    @property
    def prompt_budget_chars(self) -> int:
        """Characters the rendered prompt may take."""
        ...


class _Variables(TypedDict, total=False):
    """What the generate and tests templates take beyond the language, path, context and failures."""

    code: str
    preamble: str
    previous: str | None


class PromptRunner(Protocol):
    """What the code service needs of the assistant: its budget, its retriever, templated streams."""

    @property
    def limits(self) -> PromptBudget:
        """The prompt budget."""
        ...

    @property
    def retriever(self) -> Retriever | None:
        """The configured document retriever, if any."""
        ...

    def complete_stream(
        self, template: str, request: Request, *, max_tokens: int | None = None, **variables: object
    ) -> AsyncIterator[Delta | Answer]:
        """Render ``template`` with ``variables`` and stream the model's output."""
        ...

    def ask_stream(self, request: Request) -> AsyncIterator[Delta | Answer]:
        """Answer a question like any other ask."""
        ...


def _request(text: str, request: Request | None) -> Request:
    return request or Request(text=text[:200] or "code", surface="lsp", priority=Priority.EDITOR)


class CodeService:
    """Explain, generate and write tests as model streams, over one assistant (a :class:`PromptRunner`)."""

    def __init__(self, assistant: PromptRunner) -> None:
        self.assistant = assistant

    def _clip(self, code: str, context: str | None) -> tuple[str, str | None]:
        budget = self.assistant.limits.prompt_budget_chars
        code = code.strip("\n")
        if not code.strip():
            raise InputError("Nothing to work on: select some code.", key="empty_code")
        if "\x00" in code:
            raise InputError(
                "The selection contains binary data; Hearth works on text source code.", key="binary"
            )
        code = code[: budget // 2]
        if context:
            context = context[: max(0, budget // 2 - len(code))] or None
        return code, context

    async def with_workspace_context(
        self, ctx: CodeContext, retriever: Retriever | None = None
    ) -> CodeContext:
        """Add retrieved workspace chunks (``retriever``, else the assistant's); never fails or waits long."""
        retriever = retriever or self.assistant.retriever
        if retriever is None:
            return ctx
        lines = ctx.source.splitlines()
        query = (
            ctx.selection.strip()
            or (ctx.enclosing.text if ctx.enclosing else "")
            or "\n".join(lines[max(0, ctx.start_line - 2) : ctx.end_line + 3])
        )
        try:
            hits = await asyncio.wait_for(retriever.search(query[:1000], acl=None, k=3), _RETRIEVAL_TIMEOUT_S)
        except Exception as exc:  # retrieval is a nicety here; the request goes on without it
            log.info("workspace retrieval skipped: %s", exc)
            return ctx
        own = ctx.path.replace("\\", "/")
        chunks = [f"# {h.uri} {h.location}\n{h.text[:800]}" for h in hits if not h.uri.endswith(own)]
        return ctx.with_retrieved(chunks)

    def explain_stream(self, code: Code, *, request: Request | None = None) -> AsyncIterator[Delta | Answer]:
        """Stream a Markdown explanation of ``code.code`` (any language)."""
        text, context = self._clip(code.code, code.context)
        return self.assistant.complete_stream(
            "explain",
            _request(text, request),
            code=text,
            language=code.language or "text",
            path=code.path,
            context=context,
        )

    def generate_stream(self, code: Code, *, request: Request | None = None) -> AsyncIterator[Delta | Answer]:
        """Stream the model's continuation of ``code.code`` (a comment, TODO or function head to implement)."""
        return self._runnable("generate", code, request, lambda text: _Variables(preamble=text))

    def tests_stream(self, code: Code, *, request: Request | None = None) -> AsyncIterator[Delta | Answer]:
        """Stream tests for ``code.code`` at workspace-relative ``code.path``.

        The deltas are the model's words as it writes them (it continues the preamble); the final
        Answer's text is the whole runnable pytest module, imports included, checked to parse and to
        hold a test (GenerationRejected otherwise) — what REST clients and the editor both get.
        """
        preamble: list[str] = []

        def variables(text: str) -> _Variables:
            preamble.append(preamble_for_tests(text, code.path or "module.py"))
            return _Variables(
                code=text, preamble=preamble[0], previous=code.previous[:3000] if code.previous else None
            )

        return _as_test_module(self._runnable("tests", code, request, variables), preamble)

    def _runnable(
        self,
        template: str,
        code: Code,
        request: Request | None,
        extra: Callable[[str], _Variables],
    ) -> AsyncIterator[Delta | Answer]:
        """A template over code Hearth can run (Python): the language check, the clip, the stream."""
        require_runnable(code.language, code.path or "code")
        text, context = self._clip(code.code, code.context)
        return self.assistant.complete_stream(
            template,
            _request(text, request),
            language=code.language,
            path=code.path,
            context=context,
            failures=code.failures,
            **extra(text),
        )

    def ask_stream(self, question: str, *, request: Request | None = None) -> AsyncIterator[Delta | Answer]:
        """A question about the workspace, answered like any other ask."""
        return self.assistant.ask_stream(
            request or Request(text=question, surface="lsp", priority=Priority.EDITOR)
        )


async def _as_test_module(stream: AsyncIterator[Delta | Answer], preamble: list[str]) -> AsyncIterator[Delta | Answer]:
    """Pass the deltas on; make the final Answer's text the module the preamble and the words form."""
    parts: list[str] = []
    async for event in stream:
        if isinstance(event, Delta):
            parts.append(event.text)
            yield event
        else:
            raw = "".join(parts) or event.text
            yield dataclasses.replace(event, text=with_imports(extract_tests(raw, preamble[0]), preamble[0]))
