"""The ``cross_encoder`` reranker: a sentence-transformers CrossEncoder directory on ONNX Runtime.

An operator copies a cross-encoder onto the box (Hugging Face layout: ``config.json`` naming
``BertForSequenceClassification`` or ``XLMRobertaForSequenceClassification``, ``model.safetensors``,
``tokenizer.json`` or ``vocab.txt``) and points ``retrieval.rerank.model_path`` at it; nothing is
downloaded and PyTorch is not needed::

    retrieval:
      rerank: {backend: cross_encoder, model_path: /models/ms-marco-MiniLM-L-6-v2}

The graph is the embedder's encoder (:func:`core.retrieval.bert_onnx.encoder`, here with token
types: the question is segment 0, the passage segment 1) and the classification head on the first
token: ``dense`` + ``tanh`` (BERT's pooler, RoBERTa's ``classifier.dense``), then the linear layer
to one logit, the relevance score (sentence-transformers applies a sigmoid on top, which keeps the
order). Pairs are truncated longest side first to ``rerank.n_ctx`` tokens or the model's positions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from core.errors import RetrievalError
from core.retrieval import bert_onnx
from core.retrieval.bert_onnx import (
    Graph,
    cls_token,
    cpu_cores,
    encoder,
    finish,
    load_tokenizer,
    load_weights,
    max_positions,
    read_config,
)
from core.retrieval.config import RerankSettings
from core.retrieval.onnx_sessions import cache_dir, cache_name, cached_session

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import onnxruntime
    import tokenizers

log = logging.getLogger(__name__)

KINDS = ("bert", "xlm-roberta", "roberta")
# Protobuf's limit on one serialized model, less room for the graph (which carries its weights).
_MAX_GRAPH_BYTES = 2**31 - 2**26
# Pairs per ONNX Runtime run: small batches of similar length pad little (as the embedder's).
MICRO_BATCH = 4
_HINT = (
    "the cross_encoder backend runs BERT and XLM-RoBERTa cross-encoders (e.g. ms-marco-MiniLM-L-6-v2, "
    "bge-reranker-base); serve another with backend: remote."
)


def check_model_dir(model_dir: Path | None) -> tuple[Path, dict[str, Any]]:
    """A cross-encoder directory Hearth can run and its config, or one sentence saying what is wrong."""
    if model_dir is None:
        raise RetrievalError(
            "retrieval.rerank.backend is cross_encoder but retrieval.rerank.model_path is not set — point it "
            "at a cross-encoder directory on disk (e.g. a copy of cross-encoder/ms-marco-MiniLM-L-6-v2)."
        )
    if not (model_dir / "config.json").is_file():
        raise RetrievalError(
            f"No cross-encoder directory at {model_dir} (config.json is missing) — fix "
            "retrieval.rerank.model_path."
        )
    cfg = read_config(model_dir, KINDS, _HINT)
    architectures = [str(a) for a in cfg.get("architectures") or []]
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise RetrievalError(
            f"{model_dir} has no sequence-classification head (architectures: "
            f"{', '.join(architectures) or 'none'}) — a cross-encoder's config.json names e.g. "
            "BertForSequenceClassification."
        )
    labels = len(cfg["id2label"]) if isinstance(cfg.get("id2label"), dict) else cfg.get("num_labels", 2)
    if labels != 1:
        raise RetrievalError(
            f"{model_dir} classifies into {labels} labels; a reranker gives one relevance score (num_labels 1)."
        )
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise RetrievalError(f"No model.safetensors in {model_dir}: it is needed to run without PyTorch.")
    size = _float32_bytes(weights)
    if size >= _MAX_GRAPH_BYTES:
        raise RetrievalError(
            f"{model_dir} holds {size / 1e9:.1f} GB of float32 weights, more than one in-memory ONNX graph "
            "can (2 GB) — run it as a GGUF with backend: llama_cpp, or through backend: remote."
        )
    return model_dir, cfg


def parameter_count(model_dir: Path) -> int:
    """How many weights a cross-encoder directory's ``model.safetensors`` holds (from its header)."""
    return _float32_bytes(model_dir / "model.safetensors") // 4


