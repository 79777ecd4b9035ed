"""Related code for an inline suggestion: definitions from the other open files, and workspace-index hits.

Both stay the same while the user types in one place, so the prompt's front (where they go) keeps
hitting the engine's prompt cache: the open files' definitions are parsed once per document version,
and the index is searched in the background once per region of the file (the first suggestion in a
new region goes without its hits; the next ones have them). Nothing here ever delays a suggestion.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.code.context import definitions, language_of
from core.contracts import Hit, Retriever, Snippet

log = logging.getLogger(__name__)

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_REGION_LINES = 16  # one index search per this many lines of the file
_SEARCH_TIMEOUT_S = 2.0
_DEF_LINES = 12  # a definition's head: its signature and docstring, not its whole body


@dataclass(frozen=True)
class OpenFile:
    """An open editor buffer: where it is and its text (``version`` says when it changed)."""

    uri: str
    path: str  # workspace-relative
    language: str | None
    version: int | None
    text: str


class SnippetSource:
    """Picks up to ``limit`` snippets of at most ``chars`` characters in all for a cursor."""

    def __init__(self, limit: int, chars: int) -> None:
        self.limit = limit
        self.chars = chars
        self._defs: dict[str, tuple[int | None, list[tuple[str, str]]]] = {}  # uri -> (version, defs)
        self._hits: dict[str, tuple[tuple[int, str], list[Snippet]]] = {}  # uri -> (region, snippets)
        self._searches: dict[str, asyncio.Task[None]] = {}

    def related(
        self,
        uri: str,
        path: str,
        line: int,
        prefix: str,
        others: Sequence[OpenFile],
        index: Retriever | None,
    ) -> tuple[Snippet, ...]:
        """Snippets for a cursor at ``line`` of ``uri`` whose window before the cursor is ``prefix``."""
        if self.limit <= 0 or self.chars <= 0:
            return ()
        words = set(_WORD.findall(prefix[-3000:]))
        picked: list[Snippet] = []
        for other in sorted(others, key=lambda f: f.path):
            if other.uri == uri:
                continue
            for name, head in self._definitions(other):
                if name in words:
                    picked.append(Snippet(other.path, head))
        if index is not None:
            picked += self._index_hits(uri, path, line, prefix, index)
        out: list[Snippet] = []
        budget = self.chars
        for snippet in picked:
            if len(out) == self.limit or budget <= 0:
                break
            if any(s.text == snippet.text for s in out):
                continue
            text = snippet.text[:budget]
            out.append(Snippet(snippet.path, text))
            budget -= len(text)
        return tuple(out)

    def _definitions(self, file: OpenFile) -> list[tuple[str, str]]:
        """(name, head) of each top-level function and class of a Python buffer, once per version."""
        cached = self._defs.get(file.uri)
        if cached is not None and cached[0] == file.version:
            return cached[1]
        found: list[tuple[str, str]] = []
        if (file.language or language_of(file.path)) == "python" and len(file.text) < 500_000:
            for d in definitions(file.text):
                head = "\n".join(d.text.splitlines()[:_DEF_LINES])
                found.append((d.name, head))
        self._defs[file.uri] = (file.version, found)
        return found

    def _index_hits(self, uri: str, path: str, line: int, prefix: str, index: Retriever) -> list[Snippet]:
        """The hits searched for this region of the file (or, while a search runs, the last ones)."""
        region = (line // _REGION_LINES, path)
        cached = self._hits.get(uri)
        if cached is not None and cached[0] == region:
            return cached[1]
        running = self._searches.get(uri)
        if running is None or running.done():
            query = prefix[-600:].strip()
            if query:
                self._searches[uri] = asyncio.ensure_future(self._search(uri, path, region, query, index))
        return cached[1] if cached is not None else []

    async def _search(
        self, uri: str, path: str, region: tuple[int, str], query: str, index: Retriever
    ) -> None:
        try:
            hits: Sequence[Hit] = await asyncio.wait_for(
                index.search(query, acl=None, k=self.limit + 2), _SEARCH_TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001 - context is a nicety: the suggestion goes on without it
            log.debug("no workspace snippets for %s: %s", path, exc)
            return
        own = Path(path).as_posix()
        snippets = [
            Snippet(_shown_path(h), h.text[:800]) for h in hits if not h.uri.replace("\\", "/").endswith(own)
        ]
        self._hits[uri] = (region, snippets[: self.limit])

    def forget(self, uri: str) -> None:
        """Drop what is cached for a closed document."""
        self._defs.pop(uri, None)
        self._hits.pop(uri, None)
        task = self._searches.pop(uri, None)
        if task is not None:
            task.cancel()

    async def aclose(self) -> None:
        """Stop the searches in flight."""
        tasks = list(self._searches.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _shown_path(hit: Hit) -> str:
    return hit.title or Path(hit.uri).name
