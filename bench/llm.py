"""Hearth's local backend versus raw llama-cpp-python: same model, prompts and settings, same run.

Prints JSON with tokens/s and time-to-first-token for both and the ratios (target: Hearth keeps
>= 0.95 of raw throughput). Run with `make bench` or:

    .venv/bin/python bench/llm.py --runs 5 --max-tokens 64 [--n-gpu-layers -1] [--model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.llm.base import GenOptions, Message, Role  # noqa: E402
from core.llm.config import LocalLLMSettings  # noqa: E402
from core.llm.llama_cpp import LlamaCppBackend, bundled_model_path, completion_prompt  # noqa: E402

PROMPTS = [
    'def parse_duration(text):\n    """Parse strings like \'1h30m\' into seconds."""\n',
    "# Team handbook\n\n## On-call\n\nThe on-call engineer is responsible for",
    'class LRUCache:\n    """A fixed-size least-recently-used cache."""\n\n    def __init__(self, capacity):\n',
    "Release notes for version 2.4:\n\n- ",
]


def prompt_for(i: int) -> str:
    # Vary every prompt so llama.cpp's prefix cache never makes a later run look faster.
    return f"# run {i}\n{PROMPTS[i % len(PROMPTS)]}"


def raw_run(llm: Any, text: str, max_tokens: int) -> dict[str, float]:
    tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
    started = time.perf_counter()
    first = None
    count = 0
    for part in llm.create_completion(
        prompt=tokens,
        max_tokens=max_tokens,
        temperature=0.0,
        stream=True,
        seed=0,
        repeat_penalty=GenOptions().repeat_penalty,
    ):
        choice = part["choices"][0]
        if choice.get("finish_reason") is None or choice.get("text"):
            count += 1
        if first is None and choice.get("text"):
            first = time.perf_counter()
    end = time.perf_counter()
    return _figures(started, first or end, end, count)


async def hearth_run(backend: LlamaCppBackend, text: str, max_tokens: int) -> dict[str, float]:
    started = time.perf_counter()
    first = None
    count = 0
    async for chunk in backend.stream(
        [Message(Role.USER, text)], GenOptions(max_tokens=max_tokens, temperature=0.0, seed=0)
    ):
        if chunk.text and first is None:
            first = time.perf_counter()
        if chunk.done and chunk.usage:
            count = chunk.usage.completion_tokens
    end = time.perf_counter()
    return _figures(started, first or end, end, count)


def _figures(started: float, first: float, end: float, tokens: int) -> dict[str, float]:
    decode = end - first
    return {
        "ttft_ms": (first - started) * 1000,
        "tokens": tokens,
        "tokens_per_s": (tokens - 1) / decode if tokens > 1 and decode > 0 else 0.0,
        "total_s": end - started,
    }


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    return {
        "tokens_per_s_p50": statistics.median(r["tokens_per_s"] for r in runs),
        "ttft_ms_p50": statistics.median(r["ttft_ms"] for r in runs),
        "tokens_mean": statistics.fmean(r["tokens"] for r in runs),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="measured generations per side (after one warm-up)"
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--model", type=Path, default=None, help="GGUF file (default: the bundled Gemma 3 270M)"
    )
    args = parser.parse_args()

    from llama_cpp import Llama, llama_supports_gpu_offload

    model = args.model or bundled_model_path()
    settings = LocalLLMSettings(
        model_path=model,
        n_ctx=args.n_ctx,
        n_gpu_layers=args.n_gpu_layers,
        n_threads=args.threads,
        prompt_format="completion",
    )
    raw = Llama(
        model_path=str(model),
        n_ctx=args.n_ctx,
        n_gpu_layers=args.n_gpu_layers,
        n_threads=args.threads,
        n_batch=settings.n_batch,
        seed=0,
        verbose=False,
    )
    hearth = LlamaCppBackend(settings)
    await hearth.load()

    # Same formatting on both sides: Hearth's completion prompt for one user message.
    texts = [completion_prompt([Message(Role.USER, prompt_for(i))]) for i in range(args.runs + 1)]
    raw_runs: list[dict[str, float]] = []
    hearth_runs: list[dict[str, float]] = []
    for i, text in enumerate(texts):
        # Alternate which side goes first so drift on a noisy machine hits both equally.
        for side in ("raw", "hearth") if i % 2 == 0 else ("hearth", "raw"):
            if side == "raw":
                result = raw_run(raw, text, args.max_tokens)
            else:
                result = await hearth_run(hearth, text, args.max_tokens)
            if i > 0:  # the first pair is a warm-up
                (raw_runs if side == "raw" else hearth_runs).append(result)
    await hearth.aclose()
    raw.close()

    r, h = summarize(raw_runs), summarize(hearth_runs)
    report = {
        "benchmark": "llm",
        "model": model.name,
        "n_gpu_layers": args.n_gpu_layers,
        "gpu_offload_built": bool(llama_supports_gpu_offload()),
        "runs": args.runs,
        "max_tokens": args.max_tokens,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "raw_llama_cpp": r,
        "hearth_local_backend": h,
        "ratio": {
            "tokens_per_s": round(h["tokens_per_s_p50"] / r["tokens_per_s_p50"], 3)
            if r["tokens_per_s_p50"]
            else None,
            "ttft": round(r["ttft_ms_p50"] / h["ttft_ms_p50"], 3) if h["ttft_ms_p50"] else None,
        },
        "target": {"tokens_per_s_ratio_min": 0.95},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
