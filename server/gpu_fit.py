"""Will the configured model fit in GPU memory with ``llm.local.n_gpu_layers``? (for `hearth doctor`)

The estimate: the offloaded share of the GGUF file (by layer count, read from the file's header)
plus a KV cache for ``n_ctx`` and the CUDA context overhead, against the free memory nvidia-smi
reports. It is an estimate, said as one; the point is to catch "70B model on a 24 GB card" before
the first request does.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_GGUF_MAGIC = b"GGUF"
# Fixed sizes of GGUF scalar value types (by type id); 8 = string, 9 = array.
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
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


def _read_str(fh: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", fh.read(8))
    return fh.read(n).decode("utf-8", "replace")


def _skip(fh: BinaryIO, vtype: int) -> None:
    if vtype == 8:
        (n,) = struct.unpack("<Q", fh.read(8))
        fh.seek(n, 1)
    elif vtype == 9:
        item_type, count = struct.unpack("<IQ", fh.read(12))
        if item_type in _SIZES:
            fh.seek(_SIZES[item_type] * count, 1)
        else:
            for _ in range(count):
                _skip(fh, item_type)
    else:
        fh.seek(_SIZES[vtype], 1)


def gguf_block_count(path: Path) -> int | None:
    """The model's layer count (``<arch>.block_count``) from a GGUF header, or None if unreadable."""
    try:
        with path.open("rb") as fh:
            if fh.read(4) != _GGUF_MAGIC:
                return None
            _version, _tensors, kv_count = struct.unpack("<IQQ", fh.read(20))
            for _ in range(kv_count):
                key = _read_str(fh)
                (vtype,) = struct.unpack("<I", fh.read(4))
                if key.endswith(".block_count") and vtype in (4, 5, 10, 11):
                    fmt = {4: "<I", 5: "<i", 10: "<Q", 11: "<q"}[vtype]
                    return int(struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0])
                _skip(fh, vtype)
    except (OSError, struct.error, KeyError):
        return None
    return None


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
