"""The `workspace/executeCommand` handlers: hearth.explain, generate, generateTests, runTests, ask."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import from_fs_path

from core.code.context import CodeContext, build_context, language_of, require_runnable
from core.code.generation import (
    GenerationTarget,
    extract_generated,
    extract_tests,
    find_target,
    indent_block,
    module_name,
    path_for_tests,
    preamble_for_tests,
    rewrite_target,
    splice,
)
from core.code.sandbox import Sandbox
from core.code.service import collect, repair_loop
from core.code.testrun import PytestRun, run_pytest
from core.contracts import Answer
from core.errors import InputError

if TYPE_CHECKING:
    from lsp.server import HearthServer

_REPORT_EVERY_S = 0.25


@dataclass(frozen=True)
class Target:
    """The document and range a command is about."""

    uri: str
    root: Path
    rel: str
    ctx: CodeContext
    version: int | None


def _argument(args: list[Any], command: str) -> dict[str, Any]:
    if not args or not isinstance(args[0], dict) or "uri" not in args[0]:
        raise InputError(f"{command} needs an argument {{'uri': ..., 'range': ...}} (code actions pass it).")
    return args[0]


def _position(value: Any, default: int = 0) -> tuple[int, int]:
    if isinstance(value, dict):
        return int(value.get("line", default)), int(value.get("character", 0))
    return default, 0


def _root(ls: HearthServer, path: Path) -> Path:
    root = ls.workspace.root_path
    if root and path.is_relative_to(Path(root)):
        return Path(root)
    return path.parent


def _target(ls: HearthServer, args: list[Any], command: str) -> Target:
    arg = _argument(args, command)
    uri = str(arg["uri"])
    doc = ls.workspace.get_text_document(uri)
    if not doc.path:
        raise InputError("Hearth works on files saved in the workspace; save this buffer first.")
    path = Path(doc.path)
    root = _root(ls, path)
    rel = path.relative_to(root).as_posix()
    rng = arg.get("range") or {}
    line = int(arg.get("line", 0))
    start = _position(rng.get("start"), line)
    end = _position(rng.get("end"), start[0])
    try:
        source = doc.source
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read {rel}: open and save it as UTF-8 text, then try again.") from exc
    lines = source.splitlines()
    selection = ""
    if start != end and lines:
        lo = doc.offset_at_position(types.Position(line=start[0], character=start[1]))
        hi = doc.offset_at_position(types.Position(line=end[0], character=end[1]))
        selection = source[lo:hi]
    if lines:
        start = (min(start[0], len(lines) - 1), start[1])
        end = (min(end[0], len(lines) - 1), end[1])
    ctx = build_context(
        source, rel, start[0], end[0], selection=selection, language=language_of(rel, doc.language_id)
    )
    return Target(uri, root, rel, ctx, doc.version)


def _reporter(report: Callable[[str], None], what: str) -> Callable[[str], None]:
    """Progress while tokens stream (throttled so the editor is not flooded)."""
    state = {"chars": 0, "last": 0.0}

    def on_delta(text: str) -> None:
        state["chars"] += len(text)
        now = time.monotonic()
        if now - state["last"] >= _REPORT_EVERY_S:
            state["last"] = now
            report(f"{what}… {int(state['chars'])} characters")

    return on_delta


def _footer(answer: Answer) -> str:
    served = f"{answer.model} ({answer.backend})" if answer.model else answer.backend
    notes = "".join(f"\n\n> {n}" for n in answer.notices)
    return f"{notes}\n\n---\n*Hearth · {served} · {answer.timings_ms.get('total', 0) / 1000:.1f}s*\n"


async def _show_markdown(ls: HearthServer, markdown: str, name: str) -> str | None:
    """Open ``markdown`` as a document when the client can; else show it as a message."""
    if ls.supports_show_document:
        folder = ls.settings.path("lsp", "explanations")
        path = folder / f"{name}.md"

        def write() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(markdown, encoding="utf-8")

        await asyncio.to_thread(write)
        uri = from_fs_path(str(path)) or path.as_uri()
        result = await ls.window_show_document_async(types.ShowDocumentParams(uri=uri, take_focus=False))
        if result.success:
            return uri
    ls.notify_user(markdown)
    return None


async def explain(ls: HearthServer, args: list[Any]) -> Any:
    """Explain the selection (or the function at the cursor) as a Markdown document."""

    async def work(report: Callable[[str], None]) -> dict[str, Any]:
        target = _target(ls, args, "hearth.explain")
        ctx = await ls.backend.enrich(target.ctx, ls.workspace_index)
        report("asking the model")
        stream = ls.backend.explain_stream(ctx.code, ctx.language, target.rel, ctx.prompt_context or None)
        raw, answer = await collect(stream, _reporter(report, "explaining"))
        what = (
            ctx.enclosing.name
            if not ctx.selection.strip() and ctx.enclosing
            else f"line {ctx.start_line + 1}"
        )
        markdown = (
            f"# {target.rel} — {what}\n\n{raw.strip() or '(the model returned nothing)'}{_footer(answer)}"
        )
        stem = Path(target.rel).stem
        uri = await _show_markdown(ls, markdown, f"explain-{stem}-{ctx.start_line + 1}")
        return {"markdown": markdown, "uri": uri, "model": answer.model, "backend": answer.backend}

    return await ls.run_command("Hearth: Explain", work)


async def ask(ls: HearthServer, args: list[Any]) -> Any:
    """Answer a question about the workspace."""
    question = args[0].get("question") if args and isinstance(args[0], dict) else (args[0] if args else "")

    async def work(report: Callable[[str], None]) -> dict[str, Any]:
        if not isinstance(question, str) or not question.strip():
            raise InputError("hearth.ask needs a question, e.g. {'question': 'Where is auth handled?'}.")
        raw, answer = await collect(ls.backend.ask_stream(question), _reporter(report, "answering"))
        markdown = f"# {question.strip()[:80]}\n\n{answer.text.strip() or raw.strip()}{_footer(answer)}"
        uri = await _show_markdown(ls, markdown, "ask")
        return {"markdown": markdown, "uri": uri, "model": answer.model, "backend": answer.backend}

    return await ls.run_command("Hearth: Ask", work)


async def _apply(ls: HearthServer, edit: types.WorkspaceEdit, label: str) -> bool:
    result = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label=label))
    if not result.applied:
        reason = f": {result.failure_reason}" if result.failure_reason else ""
        ls.notify_user(f"The editor did not apply Hearth's change{reason}.", types.MessageType.Warning)
    return bool(result.applied)


def _unchanged(ls: HearthServer, target: Target) -> None:
    if ls.workspace.get_text_document(target.uri).version != target.version:
        raise InputError(
            f"{target.rel} changed while Hearth was working, so nothing was applied; run it again."
        )


async def generate(ls: HearthServer, args: list[Any]) -> Any:
    """Implement the comment, TODO or docstring at the cursor, as an undoable workspace edit."""

    async def work(report: Callable[[str], None]) -> dict[str, Any]:
        target = _target(ls, args, "hearth.generate")
        ctx = target.ctx
        require_runnable(ctx.language, target.rel)
        spot = find_target(ctx.source, ctx.start_line)
        ctx = await ls.backend.enrich(ctx, ls.workspace_index)
        report("asking the model")
        stream = ls.backend.generate_stream(
            spot.preamble, ctx.language, target.rel, ctx.prompt_context or None
        )
        raw, answer = await collect(stream, _reporter(report, "generating"))
        code = indent_block(extract_generated(raw, spot), spot.indent).rstrip("\n")
        _unchanged(ls, target)
        lines = ctx.source.splitlines()
        rng = types.Range(
            start=types.Position(line=spot.start_line, character=0),
            end=types.Position(line=spot.end_line, character=len(lines[spot.end_line])),
        )
        edit = types.WorkspaceEdit(changes={target.uri: [types.TextEdit(range=rng, new_text=code)]})
        applied = await _apply(ls, edit, "Hearth: Generate")
        return {"applied": applied, "code": code, "model": answer.model, "backend": answer.backend}

    return await ls.run_command("Hearth: Generate", work)


def _supports_create(ls: HearthServer) -> bool:
    ws = ls.client_capabilities.workspace
    ops = ws.workspace_edit.resource_operations if ws and ws.workspace_edit else None
    return bool(ops and types.ResourceOperationKind.Create in ops)


def _document_text(ls: HearthServer, path: Path) -> str | None:
    """The open buffer's text for ``path``, else the file on disk, else None."""
    uri = from_fs_path(str(path)) or path.as_uri()
    doc = ls.workspace.text_documents.get(uri)
    if doc is not None:
        return str(doc.source)
    return path.read_text(encoding="utf-8") if path.is_file() else None


