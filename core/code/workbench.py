"""The editor's code use cases over any model: generate, write tests, run them sandboxed, repair.

::

    bench = CodeWorkbench(CodeService(assistant), Sandbox(settings.sandbox), repair_attempts=2)
    made = await bench.generate(build_context(source, "pkg/mod.py", 12, 12))
    made.code, made.target.start_line     # validated code, indented for the target's lines
    outcome = await bench.run_tests(ctx, workspace, overlay, fix="tests")
    outcome.run.failures, outcome.repaired_tests

The model is a :class:`CodeModel`: :class:`~core.code.service.CodeService` where the model runs, or
the REST client of ``hearth lsp --server``. The loops run where the workspace is, because the sandbox
runs the user's files; only the model calls cross the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from core.code.context import CodeContext, require_runnable
from core.code.generation import (
    GenerationTarget,
    extract_generated,
    extract_tests,
    find_target,
    indent_block,
    is_test_module,
    module_name,
    path_for_tests,
    preamble_for_tests,
    rewrite_target,
    splice,
    with_imports,
)
from core.code.sandbox import Sandbox
from core.code.testrun import PytestRun, run_pytest
from core.contracts import Answer, Code, Delta, Retriever
from core.errors import InputError

Fix = Literal["tests", "code"]
"""What a failing test run may repair: the tests, or the function under test."""

Progress = Callable[[str], None]
"""Receives one line per step (``running tests/test_x.py in the sandbox``) or per streamed delta."""


def _silent(message: str) -> None:
    """Progress for a caller that does not listen."""


class CodeModel(Protocol):
    """The model calls the code use cases make (in process: CodeService; over REST: lsp.remote)."""

    def explain_stream(self, code: Code) -> AsyncIterator[Delta | Answer]:
        """Stream an explanation."""
        ...

    def generate_stream(self, code: Code) -> AsyncIterator[Delta | Answer]:
        """Stream the continuation of a comment, TODO or function head."""
        ...

    def tests_stream(self, code: Code) -> AsyncIterator[Delta | Answer]:
        """Stream a pytest module (a repair round adds the failures and the previous tests)."""
        ...

    def ask_stream(self, question: str) -> AsyncIterator[Delta | Answer]:
        """Stream an answer to a question about the workspace."""
        ...

    async def with_workspace_context(
        self, ctx: CodeContext, retriever: Retriever | None = None
    ) -> CodeContext:
        """Add retrieved workspace chunks where this model can (never fails)."""
        ...


async def collect(
    stream: AsyncIterator[Delta | Answer], on_delta: Progress | None = None
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


@dataclass(frozen=True)
class Generated:
    """Validated code for ``target``, indented in place, and the answer it came from."""

    code: str
    target: GenerationTarget
    answer: Answer


@dataclass(frozen=True)
class WrittenTests:
    """A validated pytest module, where it goes (workspace-relative) and the answer it came from."""

    path: str
    code: str
    answer: Answer


@dataclass(frozen=True)
class CodeRepair:
    """A rewritten function that makes the tests pass."""

    target: GenerationTarget  # the function's lines in the source as it was
    source: str  # the whole repaired file
    code: str  # what replaces the target's lines


@dataclass
class RunOutcome:
    """A test run, and what a repair changed (nothing is applied: that is the surface's job)."""

    run: PytestRun
    tests: str  # the test file as it was first run
    texts: dict[str, str] = field(default_factory=dict)  # the files the failures point into
    repaired_tests: str | None = None
    repaired_code: CodeRepair | None = None

    @property
    def repaired(self) -> bool:
        """Whether a repair made the tests pass."""
        return self.repaired_tests is not None or self.repaired_code is not None


class CodeWorkbench:
    """Generate, write tests, run them sandboxed and repair them, over one model and one sandbox."""

    def __init__(self, model: CodeModel, sandbox: Sandbox, *, repair_attempts: int) -> None:
        self.model = model
        self.sandbox = sandbox
        self.repair_attempts = repair_attempts

    async def explain(
        self, ctx: CodeContext, *, retriever: Retriever | None = None, on_delta: Progress | None = None
    ) -> tuple[str, Answer]:
        """The model's explanation of the selection (or the definition around it), raw and as an Answer."""
        code = ctx.code
        ctx = await self.model.with_workspace_context(ctx, retriever)
        stream = self.model.explain_stream(Code(code, ctx.language, ctx.path, ctx.prompt_context or None))
        return await collect(stream, on_delta)

    async def ask(self, question: str, *, on_delta: Progress | None = None) -> tuple[str, Answer]:
        """An answer to a question about the workspace, raw and as an Answer."""
        return await collect(self.model.ask_stream(question), on_delta)

    async def generate(
        self, ctx: CodeContext, *, retriever: Retriever | None = None, on_delta: Progress | None = None
    ) -> Generated:
        """Code for the comment, TODO or docstring-only function at the cursor; GenerationRejected if unusable."""
        require_runnable(ctx.language, ctx.path)
        target = find_target(ctx.source, ctx.start_line)
        ctx = await self.model.with_workspace_context(ctx, retriever)
        stream = self.model.generate_stream(
            Code(target.preamble, ctx.language, ctx.path, ctx.prompt_context or None)
        )
        raw, answer = await collect(stream, on_delta)
        code = indent_block(extract_generated(raw, target), target.indent).rstrip("\n")
        return Generated(code, target, answer)

    def tests_path(self, path: str, workspace: Path) -> str:
        """Where the tests of workspace-relative ``path`` live."""
        return path_for_tests(path, has_tests_dir=(workspace / "tests").is_dir())

    async def write_tests(
        self,
        ctx: CodeContext,
        workspace: Path,
        *,
        retriever: Retriever | None = None,
        on_delta: Progress | None = None,
    ) -> WrittenTests:
        """A pytest module for the function at the cursor (or the whole file); GenerationRejected if unusable."""
        require_runnable(ctx.language, ctx.path)
        code = ctx.code if (ctx.selection.strip() or ctx.enclosing) else ctx.source
        test_path = self.tests_path(ctx.path, workspace)
        if test_path == ctx.path:
            raise InputError("This is already a test file; run Generate tests from the code under test.")
        ctx = await self.model.with_workspace_context(ctx, retriever)
        tests, answer = await self._tests(code, ctx.path, ctx.prompt_context or None, on_delta=on_delta)
        return WrittenTests(test_path, tests, answer)

    async def _tests(
        self,
        code: str,
        path: str,
        context: str | None,
        *,
        failures: str | None = None,
        previous: str | None = None,
        on_delta: Progress | None = None,
    ) -> tuple[str, Answer]:
        stream = self.model.tests_stream(Code(code, "python", path, context, failures, previous))
        raw, answer = await collect(stream, on_delta)
        if is_test_module(answer.text):  # the core's tests stream ends in the whole, checked module
            return answer.text, answer
        # A server or model that answers with the model's raw words (a fenced block, a continuation).
        preamble = preamble_for_tests(code, path)
        return with_imports(extract_tests(raw, preamble), preamble), answer

    async def run_file(
        self, workspace: Path, test_path: str, overlay: dict[str, str] | None = None
    ) -> PytestRun:
        """Run one workspace-relative test file on a sandboxed copy of ``workspace`` (``overlay`` on top)."""
        return await run_pytest(self.sandbox, workspace, test_path, overlay)

    async def run_tests(
        self,
        ctx: CodeContext,
        workspace: Path,
        overlay: dict[str, str],
        *,
        fix: Fix | None = None,
        progress: Progress = _silent,
    ) -> RunOutcome:
        """Run the tests of ``ctx``'s file (``overlay``: unsaved buffers); with ``fix``, repair until they pass."""
        require_runnable(ctx.language, ctx.path)
        test_path = self.tests_path(ctx.path, workspace)
        overlay = dict(overlay)
        tests = overlay.get(test_path)
        if tests is None and (workspace / test_path).is_file():
            tests = await asyncio.to_thread((workspace / test_path).read_text, encoding="utf-8")
        if tests is None:
            raise InputError(f"No tests at {test_path} yet — run 'Hearth: Generate tests' first.")
        overlay[test_path] = tests
        progress(f"running {test_path} in the sandbox")
        run = await self.run_file(workspace, test_path, overlay)
        outcome = RunOutcome(run, tests)
        if not run.ok and fix is not None and self.repair_attempts:
            if fix == "code":
                if test_path == ctx.path:
                    raise InputError("To repair the code, run the tests from the function under test.")
                outcome.run, outcome.repaired_code = await self.repair_code(
                    workspace, run, overlay, ctx, progress
                )
            else:
                source: tuple[str, str] | None = (ctx.path, ctx.source)
                if test_path == ctx.path:
                    source = await asyncio.to_thread(_source_for_tests, workspace, tests, test_path)
                outcome.run, outcome.repaired_tests = await self.repair_tests(
                    workspace, run, overlay, source, progress
                )
        outcome.texts = {**overlay, test_path: outcome.repaired_tests or tests}
        if outcome.repaired_code is not None:
            outcome.texts[ctx.path] = outcome.repaired_code.source
        return outcome

    async def repair_tests(
        self,
        workspace: Path,
        run: PytestRun,
        overlay: dict[str, str],
        source: tuple[str, str] | None,
        progress: Progress = _silent,
    ) -> tuple[PytestRun, str | None]:
        """Rewrite failing tests of ``source`` (path, text) until they pass; the last run and the new tests."""
        if source is None:
            run.notes.append("Repair skipped: could not tell which module these tests are for.")
            return run, None
        source_path, source_text = source
        module_name(source_path)  # fails clearly when the module cannot be imported by tests

        async def propose(failures: str, previous: str) -> str:
            progress("asking the model to repair the tests")
            tests, _ = await self._tests(source_text, source_path, None, failures=failures, previous=previous)
            return tests

        start = overlay.get(run.test_path, "")
        rerunning = "re-running the repaired tests"
        return await self._repair(workspace, run, overlay, run.test_path, start, propose, rerunning, progress)

    async def repair_code(
        self,
        workspace: Path,
        run: PytestRun,
        overlay: dict[str, str],
        ctx: CodeContext,
        progress: Progress = _silent,
    ) -> tuple[PytestRun, CodeRepair | None]:
        """Rewrite the function at ``ctx``'s cursor until the tests pass; the last run and the repair."""
        original = rewrite_target(ctx.source, ctx.start_line, "")  # fails clearly outside a function

        async def propose(failures: str, current: str) -> str:
            spot = rewrite_target(current, ctx.start_line, failures)
            progress(f"asking the model to repair {spot.name}()")
            raw, _ = await collect(self.model.generate_stream(Code(spot.preamble, "python", ctx.path)))
            return splice(current, spot, extract_generated(raw, spot))

        rerunning = "re-running the tests against the repaired code"
        run, fixed = await self._repair(
            workspace, run, overlay, ctx.path, ctx.source, propose, rerunning, progress
        )
        if fixed is None:
            return run, None
        new_lines = fixed.splitlines()
        grown = len(new_lines) - len(ctx.source.splitlines())
        code = "\n".join(new_lines[original.start_line : original.end_line + 1 + grown])
        return run, CodeRepair(original, fixed, code)

    async def _repair(
        self,
        workspace: Path,
        run: PytestRun,
        overlay: dict[str, str],
        path: str,
        current: str,
        propose: Callable[[str, str], Awaitable[str]],
        rerunning: str,
        progress: Progress,
    ) -> tuple[PytestRun, str | None]:
        """Rounds of ``propose(failures, current text of path)`` and a re-run, at most ``repair_attempts``.

        A proposal the model botched (an InputError) becomes a note and the next round tries again.
        Returns the last run and the text of ``path`` that made every test pass, or None.
        """
        notes = list(run.notes)
        for attempt in range(self.repair_attempts):
            if run.ok:
                break
            try:
                candidate = await propose(run.failure_text(), current)
            except InputError as exc:
                notes.append(f"Repair {attempt + 1}: {exc}")
                continue
            progress(rerunning)
            run = await self.run_file(workspace, run.test_path, {**overlay, path: candidate})
            notes.append(f"Repair {attempt + 1}: {run.summary()}")
            run.notes = list(notes)
            current = candidate
            if run.ok:
                return run, candidate
        run.notes = notes
        return run, None


def _source_for_tests(root: Path, test_text: str, rel: str) -> tuple[str, str] | None:
    """The module a test file tests (its first workspace import), as (relative path, text)."""
    for line in test_text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("from", "import"):
            candidate = words[1].replace(".", "/") + ".py"
            for base in ("", "src/"):
                path = root / (base + candidate)
                if path.is_file() and (base + candidate) != rel:
                    return base + candidate, path.read_text(encoding="utf-8")
    return None
