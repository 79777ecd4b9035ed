"""The ``files`` connector: a folder of Markdown, reStructuredText, text, HTML, PDF and source files."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from connectors.globs import selected
from connectors.parsing import DEFAULT_EXCLUDE, DEFAULT_INCLUDE, Unreadable, parse
from core.errors import ConnectorError
from core.retrieval.connectors import Item, ScanContext, SourceInfo
from core.retrieval.documents import Skipped


class FilesOptions(BaseModel):
    """Options of a ``type: files`` source."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(description="Folder to index (relative paths are relative to hearth.yaml).")
    include: list[str] = Field(default_factory=lambda: list(DEFAULT_INCLUDE), description="Globs to index.")
    exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDE), description="Globs to leave out."
    )
    base_url: str | None = Field(
        None, description="Cite files as base_url + relative path instead of the local path."
    )
    follow_symlinks: bool = Field(False, description="Follow symbolic links to files and folders.")


def _walk(root: Path, follow: bool) -> list[str]:
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath, name)
            if full.is_symlink() and not follow:
                continue
            out.append(full.relative_to(root).as_posix())
    return out


class FilesConnector:
    """Reads every selected file under ``path``; unreadable files are skipped with a reason."""

    Options = FilesOptions

    def __init__(self, source: SourceInfo, options: FilesOptions) -> None:
        self.source = source
        self.options = options

    def uri(self, rel: str) -> str:
        """How citations point at the file: ``base_url`` + path, else the path inside the source."""
        if self.options.base_url:
            return self.options.base_url.rstrip("/") + "/" + rel
        # Relative to the source's root: citations never show where the files live on the server.
        return rel

    def _read(self, rel: str) -> Item:
        full = self.options.path / rel
        uri = self.uri(rel)
        try:
            size = full.stat().st_size
            if size > self.source.max_file_bytes:
                limit = self.source.max_file_bytes / 1_048_576
                return Skipped(uri, f"larger than {limit:g} MB ({size / 1_048_576:.1f} MB)")
            data = full.read_bytes()
            mtime = datetime.fromtimestamp(full.stat().st_mtime, UTC)
        except OSError as exc:
            return Skipped(uri, f"cannot read ({exc.strerror or exc})")
        try:
            parsed = parse(rel, data)
        except Unreadable as exc:
            return Skipped(uri, str(exc))
        return parsed.document(self.source, f"{self.source.name}:{rel}", uri, mtime, path=rel)

    async def scan(self, ctx: ScanContext) -> AsyncIterator[Item]:
        """Every selected file, read and parsed in a worker thread."""
        root = self.options.path
        if not root.is_dir():
            raise ConnectorError(
                f"Source '{self.source.name}': folder {root} does not exist — fix 'path' in hearth.yaml."
            )
        rels = await asyncio.to_thread(_walk, root, self.options.follow_symlinks)
        for rel in rels:
            if selected(rel, self.options.include, self.options.exclude):
                yield await asyncio.to_thread(self._read, rel)
