"""The part of the Settings tree that retrieval reads, as protocols that ``core.config.Settings`` satisfies.

Retrieval's own sections (``embed``, ``store``, ``retrieval``, ``sources``) are defined in
:mod:`core.retrieval.config` and the Settings tree is built from them, so the indexer, the store
and the search take "something with these sections" instead of importing the tree they are part of::

    def open_store(settings: StoreConfigured) -> ChunkStore: ...
    open_store(load_settings(path))          # the whole tree is one
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from core.retrieval.config import EmbedSettings, RetrievalSettings, SourceSpec, StoreSettings


class StoreConfigured(Protocol):
    """Where the chunk store is: its section and the local directory it resolves to."""

    @property
    def store(self) -> StoreSettings:
        """The ``store`` section."""
        ...

    @property
    def store_path(self) -> Path:
        """The embedded store's directory (``store.path`` or one under Hearth's home)."""
        ...


class IndexConfigured(StoreConfigured, Protocol):
    """What indexing and search read: the store, the embedder, chunking and search, the sources, the state."""

    @property
    def embed(self) -> EmbedSettings:
        """The ``embed`` section."""
        ...

    @property
    def retrieval(self) -> RetrievalSettings:
        """The ``retrieval`` section."""
        ...

    @property
    def sources(self) -> Sequence[SourceSpec]:
        """The configured document sources."""
        ...

    @property
    def database_url(self) -> str:
        """The state database (sync hashes live there)."""
        ...

    @property
    def llama_server_path(self) -> Path | None:
        """The llama-server binary the ``llama_cpp`` reranker runs (None: the one install.sh built)."""
        ...
