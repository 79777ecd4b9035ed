"""From the editor's documents to the core's view of them: the target of a command, unsaved buffers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types
from pygls.uris import from_fs_path

from core.code.context import CodeContext, build_context, language_of
from core.errors import InputError
from lsp.contract import CodeArgs
from lsp.language_server import HearthServer


@dataclass(frozen=True)
class Target:
    """The document and range a command is about."""

    uri: str
    root: Path
    rel: str
    ctx: CodeContext
    version: int | None


def uri_of(path: Path) -> str:
    """The file:// URI the editor uses for ``path``."""
    return from_fs_path(str(path)) or path.as_uri()


def _root(ls: HearthServer, path: Path) -> Path:
    root = ls.workspace.root_path
    if root and path.is_relative_to(Path(root)):
        return Path(root)
    return path.parent


def _clamp(pos: types.Position, lines: list[str]) -> int:
    return min(pos.line, len(lines) - 1) if lines else pos.line


def target_of(ls: HearthServer, args: CodeArgs) -> Target:
    """The document ``args`` names, as a CodeContext of its range (or line)."""
    doc = ls.workspace.get_text_document(args.uri)
    if not doc.path:
        raise InputError("Hearth works on files saved in the workspace; save this buffer first.")
    path = Path(doc.path)
    root = _root(ls, path)
    rel = path.relative_to(root).as_posix()
    at_line = types.Position(line=args.line, character=0)
    rng = args.range or types.Range(start=at_line, end=at_line)
    try:
        source = doc.source
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read {rel}: open and save it as UTF-8 text, then try again.") from exc
    lines = source.splitlines()
    selection = ""
    if rng.start != rng.end and lines:
        selection = source[doc.offset_at_position(rng.start) : doc.offset_at_position(rng.end)]
    ctx = build_context(
        source,
        rel,
        _clamp(rng.start, lines),
        _clamp(rng.end, lines),
        selection=selection,
        language=language_of(rel, doc.language_id),
    )
    return Target(args.uri, root, rel, ctx, doc.version)


def unchanged(ls: HearthServer, target: Target) -> None:
    """Refuse to apply an edit to a document the user changed while Hearth was working."""
    if ls.workspace.get_text_document(target.uri).version != target.version:
        raise InputError(
            f"{target.rel} changed while Hearth was working, so nothing was applied; run it again."
        )


def overlay(ls: HearthServer, root: Path) -> dict[str, str]:
    """Unsaved editor buffers under ``root``, so the tests run against what the user sees."""
    out: dict[str, str] = {}
    for doc in list(ls.workspace.text_documents.values()):
        if doc.path and Path(doc.path).is_relative_to(root):
            out[Path(doc.path).relative_to(root).as_posix()] = doc.source
    return out


def document_text(ls: HearthServer, path: Path) -> str | None:
    """The open buffer's text for ``path``, else the file on disk, else None."""
    doc = ls.workspace.text_documents.get(uri_of(path))
    if doc is not None:
        return str(doc.source)
    return path.read_text(encoding="utf-8") if path.is_file() else None
