"""The code use cases every surface shares: explain, generate, generate tests, run tests (and repair).

::

    code = CodeService(assistant)
    async for event in code.explain_stream("def f(): ...", "python", path="pkg/mod.py"):
        ...                                     # Delta(text) … then the Answer
    made = await code.generate(find_target(source, line), "python", path="pkg/mod.py")
    made.code                                   # validated Python, ready for a workspace edit
    run = await code.run_tests(workspace, "tests/test_mod.py")
    run.failures                                # [Failure(test, path, line, message)]

The streaming methods take plain strings so a REST endpoint (``/v1/code/explain|generate|tests``)
and the in-process editor call the same thing; what the model returned is turned into code by
:func:`code_from_output` / :func:`tests_from_output`, on whichever side of the wire holds the result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from core.assistant import Assistant
from core.code.context import CodeContext, require_runnable
from core.code.generation import (
    GenerationTarget,
    extract_generated,
    extract_tests,
    preamble_for_tests,
)
from core.code.sandbox import Sandbox
from core.code.testrun import PytestRun, run_pytest
from core.contracts import Answer, Delta, Request, Retriever
from core.errors import InputError
from core.llm.base import Priority

log = logging.getLogger(__name__)

_RETRIEVAL_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Generated:
    """Validated code and the answer it came from."""

    code: str
    answer: Answer


def _request(text: str, request: Request | None) -> Request:
    return request or Request(text=text[:200] or "code", surface="lsp", priority=Priority.EDITOR)


async def collect(
    stream: AsyncIterator[Delta | Answer], on_delta: Callable[[str], None] | None = None
) -> tuple[str, Answer]:
    """Drain a stream: the raw text (unstripped, as the model wrote it) and the final Answer."""
    parts: list[str] = []
    answer: Answer | None = None
    async for event in stream:
        if isinstance(event, Delta):
            parts.append(event.text)
            if on_delta is not None:
                on_delta(event.text)
        else:
            answer = event
    if answer is None:
        raise InputError("The model ended without an answer; try again.")
    return ("".join(parts) or answer.text), answer


class CodeService:
    """Explain, generate, write tests, run them sandboxed and repair them, on one Assistant."""

    def __init__(self, assistant: Assistant, sandbox: Sandbox | None = None) -> None:
        self.assistant = assistant
        self.sandbox = sandbox or Sandbox(assistant.settings.sandbox)

    @property
    def _budget(self) -> int:
        return self.assistant.limits.prompt_budget_chars

    def _clip(self, code: str, context: str | None) -> tuple[str, str | None]:
        code = code.strip("\n")
        if not code.strip():
            raise InputError("Nothing to work on: select some code, or put the cursor inside a function.")
        if "\x00" in code:
            raise InputError("The selection contains binary data; Hearth works on text source code.")
        code = code[: self._budget // 2]
        if context:
            context = context[: max(0, self._budget // 2 - len(code))] or None
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

    def explain_stream(
        self,
        code: str,
        language: str,
        path: str | None = None,
        context: str | None = None,
        *,
        request: Request | None = None,
    ) -> AsyncIterator[Delta | Answer]:
        """Stream a Markdown explanation of ``code`` (any language)."""
        code, context = self._clip(code, context)
        return self.assistant.complete_stream(
            "explain",
            _request(code, request),
            code=code,
            language=language or "text",
            path=path,
            context=context,
        )

    def generate_stream(
        self,
        code: str,
        language: str,
        path: str | None = None,
        context: str | None = None,
        *,
        failures: str | None = None,
        request: Request | None = None,
    ) -> AsyncIterator[Delta | Answer]:
        """Stream the model's continuation of ``code`` (a comment, TODO or function head to implement)."""
        require_runnable(language, path or "code")
        code, context = self._clip(code, context)
        return self.assistant.complete_stream(
            "generate",
            _request(code, request),
            preamble=code,
            language=language,
            path=path,
            context=context,
            failures=failures,
        )

    def tests_stream(
        self,
        code: str,
        language: str,
        path: str | None = None,
        context: str | None = None,
        *,
        failures: str | None = None,
        previous: str | None = None,
        request: Request | None = None,
    ) -> AsyncIterator[Delta | Answer]:
        """Stream a pytest module for ``code`` at workspace-relative ``path`` (continues the preamble)."""
        require_runnable(language, path or "code")
        code, context = self._clip(code, context)
        preamble = preamble_for_tests(code, path or "module.py")
        return self.assistant.complete_stream(
            "tests",
            _request(code, request),
            code=code,
            language=language,
            preamble=preamble,
            path=path,
            context=context,
            failures=failures,
            previous=previous[:3000] if previous else None,
        )

    def ask_stream(self, question: str, *, request: Request | None = None) -> AsyncIterator[Delta | Answer]:
        """A question about the workspace, answered like any other ask."""
        return self.assistant.ask_stream(
            request or Request(text=question, surface="lsp", priority=Priority.EDITOR)
        )

    async def generate(
        self,
        target: GenerationTarget,
        language: str,
        path: str | None = None,
        context: str | None = None,
        *,
        on_delta: Callable[[str], None] | None = None,
    ) -> Generated:
        """Validated code for ``target``; GenerationRejected when the model's answer is unusable."""
        raw, answer = await collect(self.generate_stream(target.preamble, language, path, context), on_delta)
        return Generated(extract_generated(raw, target), answer)

    async def generate_tests(
        self,
        code: str,
        path: str,
        context: str | None = None,
        *,
        failures: str | None = None,
        previous: str | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> Generated:
        """A validated pytest module for ``code``; GenerationRejected when unusable."""
        stream = self.tests_stream(code, "python", path, context, failures=failures, previous=previous)
        raw, answer = await collect(stream, on_delta)
        return Generated(extract_tests(raw, preamble_for_tests(code, path)), answer)

    async def run_tests(
        self, workspace: Path, test_path: str, overlay: dict[str, str] | None = None
    ) -> PytestRun:
        """Run one workspace-relative test file in the sandbox."""
        return await run_pytest(self.sandbox, workspace, test_path, overlay)

    async def repair_tests(
        self,
        workspace: Path,
        run: PytestRun,
        code: str,
        source_path: str,
        overlay: dict[str, str],
        attempts: int | None = None,
    ) -> tuple[PytestRun, str | None]:
        """Ask the model to fix failing tests and re-run, at most ``sandbox.repair_attempts`` times."""
        rounds = self.assistant.settings.sandbox.repair_attempts if attempts is None else attempts

        async def write(failures: str, previous: str) -> str:
            made = await self.generate_tests(code, source_path, failures=failures, previous=previous)
            return made.code

        async def rerun(trial: dict[str, str]) -> PytestRun:
            return await self.run_tests(workspace, run.test_path, trial)

        return await repair_loop(run, overlay, rounds, write, rerun)


async def repair_loop(
    run: PytestRun,
    overlay: dict[str, str],
    attempts: int,
    write_tests: Callable[[str, str], Awaitable[str]],
    rerun: Callable[[dict[str, str]], Awaitable[PytestRun]],
) -> tuple[PytestRun, str | None]:
    """Feed failures back to ``write_tests(failures, previous)`` and re-run, up to ``attempts`` times.

    Returns the last run and the repaired test file text when a repair made every test pass.
    """
    previous = overlay.get(run.test_path, "")
    notes = list(run.notes)
    for attempt in range(attempts):
        if run.ok:
            break
        try:
            candidate = await write_tests(run.failure_text(), previous)
        except InputError as exc:
            notes.append(f"Repair {attempt + 1}: {exc}")
            continue
        run = await rerun(dict(overlay, **{run.test_path: candidate}))
        notes.append(f"Repair {attempt + 1}: {run.summary()}")
        run.notes = list(notes)
        previous = candidate
        if run.ok:
            return run, candidate
    run.notes = notes
    return run, None


def code_from_output(output: str, target: GenerationTarget) -> str:
    """Validated code for ``target`` from a model output received over the wire."""
    return extract_generated(output, target)


def tests_from_output(output: str, code: str, path: str) -> str:
    """A validated pytest module from a model output received over the wire."""
    return extract_tests(output, preamble_for_tests(code, path))