async def generate_tests(ls: HearthServer, args: list[Any]) -> Any:
    """Write a pytest file for the function at the cursor (a new file, or appended to the existing one)."""

    async def work(report: Callable[[str], None]) -> dict[str, Any]:
        target = _target(ls, args, "hearth.generateTests")
        ctx = target.ctx
        require_runnable(ctx.language, target.rel)
        code = ctx.code if (ctx.selection.strip() or ctx.enclosing) else ctx.source
        test_rel = path_for_tests(target.rel, has_tests_dir=(target.root / "tests").is_dir())
        if test_rel == target.rel:
            raise InputError("This is already a test file; run Generate tests from the code under test.")
        ctx = await ls.backend.enrich(ctx, ls.workspace_index)
        report("asking the model")
        stream = ls.backend.tests_stream(code, "python", target.rel, ctx.prompt_context or None)
        raw, answer = await collect(stream, _reporter(report, "writing tests"))
        tests = extract_tests(raw, preamble_for_tests(code, target.rel))
        test_path = target.root / test_rel
        test_uri = from_fs_path(str(test_path)) or test_path.as_uri()
        existing = await asyncio.to_thread(_document_text, ls, test_path)
        if existing is not None:
            end_line = len(existing.splitlines())
            sep = "\n\n\n" if existing.strip() else ""
            at = types.Position(line=end_line, character=0)
            text = ("\n" if existing and not existing.endswith("\n") else "") + sep + tests
            edit = types.WorkspaceEdit(
                changes={test_uri: [types.TextEdit(range=types.Range(start=at, end=at), new_text=text)]}
            )
            applied = await _apply(ls, edit, "Hearth: Generate tests")
        elif _supports_create(ls):
            at = types.Position(line=0, character=0)
            edit = types.WorkspaceEdit(
                document_changes=[
                    types.CreateFile(uri=test_uri, options=types.CreateFileOptions(ignore_if_exists=True)),
                    types.TextDocumentEdit(
                        text_document=types.OptionalVersionedTextDocumentIdentifier(
                            uri=test_uri, version=None
                        ),
                        edits=[types.TextEdit(range=types.Range(start=at, end=at), new_text=tests)],
                    ),
                ]
            )
            applied = await _apply(ls, edit, "Hearth: Generate tests")
        else:
            # The client cannot create files through an edit: write it ourselves and open it.
            await asyncio.to_thread(_write_new, test_path, tests)
            applied = True
            ls.notify_user(f"Hearth wrote {test_rel}.")
        return {
            "applied": applied,
            "uri": test_uri,
            "path": test_rel,
            "code": tests,
            "model": answer.model,
            "backend": answer.backend,
        }

    return await ls.run_command("Hearth: Generate tests", work)