def _float32_bytes(weights: Path) -> int:
    """The size of a safetensors file's tensors as float32, from its header (the graph stores float32)."""
    try:
        with weights.open("rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    except (OSError, ValueError) as exc:
        raise RetrievalError(f"{weights} is not a safetensors file: {exc}") from exc
    tensors = [t for t in header.values() if isinstance(t, dict) and "shape" in t]
    return sum(4 * math.prod(int(n) for n in t["shape"]) for t in tensors)


def build_cross_encoder(model_dir: Path, *, quantize: bool = False) -> onnx.ModelProto:
    """The graph ``(input_ids, attention_mask, token_type_ids) -> logits [batch]`` of a cross-encoder."""
    import numpy as np

    _, cfg = check_model_dir(model_dir)
    log.info("building the cross-encoder %s for ONNX Runtime (%s)", model_dir, "int8" if quantize else "fp32")
    w = load_weights(model_dir, cfg)
    g = Graph()
    # XLM-RoBERTa has one token type (its tokenizer says 0 throughout): the input is then unused.
    types = int(cfg.get("type_vocab_size", 2)) > 1
    first = cls_token(g, encoder(g, cfg, w, quantize=quantize, token_types=types))
    if str(cfg.get("model_type")) == "bert":
        dense, out = "pooler.dense", "classifier"
    else:  # RobertaClassificationHead: no pooler, its own dense layer
        dense, out = "classifier.dense", "classifier.out_proj"
    hidden = g.op("MatMul", [first, g.const("head_w", np.ascontiguousarray(w(f"{dense}.weight").T))], "head")
    hidden = g.op("Tanh", [g.op("Add", [hidden, g.const("head_b", w(f"{dense}.bias"))], "head_b_")], "head_t")
    logit = g.op("MatMul", [hidden, g.const("out_w", np.ascontiguousarray(w(f"{out}.weight").T))], "out")
    logit = g.op("Add", [logit, g.const("out_b", w(f"{out}.bias"))], "out_b_")
    g.op("Squeeze", [logit, g.ints("axis_labels", 1)], "logits")
    return finish(
        g, "cross_encoder", ["input_ids", "attention_mask", "token_type_ids"], ("logits", ["batch"])
    )


class CrossEncoderModel:
    """The tokenizer, the session and the threads of one cross-encoder (built when first needed)."""

    def __init__(self, path: Path | None, *, quantize: bool, max_tokens: int, threads: int = 0) -> None:
        self.path, cfg = check_model_dir(path)
        self.max_tokens = min(max_tokens, max_positions(cfg))
        self.quantize = quantize
        workers = threads or cpu_cores()
        self.workers = (
            ThreadPoolExecutor(workers, thread_name_prefix="hearth-rerank") if workers > 1 else None
        )
        self._loaded: tuple[tokenizers.Tokenizer, onnxruntime.InferenceSession] | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the graph is built and open."""
        return self._loaded is not None

    def cached(self) -> bool:
        """Whether the built graph is in the graph cache already (loading then skips the build)."""
        name = cache_name(self.path, "cross_encoder", self.quantize, _sources())
        return (cache_dir() / name).is_file()

    def load(self) -> tuple[tokenizers.Tokenizer, onnxruntime.InferenceSession]:
        """Build the graph and open it (once; blocking)."""
        with self._lock:
            if self._loaded is None:
                tokenizer = load_tokenizer(self.path, self.max_tokens)
                session = cached_session(
                    self.path,
                    "cross_encoder",
                    self.quantize,
                    lambda: build_cross_encoder(self.path, quantize=self.quantize),
                    f"the cross-encoder {self.path}",
                    sources=_sources(),
                )
                self._loaded = (tokenizer, session)
            return self._loaded

    def score(self, query: str, documents: Sequence[str], stop: threading.Event | None = None) -> list[float]:
        """One logit per (query, document) pair, in order (blocking; ``stop`` abandons the rest)."""
        tokenizer, session = self.load()
        encodings = tokenizer.encode_batch([(query, d) for d in documents])
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        batches = [order[i : i + MICRO_BATCH] for i in range(0, len(order), MICRO_BATCH)]

        def run(batch: list[int]) -> np.ndarray:
            import numpy as np

            if stop is not None and stop.is_set():
                return np.zeros(len(batch), dtype=np.float32)  # abandoned: nobody reads it
            width = max(len(encodings[i].ids) for i in batch)
            inputs = {n: np.zeros((len(batch), width), dtype=np.int64) for n in _INPUTS}
            for row, i in enumerate(batch):
                e = encodings[i]
                inputs["input_ids"][row, : len(e.ids)] = e.ids
                inputs["token_type_ids"][row, : len(e.ids)] = e.type_ids
                inputs["attention_mask"][row, : len(e.ids)] = 1
            return cast("np.ndarray", session.run(None, inputs)[0])

        runs = self.workers.map(run, batches) if self.workers and len(batches) > 1 else map(run, batches)
        out = [0.0] * len(encodings)
        for batch, logits in zip(batches, runs, strict=True):
            for i, value in zip(batch, logits.tolist(), strict=True):
                out[i] = float(value)
        return out


_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _sources() -> list[Path]:
    """The builder's source files: a change to them makes the cached graph stale."""
    return [Path(bert_onnx.__file__), Path(__file__)]


_MODELS: dict[tuple[str, bool, int, int], CrossEncoderModel] = {}
_MODELS_LOCK = threading.Lock()


def shared_model(settings: RerankSettings) -> CrossEncoderModel:
    """One model per directory and precision per process (the CLI, the bots and evals share it)."""
    path, _ = check_model_dir(settings.model_path)
    key = (str(path.resolve()), settings.precision == "int8", settings.n_ctx, settings.threads)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = CrossEncoderModel(path, quantize=key[1], max_tokens=key[2], threads=key[3])
        return _MODELS[key]


class CrossEncoderReranker:
    """Scores (question, chunk) pairs with a local cross-encoder; implements ``Reranker``.

    The directory is checked when the reranker is made (a wrong path is the operator's error at
    once); the graph is built at the first question, outside the latency budget (``prepare``).
    """

    def __init__(self, settings: RerankSettings, model: CrossEncoderModel | None = None) -> None:
        self.settings = settings
        self.model = model or shared_model(settings)

    async def prepare(self) -> None:
        """Build and open the graph (once per process)."""
        await asyncio.to_thread(self.model.load)

    async def scores(self, query: str, documents: Sequence[str]) -> list[float]:
        """One relevance logit per document; a cancelled call (past the budget) stops its remaining batches."""
        stop = threading.Event()
        try:
            return await asyncio.to_thread(self.model.score, query, list(documents), stop)
        except asyncio.CancelledError:
            stop.set()
            raise
        except RetrievalError:
            raise
        except Exception as exc:  # onnxruntime raises its own plain exceptions
            raise RetrievalError(f"the cross-encoder {self.model.path} failed: {exc}") from exc

    async def aclose(self) -> None:
        """Nothing to release: the model stays loaded for the rest of the process."""
