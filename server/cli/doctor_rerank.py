"""`hearth doctor`'s reranker line: the configured ``retrieval.rerank`` backend, tried the way search uses it.

- ``cross_encoder``: the directory (config, weights, tokenizer) loads through the graph cache; the
  line gives the model's size, the time to open (or build) the graph and to score one pair.
- ``llama_cpp``: ``model_path`` is a GGUF file declaring rank pooling (a reranker, not a chat
  model); unless ``--no-load``, the engine starts on it and reranks one document (the start time
  and one call's).
- ``remote``: the endpoint reranks one document within ``budget_ms``; a refused key, a wrong URL,
  a wrong answer shape or a timeout is one line naming the setting to fix.

A mistake that keeps `hearth serve` from building its engine or that no retry fixes (a wrong path,
key or URL) fails the doctor; a service that is down or slow is a warning, since each question
then keeps the fused order and goes on.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from core.config import Settings
from core.errors import RetrievalError
from core.retrieval.config import RerankSettings
from server.cli.doctor_check import Check

if TYPE_CHECKING:
    import httpx


NAME = "reranker"
# What the doctor asks a reranker to score: one short pair.
QUERY = "Which page says how the doctor checks the reranker?"
DOCUMENT = "hearth doctor checks the configured reranker by scoring one document."
_OFF = "or set retrieval.rerank.backend: off"
RANK_POOLING = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK: what a converted reranker declares


def rerank_check(settings: Settings, *, load: bool) -> Check:
    """The reranker line of `hearth doctor` (an OK "not configured" when the stage is off)."""

    rerank = settings.retrieval.rerank
    if rerank.backend == "off":
        return Check(NAME, True, "not configured (retrieval.rerank.backend: off)", required=False)
    if rerank.backend == "cross_encoder":
        return _cross_encoder(rerank, load)
    if rerank.backend == "llama_cpp":
        return _llama_cpp(rerank, settings, load)
    return _remote(rerank)


def _cross_encoder(rerank: RerankSettings, load: bool) -> Check:
    from core.retrieval.cross_encoder import CrossEncoderModel, check_model_dir, parameter_count

    fix = f"point retrieval.rerank.model_path at a cross-encoder directory, {_OFF}"
    try:
        path, cfg = check_model_dir(rerank.model_path)
        size = (path / "model.safetensors").stat().st_size / 1e6
        about = (
            f"cross_encoder {path}: {cfg.get('model_type')}, {parameter_count(path) / 1e6:.1f}M "
            f"parameters ({size:.0f} MB)"
        )
        if not load:
            return Check(NAME, True, f"{about}, not loaded (--no-load)")
        # One thread: the doctor scores a single pair (and leaves no pool behind).
        model = CrossEncoderModel(
            path, quantize=rerank.precision == "int8", max_tokens=rerank.n_ctx, threads=1
        )
        cached = model.cached()
        started = time.perf_counter()
        model.load()
        loaded = time.perf_counter()
        model.score(QUERY, [DOCUMENT])
        scored = time.perf_counter()
    except RetrievalError as exc:
        return Check(NAME, False, str(exc), fix)
    except Exception as exc:  # noqa: BLE001 - a tokenizer or ONNX Runtime failure, whatever it is
        return Check(NAME, False, f"the cross-encoder {rerank.model_path} did not load: {exc}", fix)
    how = "opens its cached graph" if cached else "built its graph (cached for the next start)"
    return Check(
        NAME,
        True,
        f"{about}; {how} in {loaded - started:.2f}s, {rerank.precision}; one pair scores in "
        f"{(scored - loaded) * 1000:.0f} ms",
    )


def _llama_cpp(rerank: RerankSettings, settings: Settings, load: bool) -> Check:
    from core.llm.gguf import gguf_metadata
    from core.retrieval.rerank import LocalReranker

    path = rerank.model_path
    fix = f"point retrieval.rerank.model_path at a reranking GGUF (e.g. bge-reranker-v2-m3), {_OFF}"
    if path is None or not path.is_file():
        return Check(
            NAME, False, f"llama_cpp: no file at retrieval.rerank.model_path ({path or 'not set'})", fix
        )
    meta = gguf_metadata(path, lambda key: key == "general.architecture" or key.endswith(".pooling_type"))
    if "general.architecture" not in meta:
        return Check(NAME, False, f"llama_cpp: {path} is not a GGUF file (no GGUF header)", fix)
    arch = str(meta["general.architecture"])
    about = f"llama_cpp {path} ({arch}, {path.stat().st_size / 1e6:.0f} MB)"
    if meta.get(f"{arch}.pooling_type") != RANK_POOLING:
        # llama-server --reranking scores such a model all the same, but the scores mean nothing.
        return Check(
            NAME,
            False,
            f"{about} declares no rank pooling ({arch}.pooling_type): not a reranking model",
            "point retrieval.rerank.model_path at a reranking GGUF (bge-reranker-v2-m3, jina-reranker-v2, "
            "Qwen3-Reranker, converted by llama.cpp's convert_hf_to_gguf.py)",
            required=False,
        )
    if not load:
        return Check(NAME, True, f"{about}, engine not started (--no-load)")
    reranker = LocalReranker(rerank, server_path=settings.llama_server_path)

    async def start_and_score() -> tuple[float, float]:
        try:
            started = time.perf_counter()
            await reranker.prepare()
            ready = time.perf_counter()
            scores = await reranker.scores(QUERY, [DOCUMENT])
            if scores[0] == float("-inf"):
                raise RetrievalError("the reranking engine answered without a score for the document")
            return ready - started, time.perf_counter() - ready
        finally:
            await reranker.aclose()

    try:
        start_s, score_s = asyncio.run(start_and_score())
    except RetrievalError as exc:
        tail = " | ".join(list(reranker.engine.tail)[-2:])
        detail = f"llama_cpp {path}: {exc}" + (f" (llama-server: {tail})" if tail else "")
        return Check(
            NAME,
            False,
            detail,
            "check that the GGUF is a reranking model (llama-server --reranking needs one) and that "
            f"llama-server runs (llm.local.server_path), {_OFF}",
        )
    return Check(
        NAME,
        True,
        f"{about}; engine starts in {start_s:.2f}s, one document reranks in {score_s * 1000:.0f} ms",
    )


def _remote(rerank: RerankSettings) -> Check:
    import httpx

    from core.retrieval.rerank import endpoint, parse_results

    if not rerank.url:
        return Check(
            NAME, False, "remote: retrieval.rerank.url is not set", f"set retrieval.rerank.url, {_OFF}"
        )
    url = endpoint(rerank.url)
    headers = {"Authorization": f"Bearer {rerank.api_key.get_secret_value()}"} if rerank.api_key else {}
    body: dict[str, object] = {"query": QUERY, "documents": [DOCUMENT], "top_n": 1}
    if rerank.model:
        body["model"] = rerank.model
    budget = rerank.budget_ms / 1000
    started = time.perf_counter()
    try:
        with httpx.Client(headers=headers, timeout=budget) as client:
            resp = client.post(url, json=body)
    except httpx.TimeoutException:
        return Check(
            NAME,
            False,
            f"remote {url} did not rerank one document within retrieval.rerank.budget_ms ({rerank.budget_ms} ms)",
            "check the service's load, or raise retrieval.rerank.budget_ms (past it questions keep the fused order)",
            required=False,
        )
    except httpx.HTTPError as exc:
        return Check(
            NAME,
            False,
            f"remote {url} unreachable: {type(exc).__name__}",
            "check retrieval.rerank.url and that the rerank service runs",
            required=False,
        )
    elapsed = time.perf_counter() - started
    status = resp.status_code
    if status in (401, 403):
        key = "check retrieval.rerank.api_key" if rerank.api_key else "set retrieval.rerank.api_key"
        return Check(NAME, False, f"remote {url} rejected the key (HTTP {status}{_said(resp)})", key)
    if status in (404, 405):
        return Check(
            NAME,
            False,
            f"remote {url} has no rerank endpoint (HTTP {status})",
            "check retrieval.rerank.url: the service's base URL (/v1/rerank is appended unless it ends in /rerank)",
        )
    if status >= 500:
        return Check(
            NAME,
            False,
            f"remote {url} failed (HTTP {status}{_said(resp)})",
            "check the rerank service's log",
            required=False,
        )
    if status != 200:
        return Check(
            NAME,
            False,
            f"remote {url} refused a one-document rerank (HTTP {status}{_said(resp)})",
            "check retrieval.rerank.model and that the service speaks /v1/rerank (query, documents)",
        )
    try:
        scores = parse_results(resp.json(), 1, url)
        if scores[0] == float("-inf"):
            raise RetrievalError(f"The reranker at {url} answered without a score for the document.")
    except (RetrievalError, ValueError) as exc:
        return Check(
            NAME,
            False,
            f"remote: {exc}",
            'point retrieval.rerank.url at a /v1/rerank service ({"results": [{"index", "relevance_score"}]})',
        )
    within = elapsed <= budget
    return Check(
        NAME,
        within,
        f"remote {url}{' (' + rerank.model + ')' if rerank.model else ''}: one document reranked in "
        f"{elapsed * 1000:.0f} ms (budget {rerank.budget_ms} ms)",
        "check the service's load, or raise retrieval.rerank.budget_ms (past it questions keep the fused order)",
        required=within,
    )


def _said(resp: httpx.Response) -> str:
    """The service's own error message, if its body has one (``error.message``, ``message``, ``detail``)."""
    try:
        data = resp.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        error = data.get("error")
        said = error.get("message") if isinstance(error, dict) else error
        said = said or data.get("message") or data.get("detail")
        if isinstance(said, str) and said:
            return f": {said[:160]}"
    return ""
