"""ONNX Runtime sessions on the graphs built from model weights, the built graph kept on disk.

Building a graph from safetensors (:mod:`core.retrieval.bert_onnx`) imports ``onnx`` (about a
second on its own) and writes tens of MB of protobuf: every cold process paid it, a `hearth search`
without a server once per query. The serialized graph is kept under ``$XDG_CACHE_HOME/hearth/onnx``
(default ``~/.cache``), named by what decides its content: the model directory's files (name, size,
modification time), the precision, the graph kind and the source of the code that builds it. A
later process opens the file directly; one that cannot write there builds in memory as before::

    session = cached_session(
        model_dir, "sentence_bert", quantize, lambda: build_sentence_bert(model_dir, quantize=quantize),
        "the embedding model", sources=[Path(bert_onnx.__file__)],
    )
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import RetrievalError

if TYPE_CHECKING:
    import onnx
    import onnxruntime

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where built graphs are kept (``$XDG_CACHE_HOME/hearth/onnx``, else ``~/.cache/hearth/onnx``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hearth" / "onnx"


def _inputs(model_dir: Path) -> list[Path]:
    """The files a graph is built from: the weights and every JSON config, one folder deep."""
    found = [*model_dir.glob("*.json"), *model_dir.glob("*/*.json"), *model_dir.glob("*.safetensors")]
    return sorted(p for p in found if p.is_file())


def cache_name(model_dir: Path, kind: str, quantize: bool, sources: Sequence[Path]) -> str:
    """The file name of one built graph: ``<model>-<kind>-<precision>-<digest>.onnx``."""
    digest = hashlib.sha256()
    root = model_dir.resolve()
    digest.update(f"{root}\0{kind}\0{quantize}\0".encode())
    for path in _inputs(root):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    for source in sources:
        digest.update(hashlib.sha256(source.read_bytes()).digest())
    try:  # the graph is serialized by this onnx release
        digest.update(metadata.version("onnx").encode())
    except metadata.PackageNotFoundError:
        pass
    return f"{_prefix(root, kind, quantize)}{digest.hexdigest()[:24]}.onnx"


def _prefix(root: Path, kind: str, quantize: bool) -> str:
    where = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    # A packaged model sits in ".../<package>/model": the package names it better.
    label = root.parent.name if root.name == "model" else root.name
    return f"{label}-{where}-{kind}-{'int8' if quantize else 'fp32'}-"


def cached_session(
    model_dir: Path,
    kind: str,
    quantize: bool,
    build: Callable[[], onnx.ModelProto],
    what: str,
    *,
    sources: Sequence[Path],
    intra_op_threads: int = 1,
) -> onnxruntime.InferenceSession:
    """A session on the graph ``build`` makes, built once per model version and kept on disk."""
    folder = cache_dir()
    name = cache_name(model_dir, kind, quantize, sources)
    path = folder / name
    if path.is_file():
        try:
            return open_session(str(path), what, intra_op_threads)
        except RetrievalError as exc:  # a torn or foreign file: build it again
            log.warning("rebuilding %s: the cached graph %s did not load (%s)", what, path, exc)
    data = build().SerializeToString()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        # Older builds of the same model, kind and precision are replaced, not kept.
        for old in folder.glob(f"{_prefix(model_dir.resolve(), kind, quantize)}*.onnx"):
            if old.name != name:
                old.unlink(missing_ok=True)
    except OSError as exc:
        log.info("not caching the built graph of %s in %s: %s", what, folder, exc)
    return open_session(data, what, intra_op_threads)


def open_session(model: str | bytes, what: str, intra_op_threads: int = 1) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session on a serialized graph or a graph file (``what`` names it in the error)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread per run by default; runs go side by side on the callers' workers (measured faster
    # than intra-op threads; bench/embedders.py compares the two).
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            model,
            options,
            providers=["CPUExecutionProvider"],
            # Fusing residual adds into SkipLayerNormalization made it slower on these CPUs.
            disabled_optimizers=["SkipLayerNormFusion"],
        )
    except Exception as exc:  # onnxruntime raises its own plain exceptions
        raise RetrievalError(f"ONNX Runtime could not load {what}: {exc}") from exc
