"""Suggestions as the user types: `textDocument/inlineCompletion` (LSP 3.18), and completion items
carrying the same multi-line suggestion for clients without it (Neovim before 0.12).

Latency discipline, per document: at most one suggestion in flight; a newer request for the same
document cancels the older one at once (before the client's own `$/cancelRequest` arrives), and
`$/cancelRequest` cancels it too, which closes the model stream and stops the engine. A request
waits ``lsp.completion.debounce_ms`` before it generates, so a burst of keystrokes starts one
generation, not one each. A suggestion computed for an older version of the document than the
editor now has is dropped. A model that is down means no suggestion and one log line, never a
popup: suggestions are a nicety, typing must never be interrupted by them.

The custom request ``hearth/completionStats`` reports what happened (requests, superseded, stale,
and, in-process, the generations the core started, finished and cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.workspace import Workspace

from core.code.completion import CHARS_PER_TOKEN, cursor_window
from core.code.config import CompletionSettings
from core.code.context import language_of
from core.contracts import Answer, Completion, Delta, Retriever
from core.errors import HearthError
from core.refusals import Refused
from lsp.backend import CodeBackend
from lsp.snippets import OpenFile, SnippetSource

log = logging.getLogger(__name__)

STATS = "hearth/completionStats"
_WORD_BEFORE = re.compile(r"[A-Za-z0-9_]+$")


@runtime_checkable
class CompletionModel(Protocol):
    """A code model that can suggest (the in-process front door, the REST client)."""

    def complete_stream(self, completion: Completion) -> AsyncIterator[Delta | Answer]:
        """Stream the suggestion for the text around a cursor (Delta … then the Answer)."""
        ...


class CompletionHost(Protocol):
    """What completion reads of the language server; :class:`~lsp.language_server.HearthServer` is one.

    Declared here, where it is used, so the server holds the completion state without completion
    knowing the server class.
    """

    @property
    def workspace(self) -> Workspace:
        """The open documents and the workspace root."""
        ...

    @property
    def client_capabilities(self) -> types.ClientCapabilities:
        """What the editor said it supports at `initialize`."""
        ...

    @property
    def backend(self) -> CodeBackend:
        """Where the model calls go (in process or a remote `hearth serve`)."""
        ...

    @property
    def workspace_index(self) -> Retriever | None:
        """The workspace's own index, when in-process mode built one (snippets come from it)."""
        ...

    @property
    def completions(self) -> Completions:
        """The completion state of this server."""
        ...


@dataclass
class LspCompletionStats:
    """What the language server did with completion requests."""

    requests: int = 0
    superseded: int = 0  # cancelled by a newer request for the same document
    superseded_before_generating: int = 0  # of those, still in the debounce wait
    cancelled: int = 0  # cancelled by the client ($/cancelRequest)
    stale: int = 0  # computed, but the document had changed: dropped
    served: int = 0  # a non-empty suggestion reached the editor
    empty: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Suggestion:
    """A suggestion at a cursor: its text, and the word before the cursor it continues."""

    text: str
    word: str


