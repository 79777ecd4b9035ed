"""Will the configured model fit in GPU memory with ``llm.local.n_gpu_layers``? (for `hearth doctor`)

The estimate: the offloaded share of the GGUF file (by layer count, read from the file's header)
plus a KV cache for ``n_ctx`` and the CUDA context overhead, against the free memory nvidia-smi
reports. It is an estimate, said as one; the point is to catch "70B model on a 24 GB card" before
the first request does.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from core.llm.gguf import gguf_block_count

__all__ = ["Fit", "GpuInfo", "estimate", "gguf_block_count", "query_gpus"]

_CUDA_OVERHEAD_MB = 400.0


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as nvidia-smi sees it."""

    name: str
    total_mb: float
    free_mb: float


@dataclass(frozen=True)
class Fit:
    """The outcome of the estimate."""

    ok: bool
    needed_mb: float
    free_mb: float
    layers: int | None
    offloaded: int | None
    detail: str
    max_layers: int | None = None


def query_gpus(timeout_s: float = 10.0) -> list[GpuInfo] | None:
    """GPUs from nvidia-smi, or None when there is no nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    out = subprocess.run(
        [smi, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    ).stdout
    gpus = []
    for line in out.strip().splitlines():
        name, total, free = (part.strip() for part in line.rsplit(",", 2))
        gpus.append(GpuInfo(name, float(total), float(free)))
    return gpus


def estimate(model_mb: float, layers: int | None, n_gpu_layers: int, n_ctx: int, free_mb: float) -> Fit:
    """Whether ``n_gpu_layers`` of a ``model_mb`` model (``layers`` deep) fit in ``free_mb``."""
    if layers is None or layers <= 0:
        share, offloaded = (1.0 if n_gpu_layers != 0 else 0.0), None
    else:
        offloaded = layers if n_gpu_layers < 0 else min(n_gpu_layers, layers)
        share = offloaded / layers
    # KV cache grows with context; 10% of the weights per 4k tokens is a fair rule of thumb for GQA models.
    kv_mb = model_mb * 0.10 * (n_ctx / 4096) * share
    needed = model_mb * share + kv_mb + _CUDA_OVERHEAD_MB
    per_layer = (model_mb * (1 + 0.10 * n_ctx / 4096)) / layers if layers else None
    max_layers = None
    if per_layer:
        max_layers = max(0, min(layers or 0, int((free_mb - _CUDA_OVERHEAD_MB) // per_layer)))
    what = f"{offloaded}/{layers} layers" if offloaded is not None else "all layers"
    ok = needed <= free_mb
    detail = f"{what} of a {model_mb:,.0f} MB model need about {needed:,.0f} MB; {free_mb:,.0f} MB free"
    return Fit(ok, needed, free_mb, layers, offloaded, detail, max_layers)
