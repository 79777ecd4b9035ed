"""The reranking stage: a cross-encoder scores (question, chunk) pairs over the fused top-N.

``retrieval.rerank.backend: remote`` posts to a ``/v1/rerank`` endpoint in the shape Jina, Cohere,
vLLM, TEI's OpenAI-style router and llama.cpp's ``llama-server --reranking`` share::

    POST /v1/rerank {"model": "...", "query": "...", "documents": ["...", ...], "top_n": N}
    -> {"results": [{"index": 0, "relevance_score": 0.93}, ...]}

No model is ever downloaded: an operator points ``url`` at a service they run, e.g. llama-server
with a reranking GGUF (bge-reranker-v2-m3, jina-reranker-v2-base-multilingual or
Qwen3-Reranker-0.6B converted to GGUF)::

    llama-server -m bge-reranker-v2-m3-Q8_0.gguf --reranking --port 8012
    # hearth.yaml: retrieval.rerank: {backend: remote, url: http://127.0.0.1:8012}

or lets Hearth run it (``backend: llama_cpp``, ``model_path: …gguf``): the same supervised
llama-server child as the local LLM (:mod:`core.llm.engine`), started with ``--reranking`` on a
private unix socket at the first question that needs it. ``backend: cross_encoder`` runs a
sentence-transformers CrossEncoder directory in-process on ONNX Runtime
(:mod:`core.retrieval.cross_encoder`).

A call that fails or runs past ``budget_ms`` keeps the fused order (logged, never the user's error).
A local model's one-time start (``prepare``) runs before the budget's clock starts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx

from core.errors import BackendUnavailable, RetrievalError
from core.retrieval.config import RerankSettings

if TYPE_CHECKING:
    from core.llm.engine import EngineProcess

log = logging.getLogger(__name__)


class Reranker(Protocol):
    """Scores documents against a query; higher is more relevant."""

    async def scores(self, query: str, documents: Sequence[str]) -> list[float]:
        """One score per document, in the documents' order."""
        ...

    async def prepare(self) -> None:
        """Load or start what scoring needs (once; not counted against the latency budget)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def endpoint(url: str) -> str:
    """The ``/v1/rerank`` URL of a service's base URL (``rerank.url`` may already end in it)."""
    base = url.rstrip("/")
    if base.endswith("/rerank"):
        return base
    return f"{base}/rerank" if base.endswith("/v1") else f"{base}/v1/rerank"


