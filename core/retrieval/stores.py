"""Opening the chunk store the settings select: Qdrant Edge, a Qdrant server, or qdrant-client's local mode.

Apart from ``core.retrieval.store`` (the interface and layout every backend shares), so the backends
can import the interface without the interface importing them.
"""

from __future__ import annotations

from core.retrieval.configured import StoreConfigured
from core.retrieval.store import ChunkStore
from core.retrieval.store_edge import EdgeStore
from core.retrieval.store_qdrant import QdrantStore


def open_store(settings: StoreConfigured, *, path: str | None = None, url: str | None = None) -> ChunkStore:
    """The chunk store these settings point at (``path``/``url`` override them, e.g. for a migration)."""
    if url is not None or (path is None and settings.store.url):
        return QdrantStore(settings.store, url=url or settings.store.url)
    kind = "edge" if path is not None else settings.store.backend
    location = path or str(settings.store_path)
    if kind == "local":
        return QdrantStore(settings.store, path=location)
    return EdgeStore(settings.store, location)
