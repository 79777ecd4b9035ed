"""The `workspace/executeCommand` handlers: LSP arguments to a core call, its result to edits and messages.

Each handler is typed (pygls structures the JSON argument, see :mod:`lsp.contract`) and runs under
:meth:`HearthServer.run_command`, which reports progress and turns failures into one sentence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from lsprotocol import types

from core.code.workbench import Progress
from core.contracts import Answer
from lsp import edits
from lsp.contract import (
    ASK,
    EXPLAIN,
    GENERATE,
    GENERATE_TESTS,
    RUN_TESTS,
    Applied,
    AskArgs,
    CodeArgs,
    GeneratedTests,
    RunReport,
    RunTestsArgs,
    Shown,
)
from lsp.documents import overlay, target_of, unchanged, uri_of
from lsp.language_server import HearthServer

_REPORT_EVERY_S = 0.25


def _streaming(report: Progress, what: str) -> Progress:
    """Progress while tokens stream (throttled so the editor is not flooded)."""
    chars = 0
    last = 0.0

    def on_delta(text: str) -> None:
        nonlocal chars, last
        chars += len(text)
        now = time.monotonic()
        if now - last >= _REPORT_EVERY_S:
            last = now
            report(f"{what}… {chars} characters")

    return on_delta


def _footer(answer: Answer) -> str:
    served = f"{answer.model} ({answer.backend})" if answer.model else answer.backend
    notes = "".join(f"\n\n> {n}" for n in answer.notices)
    return f"{notes}\n\n---\n*Hearth · {served} · {answer.timings_ms.get('total', 0) / 1000:.1f}s*\n"


async def _show(ls: HearthServer, markdown: str, name: str, answer: Answer) -> Shown:
    """Open ``markdown`` as a document when the client can; else show it as a message."""
    uri = None
    if ls.supports_show_document:
        folder = ls.settings.path("lsp", "explanations")
        path = folder / f"{name}.md"

        def write() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(markdown, encoding="utf-8")

        await asyncio.to_thread(write)
        shown = await ls.window_show_document_async(
            types.ShowDocumentParams(uri=uri_of(path), take_focus=False)
        )
        uri = uri_of(path) if shown.success else None
    if uri is None:
        ls.notify_user(markdown)
    return Shown(markdown, uri, answer.model, answer.backend)


async def explain(ls: HearthServer, args: CodeArgs) -> Shown:
    """Explain the selection (or the function at the cursor) as a Markdown document."""

    async def work(report: Progress) -> Shown:
        target = target_of(ls, args)
        ctx = target.ctx
        report("asking the model")
        raw, answer = await ls.code.explain(
            ctx, retriever=ls.workspace_index, on_delta=_streaming(report, "explaining")
        )
        what = (
            ctx.enclosing.name
            if not ctx.selection.strip() and ctx.enclosing
            else f"line {ctx.start_line + 1}"
        )
        body = raw.strip() or "(the model returned nothing)"
        markdown = f"# {target.rel} — {what}\n\n{body}{_footer(answer)}"
        return await _show(ls, markdown, f"explain-{Path(target.rel).stem}-{ctx.start_line + 1}", answer)

    return await ls.run_command("Hearth: Explain", work)


async def ask(ls: HearthServer, args: AskArgs) -> Shown:
    """Answer a question about the workspace."""

    async def work(report: Progress) -> Shown:
        # An empty, binary or too-long question is refused by the core's intake, as on every surface.
        raw, answer = await ls.code.ask(args.question, on_delta=_streaming(report, "answering"))
        markdown = f"# {args.question.strip()[:80]}\n\n{answer.text.strip() or raw.strip()}{_footer(answer)}"
        return await _show(ls, markdown, "ask", answer)

    return await ls.run_command("Hearth: Ask", work)


async def generate(ls: HearthServer, args: CodeArgs) -> Applied:
    """Implement the comment, TODO or docstring at the cursor, as an undoable workspace edit."""

    async def work(report: Progress) -> Applied:
        target = target_of(ls, args)
        report("asking the model")
        made = await ls.code.generate(
            target.ctx, retriever=ls.workspace_index, on_delta=_streaming(report, "generating")
        )
        unchanged(ls, target)
        applied = await edits.replace_target(
            ls, target.uri, target.ctx.source, made.target, made.code, "Hearth: Generate"
        )
        return Applied(applied, made.code, made.answer.model, made.answer.backend)

    return await ls.run_command("Hearth: Generate", work)


async def generate_tests(ls: HearthServer, args: CodeArgs) -> GeneratedTests:
    """Write a pytest file for the function at the cursor (a new file, or appended to the existing one)."""

    async def work(report: Progress) -> GeneratedTests:
        target = target_of(ls, args)
        report("asking the model")
        tests = await ls.code.write_tests(
            target.ctx,
            target.root,
            retriever=ls.workspace_index,
            on_delta=_streaming(report, "writing tests"),
        )
        applied, uri = await edits.add_tests(ls, target.root, tests, "Hearth: Generate tests")
        return GeneratedTests(applied, uri, tests.path, tests.code, tests.answer.model, tests.answer.backend)

    return await ls.run_command("Hearth: Generate tests", work)


async def run_tests(ls: HearthServer, args: RunTestsArgs) -> RunReport:
    """Run the tests for this file in the sandbox; failures become diagnostics; optionally repair them."""

    async def work(report: Progress) -> RunReport:
        target = target_of(ls, args)
        buffers = await asyncio.to_thread(overlay, ls, target.root)
        outcome = await ls.code.run_tests(target.ctx, target.root, buffers, fix=args.fix, progress=report)
        run = outcome.run
        edits.publish(ls, target.root, run, outcome.texts)
        if outcome.repaired_tests is not None:
            await edits.replace_file(
                ls, target.root / run.test_path, outcome.tests, outcome.repaired_tests, "Hearth: Repair tests"
            )
        if (fixed := outcome.repaired_code) is not None:
            unchanged(ls, target)
            await edits.replace_target(
                ls, target.uri, target.ctx.source, fixed.target, fixed.code, "Hearth: Repair code"
            )
        ls.notify_user(
            run.summary() + ("" if not run.notes else " " + " ".join(run.notes)),
            types.MessageType.Info if run.ok else types.MessageType.Warning,
        )
        return RunReport(
            passed=run.passed,
            failed=len(run.failures),
            ok=run.ok,
            summary=run.summary(),
            repaired=outcome.repaired,
            timed_out=run.result.timed_out,
            output=run.result.output[-4000:],
            notes=run.notes,
            isolation=run.result.isolation,
            failures=run.failures,
        )

    return await ls.run_command("Hearth: Run tests", work)


HANDLERS: dict[str, Callable[..., Awaitable[object]]] = {
    EXPLAIN: explain,
    GENERATE: generate,
    GENERATE_TESTS: generate_tests,
    RUN_TESTS: run_tests,
    ASK: ask,
}
"""Every command by name; pygls reads each handler's annotations to structure its argument."""
