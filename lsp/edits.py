"""What the core produced, as the editor's own changes: workspace edits, new files, diagnostics."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from lsprotocol import types

from core.code.generation import GenerationTarget
from core.code.merge import merge_tests
from core.code.testrun import PytestRun
from core.code.workbench import WrittenTests
from lsp.documents import document_text, uri_of
from lsp.language_server import HearthServer

log = logging.getLogger(__name__)


async def apply(ls: HearthServer, edit: types.WorkspaceEdit, label: str) -> bool:
    """Ask the editor to apply ``edit`` (undoable); a refusal is shown, not raised."""
    result = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label=label))
    if not result.applied:
        reason = f": {result.failure_reason}" if result.failure_reason else ""
        ls.notify_user(f"The editor did not apply Hearth's change{reason}.", types.MessageType.Warning)
    return bool(result.applied)


def _at(line: int, character: int = 0) -> types.Position:
    return types.Position(line=line, character=character)


def _insert(at: types.Position, text: str) -> types.TextEdit:
    return types.TextEdit(range=types.Range(start=at, end=at), new_text=text)


async def replace_target(
    ls: HearthServer, uri: str, source: str, target: GenerationTarget, code: str, label: str
) -> bool:
    """Replace the target's whole lines of ``source`` (the document as it was) with ``code``."""
    last = source.splitlines()[target.end_line]
    rng = types.Range(start=_at(target.start_line), end=_at(target.end_line, len(last)))
    return await apply(
        ls, types.WorkspaceEdit(changes={uri: [types.TextEdit(range=rng, new_text=code)]}), label
    )


async def replace_file(ls: HearthServer, path: Path, old: str, new: str, label: str) -> bool:
    """Replace all of ``path`` (whose text is ``old``) with ``new``."""
    rng = types.Range(start=_at(0), end=_at(len(old.splitlines())))
    edit = types.WorkspaceEdit(changes={uri_of(path): [types.TextEdit(range=rng, new_text=new)]})
    return await apply(ls, edit, label)


def _supports_create(ls: HearthServer) -> bool:
    ws = ls.client_capabilities.workspace
    ops = ws.workspace_edit.resource_operations if ws and ws.workspace_edit else None
    return bool(ops and types.ResourceOperationKind.Create in ops)


async def add_tests(ls: HearthServer, root: Path, tests: WrittenTests, label: str) -> tuple[bool, str]:
    """Add the tests to their file (new names, never shadowing a test there), or create it; then show it.

    Returns (applied, the file's URI). The person is told what was added and renamed.
    """
    path = root / tests.path
    uri = uri_of(path)
    existing = await asyncio.to_thread(document_text, ls, path)
    if existing is not None:
        merged = merge_tests(existing, tests.code)
        if not merged.block.strip():
            ls.notify_user(merged.summary(tests.path))
            return False, uri
        sep = "\n\n\n" if existing.strip() else ""
        text = ("\n" if existing and not existing.endswith("\n") else "") + sep + merged.block
        edit = types.WorkspaceEdit(changes={uri: [_insert(_at(len(existing.splitlines())), text)]})
        applied = await apply(ls, edit, label)
        if applied:
            ls.notify_user(merged.summary(tests.path))
            await show(ls, uri)
        return applied, uri
    applied, uri = await _create_tests(ls, path, uri, tests, label)
    if applied:
        await show(ls, uri)
    return applied, uri


async def show(ls: HearthServer, uri: str) -> None:
    """Open ``uri`` in the editor when it can (``window/showDocument``); a refusal is only logged."""
    window = ls.client_capabilities.window
    if not (window and window.show_document and window.show_document.support):
        return
    try:
        await ls.window_show_document_async(types.ShowDocumentParams(uri=uri, take_focus=True))
    except Exception as exc:  # noqa: BLE001 - the tests are written; not opening them is cosmetic
        log.info("the editor did not open %s: %s", uri, exc)


async def _create_tests(
    ls: HearthServer, path: Path, uri: str, tests: WrittenTests, label: str
) -> tuple[bool, str]:
    if _supports_create(ls):
        edit = types.WorkspaceEdit(
            document_changes=[
                types.CreateFile(uri=uri, options=types.CreateFileOptions(ignore_if_exists=True)),
                types.TextDocumentEdit(
                    text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None),
                    edits=[_insert(_at(0), tests.code)],
                ),
            ]
        )
        return await apply(ls, edit, label), uri
    # The client cannot create files through an edit: write it ourselves and say so.
    await asyncio.to_thread(_write_new, path, tests.code)
    ls.notify_user(f"Hearth wrote {tests.path}.")
    return True, uri


def _write_new(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as fh:
        fh.write(text)


def diagnostics(run: PytestRun, texts: dict[str, str]) -> dict[str, list[types.Diagnostic]]:
    """Each failure as an error on its line (the text of that line, indentation left out)."""
    found: dict[str, list[types.Diagnostic]] = {}
    for f in run.failures:
        lines = texts.get(f.path, "").splitlines()
        line = min(f.line, max(0, len(lines) - 1))
        text = lines[line] if lines else ""
        found.setdefault(f.path, []).append(
            types.Diagnostic(
                range=types.Range(start=_at(line, len(text) - len(text.lstrip())), end=_at(line, len(text))),
                message=f"{f.test}: {f.message}",
                severity=types.DiagnosticSeverity.Error,
                source="hearth",
            )
        )
    return found


def publish(ls: HearthServer, root: Path, run: PytestRun, texts: dict[str, str]) -> None:
    """Publish the run's diagnostics, clearing those of files that no longer fail."""
    found = diagnostics(run, texts)
    for rel in set(ls.diagnosed) | set(found) | {run.test_path}:
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri_of(root / rel), diagnostics=found.get(rel, []))
        )
    ls.diagnosed = set(found)
