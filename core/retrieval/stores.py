"""Opening the chunk store the settings select: Qdrant Edge, a Qdrant server, or qdrant-client's local mode.

Apart from ``core.retrieval.store`` (the interface and layout every backend shares), so the backends
can import the interface without the interface importing them.
"""

from __future__ import annotations

from core.retrieval.configured import StoreConfigured
from core.retrieval.store import ChunkStore
from core.retrieval.store_edge import EdgeStore


def open_store(settings: StoreConfigured, *, path: str | None = None, url: str | None = None) -> ChunkStore:
    """The chunk store these settings point at (``path``/``url`` override them, e.g. for a migration)."""
    kind = "edge" if path is not None else settings.store.backend
    if url is not None or (path is None and settings.store.url) or kind == "local":
        # Imported only when picked: qdrant-client's models take about a second to import, which a
        # `hearth search` on the embedded store (Qdrant Edge) never needs.
        from core.retrieval.store_qdrant import QdrantStore

        if url is not None or (path is None and settings.store.url):
            return QdrantStore(settings.store, url=url or settings.store.url)
        return QdrantStore(settings.store, path=str(settings.store_path))
    return EdgeStore(settings.store, path or str(settings.store_path))
