"""REST `/v1/ask` under 1, 4 and 16 concurrent clients versus the same calls made directly to
llama-cpp-python, in the same run, on the same model and prompts.

The direct baseline is what a hand-rolled server would do: one ``Llama`` object, a lock around it
(one generation at a time, as Hearth's queue also runs), ``c`` client threads. The REST side is
the real `hearth serve` (subprocess) with a bearer token; the client posts JSON and waits for the
whole answer. Latency includes waiting for the model in both. Prints JSON:

    .venv/bin/python bench/rest.py [--levels 1,4,16] [--requests 4,8,16] [--max-tokens 16]
                                   [--n-gpu-layers -1] [--model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import Settings  # noqa: E402
from core.db import Database  # noqa: E402
from core.llm.base import Priority  # noqa: E402
from core.llm.llama_cpp import bundled_model_path, completion_prompt  # noqa: E402
from core.prompts.registry import PromptRegistry  # noqa: E402
from server.auth import TokenStore  # noqa: E402

QUESTIONS = [
    "How do I request time off?",
    "What is the on-call rotation?",
    "Where are the deploy scripts kept?",
    "Who approves expense reports?",
]


def question(i: int) -> str:
    # Different text each time, so llama.cpp's prefix cache treats both sides alike.
    return f"{QUESTIONS[i % len(QUESTIONS)]} (#{i})"


def summarize(latencies: list[float], wall: float, tokens: int) -> dict[str, float]:
    """Throughput and latency percentiles."""
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))] * 1000

    return {
        "requests": len(latencies),
        "throughput_rps": round(len(latencies) / wall, 3),
        "tokens_per_s": round(tokens / wall, 2),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(pct(99), 1),
        "wall_s": round(wall, 3),
    }


class Direct:
    """The same prompts through one llama_cpp.Llama behind a lock, from ``c`` threads."""

    def __init__(self, settings: Settings, model: Path) -> None:
        from llama_cpp import Llama

        self.settings = settings
        local = settings.llm.local
        self.llm = Llama(
            model_path=str(model),
            n_ctx=local.n_ctx,
            n_gpu_layers=local.n_gpu_layers,
            n_threads=local.n_threads,
            n_batch=local.n_batch,
            seed=local.seed,
            verbose=False,
        )
        self.prompts = PromptRegistry(None)
        self.lock = threading.Lock()
        self.one(-1)  # warm up, as the REST side does

    def one(self, i: int) -> tuple[float, int]:
        """One request: latency (including the wait for the lock) and tokens."""
        rendered = self.prompts.render("chat", question=question(i), history=[])
        text = completion_prompt(rendered.messages, rendered.answer_prefix)
        started = time.perf_counter()
        count = 0
        with self.lock:
            tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
            for part in self.llm.create_completion(
                prompt=tokens,
                max_tokens=self.settings.llm.max_tokens,
                stop=list(rendered.stop) or None,
                temperature=self.settings.llm.temperature,
                top_p=0.95,
                stream=True,
                seed=self.settings.llm.local.seed,
            ):
                if part["choices"][0].get("text"):
                    count += 1
        return time.perf_counter() - started, count

    def round(self, c: int, ids: list[int]) -> dict[str, float]:
        """``len(ids)`` requests from ``c`` threads."""
        with ThreadPoolExecutor(max_workers=c) as pool:
            started = time.perf_counter()
            done = list(pool.map(self.one, ids))
            wall = time.perf_counter() - started
        return summarize([d[0] for d in done], wall, sum(d[1] for d in done))

    def close(self) -> None:
        """Free the model."""
        self.llm.close()


class Rest:
    """A real `hearth serve` subprocess and a bearer token for it."""

    def __init__(self, config: Path, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.url = ""
        self.headers: dict[str, str] = {}
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Create a token, start the server, wait for its address, warm it up."""
        import aiohttp

        db = Database(self.settings.database_url)
        _, token = await TokenStore(db).create("bench", [])
        await db.aclose()
        self.headers = {"Authorization": f"Bearer {token}"}
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")} | {"HF_HUB_OFFLINE": "1"}
        self.proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("hearth")),
            "--config",
            str(self.config),
            "serve",
            "--port",
            "0",
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            env=env,
        )
        assert self.proc.stderr is not None
        while not self.url:
            line = (await asyncio.wait_for(self.proc.stderr.readline(), 180)).decode()
            if not line:
                raise SystemExit("hearth serve exited before listening")
            if "Hearth listening on " in line:
                self.url = line.split("Hearth listening on ", 1)[1].strip()
        self._drain = asyncio.create_task(_drain(self.proc.stderr))
        async with aiohttp.ClientSession(self.url) as http:
            async with http.post("/v1/ask", json={"question": "warm up"}, headers=self.headers) as resp:
                assert resp.status == 200, await resp.text()

    async def round(self, c: int, ids: list[int]) -> dict[str, float]:
        """``len(ids)`` questions from ``c`` concurrent clients."""
        import aiohttp

        pending = list(ids)
        latencies: list[float] = []
        tokens = 0
        async with aiohttp.ClientSession(self.url, timeout=aiohttp.ClientTimeout(total=900)) as http:

            async def client() -> None:
                nonlocal tokens
                while pending:
                    i = pending.pop()
                    started = time.perf_counter()
                    async with http.post(
                        "/v1/ask", json={"question": question(i)}, headers=self.headers
                    ) as resp:
                        body = await resp.json()
                        assert resp.status == 200, body
                    latencies.append(time.perf_counter() - started)
                    tokens += body["usage"]["completion_tokens"]

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(c)))
            wall = time.perf_counter() - started
        return summarize(latencies, wall, tokens)

    async def stop(self) -> None:
        """SIGTERM the server and wait for it."""
        if self.proc is not None:
            self.proc.terminate()
            await self.proc.wait()
        if self._drain is not None:
            self._drain.cancel()