class Completions:
    """The completion state of one language server: in-flight requests, snippets, counters."""

    def __init__(self, settings: CompletionSettings) -> None:
        self.settings = settings
        self.inflight: dict[str, asyncio.Task[Suggestion | None]] = {}
        self.generating: set[asyncio.Task[Suggestion | None]] = set()
        self.stats = LspCompletionStats()
        self.snippets = SnippetSource(settings.snippets, settings.snippet_tokens * CHARS_PER_TOKEN)
        self._quiet: str | None = None  # the failure last logged (logged once until a success)

    async def suggest(self, ls: CompletionHost, uri: str, position: types.Position) -> Suggestion | None:
        """The suggestion at ``position`` of ``uri``; None when there is none (or it was superseded)."""
        self.stats.requests += 1
        older = self.inflight.get(uri)
        if older is not None and not older.done():
            older.cancel()
            self.stats.superseded += 1
            if older not in self.generating:
                self.stats.superseded_before_generating += 1
        task = asyncio.ensure_future(self._suggest(ls, uri, position))
        self.inflight[uri] = task
        try:
            return await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                self.stats.cancelled += 1
                raise  # the client cancelled this request
            return None  # a newer keystroke superseded it
        finally:
            self.generating.discard(task)
            if self.inflight.get(uri) is task:
                del self.inflight[uri]

    async def _suggest(self, ls: CompletionHost, uri: str, position: types.Position) -> Suggestion | None:
        doc = ls.workspace.get_text_document(uri)
        version = doc.version
        try:
            lines = list(doc.lines)
        except (OSError, UnicodeDecodeError) as exc:
            log.info("no suggestion for %s: cannot read it (%s)", uri, exc)
            return None
        if lines and lines[-1].endswith(("\n", "\r")) or not lines:
            lines.append("")  # the empty line after a final newline is a place to type too
        if position.line >= len(lines):
            log.info("no suggestion: line %d is outside %s (%d lines)", position.line, uri, len(lines))
            return None
        at = doc.position_codec.position_from_client_units(lines, position)
        s = self.settings
        window = cursor_window(
            lines,
            at.line,
            at.character,
            prefix_chars=s.prefix_tokens * CHARS_PER_TOKEN,
            suffix_chars=s.suffix_tokens * CHARS_PER_TOKEN,
        )
        if "\x00" in window.prefix or "\x00" in window.suffix:
            log.info("no suggestion for %s: it looks binary", uri)
            return None
        if not (window.prefix + window.suffix).strip():
            return None
        root = ls.workspace.root_path
        path = Path(doc.path) if doc.path else None
        rel = path.relative_to(root).as_posix() if path and root and path.is_relative_to(root) else None
        rel = rel or (path.name if path else uri.rsplit("/", 1)[-1])
        language = language_of(rel, doc.language_id) or "text"
        if s.debounce_ms:
            await asyncio.sleep(s.debounce_ms / 1000)
        snippets = self.snippets.related(
            uri, rel, at.line, window.prefix, _open_files(ls, root), ls.workspace_index
        )
        me = asyncio.current_task()
        if me is not None:
            self.generating.add(me)
        completion = Completion(window.prefix, window.suffix, language, rel, snippets, s.max_tokens)
        text = await self._generate(ls, completion)
        if ls.workspace.get_text_document(uri).version != version:
            self.stats.stale += 1
            return None
        if not text.strip():
            self.stats.empty += 1
            return None
        self.stats.served += 1
        match = _WORD_BEFORE.search(window.prefix)
        return Suggestion(text, match.group(0) if match else "")

    async def _generate(self, ls: CompletionHost, completion: Completion) -> str:
        """The suggestion text ('' on any failure: logged once, never shown to the user)."""
        model = ls.backend.model
        if not isinstance(model, CompletionModel):
            return ""
        answer: Answer | None = None
        try:
            async with contextlib.aclosing(model.complete_stream(completion)) as events:  # type: ignore[type-var]
                async for event in events:
                    if isinstance(event, Answer):
                        answer = event
        except Refused as exc:  # the front door's "no": the detail says why (the engine is down …)
            self._failed(exc.refusal.reason.value, exc.refusal.detail or str(exc))
            return ""
        except HearthError as exc:  # the remote client's errors (the server is unreachable …)
            self._failed(type(exc).__name__, str(exc))
            return ""
        except Exception as exc:  # noqa: BLE001 - a suggestion must never break typing
            log.error("inline completion failed", exc_info=exc)
            self._failed(type(exc).__name__, "an unexpected error (logged above)")
            return ""
        if self._quiet is not None:
            log.info("inline completion works again")
            self._quiet = None
        return answer.text if answer is not None else ""

    def _failed(self, kind: str, why: str) -> None:
        """Count a failed suggestion; log it once per kind of failure until suggestions work again."""
        self.stats.failed += 1
        if kind != self._quiet:
            log.warning("no inline suggestions: %s", why)
            self._quiet = kind

    def report(self, ls: CompletionHost) -> dict[str, object]:
        """The counters of ``hearth/completionStats``."""
        engine = getattr(ls.backend.model, "completion_stats", None)
        return {"lsp": asdict(self.stats), "engine": engine() if callable(engine) else None}

    async def aclose(self) -> None:
        """Cancel what is in flight."""
        tasks = [t for t in self.inflight.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.snippets.aclose()


def _open_files(ls: CompletionHost, root: str | None) -> list[OpenFile]:
    out = []
    for doc in list(ls.workspace.text_documents.values()):
        if not doc.path:
            continue
        path = Path(doc.path)
        rel = path.relative_to(root).as_posix() if root and path.is_relative_to(root) else path.name
        out.append(OpenFile(doc.uri, rel, doc.language_id, doc.version, doc.source))
    return out


def supports_inline(ls: CompletionHost) -> bool:
    """Whether the client asked for inline completions (then completion items stay empty)."""
    text = ls.client_capabilities.text_document
    return bool(text and text.inline_completion is not None)


async def inline_completion(
    ls: CompletionHost, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    """`textDocument/inlineCompletion`: ghost text at the cursor."""
    at = params.position
    got = await ls.completions.suggest(ls, params.text_document.uri, at)
    if got is None:
        return types.InlineCompletionList(items=[])
    item = types.InlineCompletionItem(insert_text=got.text, range=types.Range(start=at, end=at))
    return types.InlineCompletionList(items=[item])


async def completion_items(ls: CompletionHost, params: types.CompletionParams) -> types.CompletionList | None:
    """`textDocument/completion`: the suggestion as one item, for clients without inline completion.

    The item replaces the word before the cursor with that word plus the suggestion, so clients
    that filter items by the typed word keep it; ``isIncomplete`` makes them ask again as the user types.
    """
    if supports_inline(ls):
        return types.CompletionList(is_incomplete=False, items=[])
    at = params.position
    got = await ls.completions.suggest(ls, params.text_document.uri, at)
    if got is None:
        return types.CompletionList(is_incomplete=True, items=[])
    doc = ls.workspace.get_text_document(params.text_document.uri)
    start = types.Position(
        line=at.line, character=max(0, at.character - doc.position_codec.client_num_units(got.word))
    )
    first = got.text.split("\n", 1)[0]
    label = (got.word + first).strip() or got.text.strip().split("\n", 1)[0]
    item = types.CompletionItem(
        label=label[:80],
        kind=types.CompletionItemKind.Snippet,
        detail="Hearth suggestion",
        documentation=types.MarkupContent(
            kind=types.MarkupKind.Markdown, value=f"```{doc.language_id or ''}\n{got.word}{got.text}\n```"
        ),
        filter_text=got.word + first,
        sort_text="0",
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=types.Range(start=start, end=at), new_text=got.word + got.text),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


def completion_stats(ls: CompletionHost, params: object) -> dict[str, object]:
    """``hearth/completionStats``: what the completion machinery did so far."""
    return ls.completions.report(ls)


def register(server: LanguageServer, settings: CompletionSettings) -> None:
    """Advertise and serve completion on ``server`` (unless ``settings.enabled`` is false); the stats always."""
    if settings.enabled:
        server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(
            inline_completion
        )
        server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False))(
            completion_items
        )
    server.feature(STATS)(completion_stats)
