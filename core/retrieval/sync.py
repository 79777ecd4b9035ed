"""Sync sources into the store: unchanged docs skipped, changed ones replaced, vanished ones deleted.

Crash safety: a document is first marked pending in the state database, its new chunks are
written (deterministic ids, so a retry overwrites), then its stale chunks are deleted and the
final state committed. A run killed anywhere leaves every chunk attributable to a recorded
document, and the next run finishes the job. The connector's cursor (a commit, ETags) is saved
only when a source completes.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypedDict

from core.db import Database
from core.errors import ConfigError, ConnectorError
from core.jsontypes import JsonObject
from core.retrieval import connectors as registry
from core.retrieval.chunking import Chunk, chunk_document, page_fields
from core.retrieval.config import SourceSpec
from core.retrieval.configured import IndexConfigured
from core.retrieval.documents import Document, Skipped, Unchanged
from core.retrieval.embedders import Embedder, embedder_identity, get_embedder
from core.retrieval.sparse import document_vector
from core.retrieval.state import DocState, SyncState
from core.retrieval.store import ChunkStore, StoredChunk, point_id
from core.retrieval.stores import open_store

log = logging.getLogger(__name__)

# 2: BM25 sparse vectors from Qdrant's encoder (other token ids than version 1's hand-written one).
# 3: a title/heading sparse vector beside the text's, HTML navigation left out of the text.
INDEX_VERSION = "3"


def index_signature(settings: IndexConfigured) -> str:
    """What the stored chunks depend on besides the text: changing it re-indexes every document."""
    e, r = settings.embed, settings.retrieval
    model = str(e.model_path or "bundled") if e.backend != "openai" else e.model
    return f"v{INDEX_VERSION}:{e.backend}:{model}:{r.chunk_size}:{r.chunk_overlap}"


@dataclass
class SourceReport:
    """What one sync of one source did."""

    source: str
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> JsonObject:
        """JSON form (``skipped`` as [{uri, reason}])."""
        data: JsonObject = asdict(self)
        data["skipped"] = [{"uri": u, "reason": r} for u, r in self.skipped]
        data["seconds"] = round(self.seconds, 2)
        return data


class Progress(Protocol):
    """Receives indexing progress (the CLI draws a bar with it)."""

    def begin(self, source: str, total_chunks: int) -> None:
        """A source starts embedding ``total_chunks`` chunks."""

    def advance(self, chunks: int) -> None:
        """``chunks`` more are stored."""


@dataclass
class ChangedDoc:
    """A document whose content changed, for digests."""

    doc_id: str
    uri: str
    title: str
    source: str
    updated_at: datetime


class Indexer:
    """Runs syncs with one embedder, one store and one state database."""

    def __init__(
        self,
        settings: IndexConfigured,
        *,
        embedder: Embedder | None = None,
        store: ChunkStore | None = None,
        db: Database | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder or get_embedder(settings.embed)
        self.store = store or open_store(settings)
        self._own_db = db is None
        self.db = db or Database(settings.database_url)
        self.state = SyncState(self.db)
        self.signature = index_signature(settings)
        self._languages = {s.name: s.language for s in settings.sources}

    def specs(self, names: Sequence[str] | None) -> list[SourceSpec]:
        """The configured sources named (all when ``names`` is empty)."""
        by_name = {s.name: s for s in self.settings.sources}
        if not by_name:
            raise ConfigError("No sources are configured — add a 'sources:' list to hearth.yaml.")
        for name in names or ():
            if name not in by_name:
                raise ConfigError(f"Unknown source '{name}'; available: {', '.join(sorted(by_name))}")
        return [by_name[n] for n in names] if names else list(by_name.values())

    async def sync(
        self, names: Sequence[str] | None = None, progress: Progress | None = None, *, rebuild: bool = False
    ) -> list[SourceReport]:
        """Sync the named sources (all by default); one source failing does not stop the others."""
        specs = self.specs(names)
        connectors = {
            s.name: registry.build(s, int(self.settings.retrieval.max_file_mb * 1_048_576)) for s in specs
        }
        if rebuild:
            await self.store.drop()
            await self.state.forget()
        await self.store.ensure(await self.embedder.dimension(), await embedder_identity(self.embedder))
        reports = []
        if not names:
            reports.extend(await self._remove_unconfigured({s.name for s in specs}))
        for spec in specs:
            report = SourceReport(spec.name)
            started = time.perf_counter()
            try:
                await self._sync_source(spec.name, tuple(spec.acl), connectors[spec.name], report, progress)
            except ConnectorError as exc:
                log.warning("source %s failed: %s", spec.name, exc)
                report.error = str(exc)
            report.seconds = time.perf_counter() - started
            reports.append(report)
        await self.store.commit()
        return reports

    async def _remove_unconfigured(self, configured: set[str]) -> list[SourceReport]:
        """Sources dropped from hearth.yaml: their chunks leave the index (and stop being searchable)."""
        reports = []
        for source in sorted(set(await self.state.source_names()) - configured):
            docs = await self.state.docs(source)
            await self.store.delete_source(source)
            await self.state.forget([source])
            reports.append(SourceReport(source, deleted=len(docs)))
        return reports

    async def _sync_source(
        self,
        source: str,
        acl: tuple[str, ...],
        connector: registry.Connector,
        report: SourceReport,
        progress: Progress | None,
    ) -> None:
        known = await self.state.docs(source)
        last, cursor, summary = await self.state.source(source)
        if last is not None and summary.get("acl") != sorted(acl):
            # Who may read the source changed: re-label what is indexed before anything else.
            await self.store.set_acl(source, list(acl))
        ctx = registry.ScanContext(
            known={k: (v.content_hash if v.signature == self.signature else "") for k, v in known.items()},
            cursor=dict(cursor),
        )
        seen: set[str] = set()
        todo: list[tuple[Document, list[Chunk]]] = []
        async for item in connector.scan(ctx):
            if isinstance(item, Unchanged):
                seen.add(item.id)
                report.unchanged += 1
            elif isinstance(item, Skipped):
                report.skipped.append((item.uri, item.reason))
                if item.keep_id:
                    seen.add(item.keep_id)
            elif item.id not in seen:
                seen.add(item.id)
                before = known.get(item.id)
                if before and before.content_hash == item.content_hash and before.signature == self.signature:
                    report.unchanged += 1
                    continue
                chunks = chunk_document(
                    item, self.settings.retrieval.chunk_size, self.settings.retrieval.chunk_overlap
                )
                if not chunks:
                    report.skipped.append((item.uri, "no text to index"))
                    seen.discard(item.id)
                    continue
                todo.append((item, chunks))
        if progress:
            progress.begin(source, sum(len(c) for _, c in todo))
        group: list[tuple[Document, list[Chunk]]] = []
        size = 0
        for doc, chunks in todo:
            group.append((doc, chunks))
            size += len(chunks)
            if size >= self.settings.embed.batch_size * 4:
                await self._write(group, known, report, progress)
                group, size = [], 0
        await self._write(group, known, report, progress)
        for doc_id in sorted(set(known) - seen):
            await self.store.delete_doc(doc_id)
            await self.state.delete_doc(source, doc_id)
            report.deleted += 1
        await self.state.finish_source(source, ctx.cursor, {**report.as_dict(), "acl": [*sorted(acl)]})

    def _version(self, doc: Document) -> str:
        return hashlib.sha256(f"{doc.content_hash}:{self.signature}".encode()).hexdigest()[:24]

    async def _write(
        self,
        group: list[tuple[Document, list[Chunk]]],
        known: dict[str, DocState],
        report: SourceReport,
        progress: Progress | None,
    ) -> None:
        """Pending rows → new chunks → stale chunks deleted → final rows."""
        if not group:
            return
        now = time.time()

        def row(doc: Document, content_hash: str, chunks: int) -> DocState:
            return DocState(
                doc.source,
                doc.id,
                doc.uri,
                doc.title,
                content_hash,
                self.signature,
                chunks,
                doc.updated_at.timestamp(),
                now,
            )

        await self.state.put_docs([row(d, "", 0) for d, _ in group])
        texts = [c.embed_text(d.title) for d, chunks in group for c in chunks]
        fields = [page_fields(d) for d, _ in group]
        vectors = await self.embedder.embed(texts + fields)
        pages = vectors[len(texts) :]
        points: list[StoredChunk] = []
        i = 0
        for n, (doc, chunks) in enumerate(group):
            version = self._version(doc)
            language = self._languages.get(doc.source, "auto")
            # The page's fields ride on its first chunk only: one result per page when searched.
            title_sparse = document_vector(fields[n], language)
            for chunk in chunks:
                first = chunk is chunks[0]
                points.append(
                    StoredChunk(
                        id=point_id(doc.id, doc.content_hash, self.signature, chunk.index),
                        dense=vectors[i],
                        sparse=document_vector(texts[i], language),
                        title_sparse=title_sparse if first else ([], []),
                        page=pages[n] if first else None,
                        payload={
                            "doc_id": doc.id,
                            "source": doc.source,
                            "uri": doc.uri,
                            "title": doc.title,
                            "acl": list(doc.acl),
                            "content_hash": doc.content_hash,
                            "version": version,
                            "chunk_index": chunk.index,
                            "location": chunk.location,
                            "text": chunk.text,
                            "headings": list(chunk.headings),
                            "updated_at": doc.updated_at.isoformat(),
                        },
                    )
                )
                i += 1
        await self.store.upsert(points)
        for doc, _ in group:
            if doc.id in known:  # an earlier version (or a half-written one) may have chunks to remove
                await self.store.delete_doc(doc.id, keep_version=self._version(doc))
            before = known.get(doc.id)
            if before is None or not before.content_hash:
                report.added += 1
            else:
                report.updated += 1
        await self.state.put_docs([row(d, d.content_hash, len(c)) for d, c in group])
        report.chunks += len(points)
        if progress:
            progress.advance(len(points))

    async def aclose(self) -> None:
        """Close the store client and the database."""
        await self.store.aclose()
        if self._own_db:
            await self.db.aclose()


async def changed_since(settings: IndexConfigured, sources: list[str], since: datetime) -> list[ChangedDoc]:
    """Documents of ``sources`` that changed (in the source or in the index) at or after ``since``.

    For digests: ``[ChangedDoc(doc_id, uri, title, source, updated_at)]``, newest first. Reads only
    the state database (no vector store), so it is safe next to a running ``hearth serve``.
    """
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    db = Database(settings.database_url)
    try:
        rows = await SyncState(db).changed_since(sources, since.timestamp())
    finally:
        await db.aclose()
    return [
        ChangedDoc(r.doc_id, r.uri, r.title, r.source, datetime.fromtimestamp(r.updated_at, UTC))
        for r in rows
    ]


class SourceStatus(TypedDict):
    """One row of 'hearth sources list' (and of its --json)."""

    name: str
    type: str
    acl: list[str]
    docs: int
    chunks: int
    pending: int
    last_sync: str | None
    skipped: int


async def source_status(settings: IndexConfigured) -> list[SourceStatus]:
    """Each configured source with its document and chunk counts and last sync (for 'hearth sources list')."""
    db = Database(settings.database_url)
    state = SyncState(db)
    out: list[SourceStatus] = []
    try:
        for spec in settings.sources:
            docs = await state.docs(spec.name)
            last, _, summary = await state.source(spec.name)
            done = [d for d in docs.values() if d.content_hash]
            skipped = summary.get("skipped")
            out.append(
                {
                    "name": spec.name,
                    "type": spec.type,
                    "acl": list(spec.acl),
                    "docs": len(done),
                    "chunks": sum(d.chunks for d in done),
                    "pending": len(docs) - len(done),
                    "last_sync": datetime.fromtimestamp(last, UTC).isoformat(timespec="seconds")
                    if last
                    else None,
                    "skipped": len(skipped) if isinstance(skipped, list) else 0,
                }
            )
    finally:
        await db.aclose()
    return out