async def stack_overhead(requests: int = 100) -> dict[str, float]:
    """/v1/ask through the whole HTTP stack (auth, audit, metrics) with an instant fake model."""
    import aiohttp
    from aiohttp import web

    from core.assistant import Assistant
    from core.llm.fake import FakeBackend
    from core.llm.router import Router
    from server.app import create_app
    from server.auth import TOKENS

    with tempfile.TemporaryDirectory(prefix="hearth-bench-stack-") as tmp:
        settings = Settings(home=tmp, server={"rate_limit_per_minute": 1_000_000})
        reply = " ".join(f"w{i}" for i in range(16))
        app = create_app(
            settings, assistant=Assistant(settings, Router(local=FakeBackend(reply=reply), remote=None))
        )
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        _, token = await app[TOKENS].create("bench", [])
        headers = {"Authorization": f"Bearer {token}"}
        latencies = []
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            started = time.perf_counter()
            for i in range(requests):
                t0 = time.perf_counter()
                async with http.post("/v1/ask", json={"question": question(i)}, headers=headers) as resp:
                    await resp.json()
                latencies.append(time.perf_counter() - t0)
            wall = time.perf_counter() - started
        await runner.cleanup()
    return summarize(latencies, wall, 16 * requests)


async def compare(
    config: Path, settings: Settings, model: Path, levels: list[int], counts: list[int]
) -> list[dict[str, Any]]:
    """Each level: the direct round, then the REST round (alternating, so load drifts hit both)."""
    server = Rest(config, settings)
    await server.start()
    baseline = await asyncio.to_thread(Direct, settings, model)
    rounds = []
    offset = 0
    try:
        for c, n in zip(levels, counts, strict=True):
            d = await asyncio.to_thread(baseline.round, c, list(range(offset, offset + n)))
            r = await server.round(c, list(range(offset + 50_000, offset + 50_000 + n)))
            offset += n
            rounds.append(
                {
                    "concurrency": c,
                    "direct_llama_cpp": d,
                    "rest": r,
                    "throughput_ratio": round(r["throughput_rps"] / d["throughput_rps"], 3),
                    "p50_ratio": round(r["p50_ms"] / d["p50_ms"], 3),
                    "p99_ratio": round(r["p99_ms"] / d["p99_ms"], 3),
                }
            )
    finally:
        baseline.close()
        await server.stop()
    return rounds


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


def main() -> None:
    """Run both sides and print the comparison."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="1,4,16", help="Concurrent clients per round.")
    parser.add_argument("--requests", default="4,8,16", help="Requests per round (one per level).")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--n-threads", type=int, default=None)
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the bundled model).")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    counts = [int(x) for x in args.requests.split(",")]
    if len(levels) != len(counts):
        parser.error("--levels and --requests need the same number of entries")
    # The bench writes its own config; HEARTH_* variables would apply to one side only.
    for key in [k for k in os.environ if k.startswith("HEARTH_")]:
        del os.environ[key]
    model = args.model or bundled_model_path()
    with tempfile.TemporaryDirectory(prefix="hearth-bench-rest-") as tmp:
        local = {"model_path": str(model), "n_ctx": args.n_ctx, "n_gpu_layers": args.n_gpu_layers}
        if args.n_threads:
            local["n_threads"] = args.n_threads
        data = {
            "home": tmp,
            "log_level": "WARNING",
            "llm": {
                "local": local,
                "max_tokens": args.max_tokens,
                "queue": {"max_depth": max(levels) + 4},
                "routing": {"first_token_timeout_s": 600},
            },
            "server": {"rate_limit_per_minute": 1_000_000},
        }
        config = Path(tmp) / "hearth.yaml"
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        settings = Settings(**data)
        rounds = asyncio.run(compare(config, settings, model, levels, counts))
    overhead = asyncio.run(stack_overhead())
    print(
        json.dumps(
            {
                "bench": "rest",
                "model": model.name,
                "max_tokens": args.max_tokens,
                "n_ctx": args.n_ctx,
                "n_gpu_layers": args.n_gpu_layers,
                "priority": Priority.CHAT.name.lower(),
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "rounds": rounds,
                # The HTTP stack alone (instant fake model, in-process): what REST adds per request.
                "stack_overhead_fake_model": overhead,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
