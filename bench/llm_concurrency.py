"""The local engine under 1, 4, 8 and 16 concurrent requests: Hearth's llama-server path versus
(a) the serialized in-process path (one llama-cpp-python ``Llama`` behind the one-slot queue,
today's ``llm.local.engine: in_process``) and (b) the bare llama-server with the same slots,
called directly over its socket. Same model, same prompts, greedy, measured in one run. Prints JSON:

    .venv/bin/python bench/llm_concurrency.py [--levels 1,4,8,16] [--max-tokens 64] [--parallel 8] [--rounds 3]
                                              [--n-gpu-layers -1] [--model PATH] [--threads N]
                                              [--temperature 0.2 --repeat-penalty 1.1]  (Hearth's defaults)
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.llm.base import Chunk, GenOptions, Message, Role  # noqa: E402
from core.llm.build_info import inspect_build  # noqa: E402
from core.llm.config import LocalLLMSettings  # noqa: E402
from core.llm.engine import EngineProcess  # noqa: E402
from core.llm.llama_cpp import LlamaCppBackend, bundled_model_path  # noqa: E402
from core.llm.llama_server import LlamaServerBackend  # noqa: E402
from core.llm.prompting import completion_prompt  # noqa: E402
from core.llm.queue import LocalQueue  # noqa: E402
from core.llm.router import Router  # noqa: E402

TOPICS = ["a binary search", "a linked list", "a hash map", "a priority queue", "a trie", "a ring buffer"]

# One request: (ttft_s, tokens). A side is a function from request number to that.
Request = Callable[[int], Awaitable[tuple[float, int]]]


def messages(i: int) -> list[Message]:
    # Different text each time, so no side gets a free prefix-cache hit the others do not.
    topic = TOPICS[i % len(TOPICS)]
    return [Message(Role.USER, f"# Request {i}: a Python implementation of {topic}, with comments.\n\nclass")]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


async def level(run: Request, c: int, start: int) -> dict[str, float]:
    """``c`` clients, each sending its requests one after another (at least 4 requests in all)."""
    per_client = max(1, -(-4 // c))
    ids = iter(range(start, start + c * per_client))

    async def client() -> list[tuple[float, int]]:
        return [await run(next(ids)) for _ in range(per_client)]

    started = time.perf_counter()
    done = [d for batch in await asyncio.gather(*(client() for _ in range(c))) for d in batch]
    wall = time.perf_counter() - started
    ttft = [d[0] for d in done]
    tokens = sum(d[1] for d in done)
    return {
        "requests": len(done),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "ttft_p50_ms": round(statistics.median(ttft) * 1000, 1),
        "ttft_p95_ms": round(pct(ttft, 95) * 1000, 1),
        "wall_s": round(wall, 3),
    }


def through_router(router: Router, opts: GenOptions) -> Request:
    async def run(i: int) -> tuple[float, int]:
        started = time.perf_counter()
        first = 0.0
        final = Chunk()
        async for chunk in router.stream(messages(i), opts):
            if chunk.text and not first:
                first = time.perf_counter() - started
            if chunk.done:
                final = chunk
        return first, final.usage.completion_tokens if final.usage else 0

    return run


def bare(engine: EngineProcess, opts: GenOptions) -> Request:
    async def run(i: int) -> tuple[float, int]:
        body: dict[str, Any] = {
            "prompt": completion_prompt(messages(i)),
            "n_predict": opts.max_tokens,
            "temperature": opts.temperature,
            "repeat_penalty": opts.repeat_penalty,
            "seed": 0,
            "stream": True,
            "cache_prompt": True,
        }
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        async with engine.session().post("/completion", json=body) as resp:
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("content") and not first:
                    first = time.perf_counter() - started
                if event.get("stop"):
                    tokens = int(event.get("tokens_predicted") or 0)
        return first, tokens

    return run


async def measure(run: Request, levels: list[int], warm: Request, rounds: int) -> dict[str, dict[str, float]]:
    """Each level ``rounds`` times; the round with the median throughput is reported, with the range."""
    await warm(10_000)
    out: dict[str, dict[str, float]] = {}
    start = 0
    for c in levels:
        tries = []
        for _ in range(rounds):
            tries.append(await level(run, c, start))
            start += 100
        tries.sort(key=lambda t: t["tokens_per_s"])
        picked = dict(tries[len(tries) // 2])
        picked["tokens_per_s_min"] = tries[0]["tokens_per_s"]
        picked["tokens_per_s_max"] = tries[-1]["tokens_per_s"]
        out[str(c)] = picked
    return out


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    model = Path(args.model) if args.model else bundled_model_path()
    opts = GenOptions(
        max_tokens=args.max_tokens, temperature=args.temperature, repeat_penalty=args.repeat_penalty, seed=0
    )
    common = {
        "model_path": model,
        "n_ctx": args.n_ctx,
        "n_threads": args.threads,
        "n_gpu_layers": args.n_gpu_layers,
    }
    if args.server_path:
        common["server_path"] = Path(args.server_path)
    results: dict[str, Any] = {}

    # (a) today's serialized in-process path: one Llama, one slot.
    if "in_process" in args.sides:
        inproc = LlamaCppBackend(LocalLLMSettings(engine="in_process", **common))  # type: ignore[arg-type]
        router = Router(local=inproc, remote=None, queue=LocalQueue(max_depth=1000, capacity=1))
        try:
            run = through_router(router, opts)
            results["in_process_serialized"] = await measure(run, args.levels, run, args.rounds)
        finally:
            await router.aclose()

    # (b) the bare llama-server with the same slots, and (c) Hearth over it.
    settings = LocalLLMSettings(engine="server", parallel=args.parallel, **common)  # type: ignore[arg-type]
    if "bare" in args.sides:
        engine = EngineProcess(settings, model)
        try:
            await engine.ensure_ready()
            run = bare(engine, opts)
            results["bare_llama_server"] = await measure(run, args.levels, run, args.rounds)
        finally:
            await engine.stop()
    if "hearth" in args.sides:
        server = LlamaServerBackend(settings)
        router = Router(local=server, remote=None, queue=LocalQueue(max_depth=1000, capacity=args.parallel))
        try:
            run = through_router(router, opts)
            results["hearth_llama_server"] = await measure(run, args.levels, run, args.rounds)
        finally:
            await router.aclose()
    return results


def ratios(results: dict[str, Any], levels: list[int]) -> dict[str, float]:
    """Hearth against each baseline, per level (only when all three sides ran)."""
    if not {"hearth_llama_server", "in_process_serialized", "bare_llama_server"} <= results.keys():
        return {}
    hearth, inproc, bare_ = (
        results[k] for k in ("hearth_llama_server", "in_process_serialized", "bare_llama_server")
    )
    out: dict[str, float] = {}
    for c in map(str, levels):
        out[f"vs_in_process_at_{c}"] = round(hearth[c]["tokens_per_s"] / inproc[c]["tokens_per_s"], 2)
        out[f"vs_bare_server_at_{c}"] = round(hearth[c]["tokens_per_s"] / bare_[c]["tokens_per_s"], 2)
    if "1" in hearth and "8" in hearth:
        out["ttft_p95_at_8_over_single_p50"] = round(
            hearth["8"]["ttft_p95_ms"] / hearth["1"]["ttft_p50_ms"], 2
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="1,4,8,16", help="concurrency levels (default 1,4,8,16)")
    parser.add_argument("--max-tokens", type=int, default=64, help="new tokens per request (default 64)")
    parser.add_argument("--parallel", type=int, default=8, help="llama-server slots (default 8)")
    parser.add_argument("--n-ctx", type=int, default=512, help="context per slot (default 512)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="decode threads")
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="layers on the GPU (-1: all)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per level; the median is reported (default 3)"
    )
    parser.add_argument(
        "--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy)"
    )
    parser.add_argument("--repeat-penalty", type=float, default=1.0, help="repeat penalty (default 1.0: off)")
    parser.add_argument(
        "--server-path", default=None, help="llama-server binary (default: the installed one)"
    )
    parser.add_argument(
        "--sides",
        default="in_process,bare,hearth",
        help="which sides to run (default in_process,bare,hearth)",
    )
    parser.add_argument("--model", default=None, help="GGUF file (default: the bundled Gemma 3 270M)")
    args = parser.parse_args()
    args.levels = [int(x) for x in args.levels.split(",")]
    args.sides = set(args.sides.split(","))
    results = asyncio.run(amain(args))
    build = inspect_build()
    print(
        json.dumps(
            {
                "benchmark": "llm_concurrency",
                "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
                "build": {"features": build.enabled_features, "portable": not build.problems},
                "settings": {
                    k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items() if k != "model"
                },
                "results": results,
                "ratios": ratios(results, args.levels),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