class RemoteReranker:
    """A ``/v1/rerank`` service (Jina/Cohere/llama-server shape)."""

    def __init__(self, settings: RerankSettings, client: httpx.AsyncClient | None = None) -> None:
        if not settings.url:
            raise RetrievalError("retrieval.rerank.backend is 'remote' but retrieval.rerank.url is not set.")
        self.settings = settings
        self.url = endpoint(settings.url)
        headers = (
            {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"} if settings.api_key else {}
        )
        self._client = client or httpx.AsyncClient(headers=headers, timeout=settings.budget_ms / 1000 + 1)

    async def scores(self, query: str, documents: Sequence[str]) -> list[float]:
        """Relevance scores from the service (missing indexes score lowest)."""
        body: dict[str, object] = {"query": query, "documents": list(documents), "top_n": len(documents)}
        if self.settings.model:
            body["model"] = self.settings.model
        try:
            response = await self._client.post(self.url, json=body)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RetrievalError(f"The reranker at {self.url} failed: {exc}") from exc
        return parse_results(data, len(documents), self.url)

    async def prepare(self) -> None:
        """Nothing to start: the service runs elsewhere."""

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


def parse_results(data: object, count: int, where: str) -> list[float]:
    """Scores in document order from a ``{"results": [{"index", "relevance_score"}]}`` answer."""
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise RetrievalError(f"The reranker at {where} answered without a 'results' list.")
    out = [float("-inf")] * count
    for item in results:
        if not isinstance(item, dict):
            continue
        index, value = item.get("index"), item.get("relevance_score", item.get("score"))
        if isinstance(index, int) and 0 <= index < count and isinstance(value, int | float):
            out[index] = float(value)
    return out


def reranking_engine(settings: RerankSettings, server_path: Path | None = None) -> EngineProcess:
    """A supervised ``llama-server --reranking`` child on ``settings.model_path``."""
    from core.llm.config import LocalLLMSettings
    from core.llm.engine import EngineProcess

    if settings.model_path is None or not settings.model_path.is_file():
        raise RetrievalError(
            f"retrieval.rerank.model_path ({settings.model_path or 'not set'}) is not a reranking GGUF file "
            "— point it at one on disk (e.g. bge-reranker-v2-m3 in GGUF form), or set rerank.backend: off."
        )
    local = LocalLLMSettings(n_ctx=settings.n_ctx, parallel=1, n_batch=settings.n_ctx)

    class RerankEngine(EngineProcess):
        def command(self) -> list[str]:
            # One pair is one sequence: batch and micro-batch hold a whole pair (llama-server needs it).
            return [
                str(self.server_path),
                "--model", str(self.model_path),
                "--host", str(self.socket_path),
                "--reranking",
                "--ctx-size", str(settings.n_ctx),
                "--batch-size", str(settings.n_ctx),
                "--ubatch-size", str(settings.n_ctx),
                "--parallel", "1",
                "--no-webui",
            ]  # fmt: skip

    return RerankEngine(local, settings.model_path, server_path=server_path)


class LocalReranker:
    """A reranking GGUF served by Hearth's own supervised ``llama-server --reranking``."""

    def __init__(
        self,
        settings: RerankSettings,
        engine: EngineProcess | None = None,
        *,
        server_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or reranking_engine(settings, server_path)

    async def prepare(self) -> None:
        """Start the engine and wait until it is ready."""
        try:
            await self.engine.ensure_ready()
        except BackendUnavailable as exc:
            raise RetrievalError(f"the reranking engine is not available ({exc})") from exc

    async def scores(self, query: str, documents: Sequence[str]) -> list[float]:
        """Scores from the engine's ``/v1/rerank`` (it is started on first use)."""
        import aiohttp

        try:
            await self.engine.ensure_ready()
            body = {"query": query, "documents": list(documents), "top_n": len(documents)}
            async with self.engine.session().post("/v1/rerank", json=body) as response:
                if response.status != 200:
                    raise RetrievalError(f"the reranking engine answered HTTP {response.status}")
                data = await response.json()
        except BackendUnavailable as exc:
            raise RetrievalError(f"the reranking engine is not available ({exc})") from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise RetrievalError(f"the reranking engine failed ({exc})") from exc
        return parse_results(data, len(documents), str(self.settings.model_path))

    async def aclose(self) -> None:
        """Stop the engine."""
        await self.engine.stop()


def get_reranker(settings: RerankSettings, *, server_path: Path | None = None) -> Reranker | None:
    """The configured reranker, or None when the stage is off.

    ``server_path``: the llama-server binary the ``llama_cpp`` backend runs (``llm.local.server_path``;
    None: the one deploy/install.sh built).
    """
    if settings.backend == "off":
        return None
    if settings.backend == "llama_cpp":
        return LocalReranker(settings, server_path=server_path)
    if settings.backend == "cross_encoder":
        from core.retrieval.cross_encoder import CrossEncoderReranker

        return CrossEncoderReranker(settings)
    return RemoteReranker(settings)


class SharedReranker:
    """One reranker for a whole process, lent to each retriever it builds and closed once.

    `hearth serve` searches through two retrievers (the assistant's and ``/v1/index/search``'s):
    each building its own would start two ``llama-server --reranking`` children (``llama_cpp``) or
    open two HTTP pools. Retrievers get :meth:`get`'s loan, whose ``aclose`` leaves the reranker
    running; the process calls :meth:`aclose` once, at shutdown::

        shared = SharedReranker(settings.retrieval.rerank, server_path=settings.llama_server_path)
        retriever = DocsRetriever(settings, reranker=shared.get())
        ...
        await retriever.aclose()   # the reranker keeps running for the other retrievers
        await shared.aclose()      # stops it
    """

    def __init__(self, settings: RerankSettings, *, server_path: Path | None = None) -> None:
        self.settings = settings
        self.server_path = server_path
        self._reranker: Reranker | None = None
        self._lock = threading.Lock()  # the assistant is built in a worker thread

    def get(self) -> Reranker | None:
        """The shared reranker (built at the first call), or None when the stage is off.

        A configuration error (a wrong ``model_path``) raises a RetrievalError; the next call tries again.
        """
        if self.settings.backend == "off":
            return None
        with self._lock:
            if self._reranker is None:
                self._reranker = get_reranker(self.settings, server_path=self.server_path)
            assert self._reranker is not None
            return _Lent(self._reranker)

    async def aclose(self) -> None:
        """Stop the reranker (its engine, its connections), if one was built."""
        reranker, self._reranker = self._reranker, None
        if reranker is not None:
            await reranker.aclose()


class _Lent:
    """A retriever's view of the shared reranker: everything but ``aclose`` goes through."""

    def __init__(self, reranker: Reranker) -> None:
        self.reranker = reranker

    async def scores(self, query: str, documents: Sequence[str]) -> list[float]:
        """The shared reranker's scores."""
        return await self.reranker.scores(query, documents)

    async def prepare(self) -> None:
        """Start the shared reranker (once for every retriever)."""
        await self.reranker.prepare()

    async def aclose(self) -> None:
        """Nothing: the process closes the shared reranker (:meth:`SharedReranker.aclose`)."""


async def prepared(reranker: Reranker) -> bool:
    """Whether the reranker is ready to score (its one-time start done); a failure is logged."""
    try:
        await reranker.prepare()
    except RetrievalError as exc:
        log.warning("reranker: %s; the fused order is kept", exc)
        return False
    return True


async def rerank_order(
    reranker: Reranker, query: str, texts: Sequence[str], budget_ms: int
) -> list[float] | None:
    """The reranker's scores for ``texts``, or None when it failed or ran past the budget (logged)."""
    if not await prepared(reranker):
        return None
    started = time.perf_counter()
    try:
        return await asyncio.wait_for(reranker.scores(query, texts), budget_ms / 1000)
    except TimeoutError:
        log.warning("reranker: over its %d ms budget; the fused order is kept", budget_ms)
    except RetrievalError as exc:
        log.warning("reranker: %s; the fused order is kept", exc)
    finally:
        log.debug("reranker: %d candidates in %.0f ms", len(texts), (time.perf_counter() - started) * 1000)
    return None