def _write_new(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as fh:
        fh.write(text)


def _overlay(ls: HearthServer, root: Path) -> dict[str, str]:
    """Unsaved editor buffers under ``root``, so the tests run against what the user sees."""
    out: dict[str, str] = {}
    for doc in list(ls.workspace.text_documents.values()):
        if doc.path and Path(doc.path).is_relative_to(root):
            out[Path(doc.path).relative_to(root).as_posix()] = doc.source
    return out


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


def _diagnostics(run: PytestRun, texts: dict[str, str]) -> dict[str, list[types.Diagnostic]]:
    found: dict[str, list[types.Diagnostic]] = {}
    for f in run.failures:
        lines = texts.get(f.path, "").splitlines()
        line = min(f.line, max(0, len(lines) - 1))
        text = lines[line] if lines else ""
        start = len(text) - len(text.lstrip())
        found.setdefault(f.path, []).append(
            types.Diagnostic(
                range=types.Range(
                    start=types.Position(line=line, character=start),
                    end=types.Position(line=line, character=len(text)),
                ),
                message=f"{f.test}: {f.message}",
                severity=types.DiagnosticSeverity.Error,
                source="hearth",
            )
        )
    return found


async def run_tests(ls: HearthServer, args: list[Any]) -> Any:
    """Run the tests for this file in the sandbox; failures become diagnostics; optionally repair them."""

    async def work(report: Callable[[str], None]) -> dict[str, Any]:
        arg = _argument(args, "hearth.runTests")
        target = _target(ls, args, "hearth.runTests")
        require_runnable(target.ctx.language, target.rel)
        root = target.root
        test_rel = path_for_tests(target.rel, has_tests_dir=(root / "tests").is_dir())
        overlay = await asyncio.to_thread(_overlay, ls, root)
        test_text = overlay.get(test_rel)
        if test_text is None and (root / test_rel).is_file():
            test_text = await asyncio.to_thread((root / test_rel).read_text, encoding="utf-8")
        if test_text is None:
            raise InputError(f"No tests at {test_rel} yet — run 'Hearth: Generate tests' first.")
        overlay[test_rel] = test_text
        sandbox = ls.sandbox
        report(f"running {test_rel} in the sandbox")
        run = await run_pytest(sandbox, root, test_rel, overlay)
        repaired = None
        code_fixed: tuple[GenerationTarget, str] | None = None
        attempts = ls.settings.sandbox.repair_attempts
        fix = arg.get("fix")
        if fix not in (None, "tests", "code"):
            raise InputError(f"Unknown fix {fix!r}; use 'tests' or 'code' (or leave it out).")
        if not run.ok and fix == "code" and attempts:
            if test_rel == target.rel:
                raise InputError("To repair the code, run the tests from the function under test.")
            run, code_fixed = await _repair_code(ls, report, run, overlay, sandbox, root, target, attempts)
        if not run.ok and fix == "tests" and attempts:
            if test_rel == target.rel:
                source = await asyncio.to_thread(_source_for_tests, root, test_text, test_rel)
            else:
                source = (target.rel, target.ctx.source)
            if source is None:
                run.notes.append("Repair skipped: could not tell which module these tests are for.")
            else:
                run, repaired = await _repair(ls, report, run, overlay, sandbox, root, source, attempts)
        texts = dict(overlay)
        texts[test_rel] = repaired if repaired is not None else test_text
        if code_fixed is not None:
            texts[target.rel] = code_fixed[1]
        await _publish(ls, root, run, texts)
        if repaired is not None:
            await _replace_file(ls, root / test_rel, test_text, repaired)
        if code_fixed is not None:
            spot, new_source = code_fixed
            _unchanged(ls, target)
            new_lines = new_source.splitlines()
            old_lines = target.ctx.source.splitlines()
            grown = len(new_lines) - len(old_lines)
            body = "\n".join(new_lines[spot.start_line : spot.end_line + 1 + grown])
            rng = types.Range(
                start=types.Position(line=spot.start_line, character=0),
                end=types.Position(line=spot.end_line, character=len(old_lines[spot.end_line])),
            )
            edit = types.WorkspaceEdit(changes={target.uri: [types.TextEdit(range=rng, new_text=body)]})
            await _apply(ls, edit, "Hearth: Repair code")
        ls.notify_user(
            run.summary() + ("" if not run.notes else " " + " ".join(run.notes)),
            types.MessageType.Info if run.ok else types.MessageType.Warning,
        )
        return {
            "passed": run.passed,
            "failed": len(run.failures),
            "ok": run.ok,
            "summary": run.summary(),
            "notes": run.notes,
            "repaired": repaired is not None or code_fixed is not None,
            "timed_out": run.result.timed_out,
            "output": run.result.output[-4000:],
            "isolation": run.result.isolation,
            "failures": [
                {"test": f.test, "path": f.path, "line": f.line, "message": f.message} for f in run.failures
            ],
        }

    return await ls.run_command("Hearth: Run tests", work)


async def _repair(
    ls: HearthServer,
    report: Callable[[str], None],
    run: PytestRun,
    overlay: dict[str, str],
    sandbox: Sandbox,
    root: Path,
    source: tuple[str, str],
    attempts: int,
) -> tuple[PytestRun, str | None]:
    source_rel, source_text = source
    module_name(source_rel)  # fails clearly when the module cannot be imported by tests

    async def write(failures: str, previous: str) -> str:
        report("asking the model to repair the tests")
        stream = ls.backend.tests_stream(
            source_text, "python", source_rel, None, failures=failures, previous=previous
        )
        raw, _ = await collect(stream)
        return extract_tests(raw, preamble_for_tests(source_text, source_rel))

    async def rerun(trial: dict[str, str]) -> PytestRun:
        report("re-running the repaired tests")
        return await run_pytest(sandbox, root, run.test_path, trial)

    return await repair_loop(run, overlay, attempts, write, rerun)


async def _repair_code(
    ls: HearthServer,
    report: Callable[[str], None],
    run: PytestRun,
    overlay: dict[str, str],
    sandbox: Sandbox,
    root: Path,
    target: Target,
    attempts: int,
) -> tuple[PytestRun, tuple[GenerationTarget, str] | None]:
    """Ask the model to rewrite the function at the cursor until the tests pass (at most ``attempts``)."""
    source = target.ctx.source
    notes = list(run.notes)
    for attempt in range(attempts):
        spot = rewrite_target(source, target.ctx.start_line, run.failure_text())
        report(f"asking the model to repair {spot.name}()")
        stream = ls.backend.generate_stream(spot.preamble, "python", target.rel, None)
        raw, _ = await collect(stream)
        try:
            candidate = splice(source, spot, extract_generated(raw, spot))
        except InputError as exc:
            notes.append(f"Repair {attempt + 1}: {exc}")
            continue
        report("re-running the tests against the repaired code")
        run = await run_pytest(sandbox, root, run.test_path, dict(overlay, **{target.rel: candidate}))
        notes.append(f"Repair {attempt + 1}: {run.summary()}")
        run.notes = list(notes)
        source = candidate
        if run.ok:
            return run, (rewrite_target(target.ctx.source, target.ctx.start_line, ""), candidate)
    run.notes = notes
    return run, None


async def _publish(ls: HearthServer, root: Path, run: PytestRun, texts: dict[str, str]) -> None:
    found = _diagnostics(run, texts)
    for rel in set(ls.diagnosed) | set(found) | {run.test_path}:
        path = root / rel
        uri = from_fs_path(str(path)) or path.as_uri()
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=found.get(rel, []))
        )
    ls.diagnosed = set(found)


async def _replace_file(ls: HearthServer, path: Path, old: str, new: str) -> None:
    uri = from_fs_path(str(path)) or path.as_uri()
    lines = old.splitlines()
    end = types.Position(line=len(lines), character=0)
    edit = types.WorkspaceEdit(
        changes={
            uri: [
                types.TextEdit(
                    range=types.Range(start=types.Position(line=0, character=0), end=end), new_text=new
                )
            ]
        }
    )
    await _apply(ls, edit, "Hearth: Repair tests")
