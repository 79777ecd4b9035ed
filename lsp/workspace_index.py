"""A retrieval index of the editor's workspace, kept fresh in the background on open and save.

Each workspace gets its own store and sync state under ``<home>/lsp/index/<hash>/`` (so it never
contends with `hearth serve`'s document index), built by the same retrieval engine as `hearth index`
(``type: files`` source, incremental: unchanged files are skipped). Indexing never blocks a
request: until the first sync finishes, searches simply return nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from core.config import DatabaseSettings, Settings
from core.contracts import Hit
from core.retrieval.config import SourceSpec

if TYPE_CHECKING:  # loaded on the first sync, so an editor that never indexes never imports them
    from core.retrieval.embedders import Embedder
    from core.retrieval.search import DocsRetriever
    from core.retrieval.sync import Indexer

log = logging.getLogger(__name__)

_INCLUDE = [
    f"**/*.{ext}"
    for ext in (
        "py",
        "pyi",
        "js",
        "jsx",
        "ts",
        "tsx",
        "go",
        "java",
        "kt",
        "rs",
        "rb",
        "php",
        "c",
        "h",
        "cpp",
        "hpp",
        "cs",
        "scala",
        "swift",
        "lua",
        "sh",
        "sql",
        "toml",
        "yaml",
        "yml",
        "md",
        "rst",
        "txt",
    )
]
_EXCLUDE = [
    "**/.git/**",
    "**/node_modules/**",
    "**/.venv/**",
    "**/venv/**",
    "**/__pycache__/**",
    "**/build/**",
    "**/dist/**",
    "**/.tox/**",
    "**/.mypy_cache/**",
    "**/.pytest_cache/**",
]


def workspace_settings(settings: Settings, root: Path) -> Settings:
    """Settings whose only source is ``root``, with a store and state database private to it."""
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    base = settings.path("lsp", "index", digest)
    store = settings.store.model_copy(update={"path": base / "qdrant", "collection": f"lsp_{digest}"})
    return settings.model_copy(
        update={
            "sources": [
                SourceSpec(name="workspace", type="files", path=str(root), include=_INCLUDE, exclude=_EXCLUDE)
            ],
            "store": store,
            "database": DatabaseSettings(url=SecretStr(f"sqlite:///{base / 'state.db'}")),
        }
    )


class WorkspaceIndex:
    """Background, single-flight incremental indexing of one folder, and search over it."""

    def __init__(self, settings: Settings, root: Path, *, embedder: Embedder | None = None) -> None:
        self.settings = workspace_settings(settings, root)
        self.root = root
        self._embedder = embedder
        self._indexer: Indexer | None = None
        self._retriever: DocsRetriever | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.synced = asyncio.Event()
        self.last_error: str | None = None
        self.summary = ""

    async def idle(self) -> None:
        """Wait until no sync is running or queued."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def schedule(self) -> None:
        """Sync soon; a sync already running is followed by exactly one more."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run(), name="hearth-workspace-index")

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self._sync()
                self.last_error = None
            except Exception as exc:  # indexing is a background nicety; log and carry on
                self.last_error = str(exc)
                log.warning("workspace indexing of %s failed: %s", self.root, exc)
            self.synced.set()
            if not self._again:
                return

    async def _sync(self) -> None:
        from core.retrieval.search import DocsRetriever
        from core.retrieval.sync import Indexer

        self.settings.path("lsp", "index").mkdir(parents=True, exist_ok=True)
        Path(str(self.settings.store_path)).parent.mkdir(parents=True, exist_ok=True)
        if self._indexer is None:
            self._indexer = Indexer(self.settings, embedder=self._embedder)
        reports = await self._indexer.sync(["workspace"])
        for report in reports:
            log.info("workspace index: %s", report.as_dict())
            if report.error:
                raise RuntimeError(report.error)
        self.summary = "; ".join(
            ", ".join(f"{k} {v}" for k, v in r.as_dict().items() if isinstance(v, int) and v) or "up to date"
            for r in reports
        )
        if self._retriever is None:
            # One Qdrant client per folder in local mode: the retriever shares the indexer's.
            self._retriever = DocsRetriever(
                self.settings, embedder=self._indexer.embedder, store=self._indexer.store
            )

    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> Sequence[Hit]:
        """Chunks of the workspace relevant to ``query`` (nothing until the first sync is done)."""
        if self._retriever is None:
            return []
        return await self._retriever.search(query, acl=acl, k=k)

    async def aclose(self) -> None:
        """Stop indexing and close the store."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._indexer is not None:
            await self._indexer.aclose()
