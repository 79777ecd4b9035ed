"""`hearth search` latency: through a running `hearth serve`, from a cold CLI, and inside the server.

One run, one index: ``--chunks`` synthetic chunks (``--docs-per`` sections per page, one chunk each,
words from a seeded vocabulary; each page has its own topic words) in a ``type: files`` source,
indexed once by ``hearth index`` with the real embedder (``--workdir`` keeps the index between runs).
Then, all real processes on 127.0.0.1:

- **cold**: ``hearth search`` with no server running, each a fresh process (it opens the store
  and loads the embedder itself): wall seconds of the first run and the median of ``--cold-runs``,
  and of one run with an empty graph cache (the first query after installing: it builds the
  embedder's ONNX graph, :mod:`core.retrieval.onnx_sessions`);
- **through serve**: ``hearth serve --port 0`` is started, and ``hearth search`` goes through it
  (the owner file): wall seconds per process, p50 over ``--queries`` (the first query, which
  loads the server's embedder, is reported apart);
- **in serve**: ``POST /v1/index/search`` with the owner's token, ``--server-queries`` times on
  one connection: p50/p95 ms (no reranker);
- **in serve, reranked** (``--rerank-model DIR``): the same with ``retrieval.rerank.backend:
  cross_encoder`` on that directory, and how many queries ran past ``--rerank-budget-ms``;
- **floor**: ``hearth --version`` (interpreter + click, no command imports) and a bare ``python``.

Prints one JSON object: the figures, the issue's targets (through serve well under 1 s, cold
under 3 s, in serve at most 50 ms) and ratios::

    .venv/bin/python bench/search_cli.py --chunks 10000 --workdir /tmp/hearth-search-bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEARTH = str(Path(sys.executable).with_name("hearth"))
TARGETS = {"through_serve_p50_s": 1.0, "cold_first_s": 3.0, "in_serve_p50_ms": 50.0}


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """Pronounceable made-up words (no two alike), so every query term is in the index on purpose."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def write_corpus(folder: Path, chunks: int, per_page: int, chunk_size: int, seed: int = 20) -> list[str]:
    """Pages of ``per_page`` sections, each about 80% of ``chunk_size``; returns one query per page."""
    rng = random.Random(seed)
    words = vocabulary(4000, rng)
    common = words[:400]  # shared by every page, as a team's jargon is
    folder.mkdir(parents=True, exist_ok=True)
    queries = []
    for page in range(max(1, chunks // per_page)):
        topic = rng.sample(words[400:], 6)
        lines = [f"# {topic[0].title()} {topic[1]} guide {page}", ""]
        for section in range(per_page):
            heading = f"{rng.choice(topic)} {rng.choice(common)} {section}"
            lines += [f"## {heading.title()}", ""]
            text: list[str] = []
            while sum(len(w) + 1 for w in text) < chunk_size * 0.8:
                text.append(rng.choice(topic) if rng.random() < 0.15 else rng.choice(common))
            lines += [" ".join(text).capitalize() + ".", ""]
        (folder / f"page-{page:05d}.md").write_text("\n".join(lines), encoding="utf-8")
        queries.append(f"how do I {topic[0]} the {topic[1]} {rng.choice(common)}")
    return queries


def write_config(work: Path, docs: Path, chunk_size: int, rerank: dict[str, Any] | None = None) -> Path:
    """A hearth.yaml: one files source, no local model (search needs none), a generous rate limit."""
    import yaml

    config = work / ("hearth-rerank.yaml" if rerank else "hearth.yaml")
    data: dict[str, Any] = {
        "home": str(work / "home"),
        "llm": {"local": {"enabled": False}},
        "sources": [
            {"name": "corpus", "type": "files", "path": str(docs), "acl": ["public"], "sync_every": 0}
        ],
        "retrieval": {"chunk_size": chunk_size, "chunk_overlap": 0},
        "server": {"rate_limit_per_minute": 100000},
    }
    if rerank:
        data["retrieval"]["rerank"] = rerank
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    return config


def env(**extra: str) -> dict[str, str]:
    """The environment of every hearth process: no HEARTH_* leaking in, offline."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    out.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", **extra)
    return out


def timed(
    args: list[str], *, timeout: float = 600, extra_env: dict[str, str] | None = None
) -> tuple[float, str]:
    """Wall seconds of one process (it must succeed) and its stdout."""
    started = time.perf_counter()
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env(**(extra_env or {})), cwd=ROOT
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])}… failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def search(config: Path, query: str, **extra_env: str) -> tuple[float, int]:
    """One `hearth search` process: wall seconds and the number of hits."""
    seconds, out = timed([HEARTH, "--config", str(config), "search", query, "--json"], extra_env=extra_env)
    return seconds, len(json.loads(out))


def index(config: Path, work: Path, chunks: int) -> dict[str, Any]:
    """Index the corpus once (kept in ``work`` for the next run with the same size)."""
    marker = work / "indexed.json"
    if marker.is_file():
        stored: dict[str, Any] = json.loads(marker.read_text())
        if stored.get("requested") == chunks:
            return stored | {"reused": True}
    seconds, out = timed([HEARTH, "--config", str(config), "index", "--json"], timeout=7200)
    report = json.loads(out)[0]
    figures = {
        "requested": chunks,
        "chunks": report["chunks"],
        "docs": report["added"],
        "seconds": round(seconds, 1),
    }
    marker.write_text(json.dumps(figures))
    return figures | {"reused": False}


def start_serve(config: Path, owner: Path, log: list[str]) -> tuple[subprocess.Popen[str], str]:
    """`hearth serve --port 0`; returns once it listens and has announced itself as the store's owner
    (its log lines go on arriving in ``log``)."""
    proc = subprocess.Popen(
        [HEARTH, "--config", str(config), "serve", "--port", "0", "--log-format", "text"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
    )
    assert proc.stderr is not None
    url = ""
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        log.append(line)
        if "Hearth listening on " in line:
            url = line.split("Hearth listening on ", 1)[1].strip()
            break
        if time.monotonic() > deadline:
            break
    if not url:
        proc.kill()
        raise SystemExit("hearth serve did not start")
    # Keep draining its log so the pipe never fills (the thread dies with the process).
    import threading

    threading.Thread(target=lambda: log.extend(proc.stderr or []), daemon=True).start()
    while not owner.exists() or json.loads(owner.read_text() or "{}").get("pid") != proc.pid:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("hearth serve did not announce itself as the index's owner")
        time.sleep(0.05)
    return proc, url


async def in_serve(owner: Path, queries: list[str], rounds: int) -> list[float]:
    """Seconds per ``POST /v1/index/search`` on one keep-alive connection, as the owner's token."""
    import aiohttp

    data = json.loads(await asyncio.to_thread(owner.read_text))
    headers = {"Authorization": f"Bearer {data['token']}"}
    samples = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for i in range(rounds):
            body = {"query": queries[i % len(queries)], "k": 5, "acl": None, "mode": None}
            started = time.perf_counter()
            async with session.post(data["url"] + "/v1/index/search", json=body) as resp:
                payload = await resp.json()
                if resp.status != 200 or not payload.get("hits"):
                    raise SystemExit(f"/v1/index/search answered {resp.status}: {payload}")
            samples.append(time.perf_counter() - started)
    return samples


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then a kill if it has not exited within 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def reranked(args: argparse.Namespace, work: Path, owner: Path, queries: list[str]) -> dict[str, Any]:
    """In-serve p50/p95 with the cross_encoder reranker on ``--rerank-model`` (same index), and how
    many queries ran past the budget (the server logs each)."""
    rerank = {
        "backend": "cross_encoder",
        "model_path": str(args.rerank_model),
        "top_n": args.rerank_top_n,
        "budget_ms": args.rerank_budget_ms,
        "precision": args.rerank_precision,
    }
    config = write_config(work, work / "docs", args.chunk_size, rerank)
    log: list[str] = []
    proc, _ = start_serve(config, owner, log)
    try:
        served = asyncio.run(in_serve(owner, queries, args.server_queries))
    finally:
        stop(proc)
    return {
        "p50_ms": round(statistics.median(served) * 1000, 2),
        "p95_ms": round(p(served, 0.95) * 1000, 2),
        "queries": len(served),
        "over_budget": sum("over its" in line and "budget" in line for line in log),
        "rerank": rerank,
    }


def p(samples: list[float], q: float) -> float:
    """The q-th quantile (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--chunks", type=int, default=1000, help="Chunks in the index (the issue: 10000).")
    parser.add_argument("--chunk-size", type=int, default=400, help="retrieval.chunk_size (characters).")
    parser.add_argument("--docs-per", type=int, default=10, help="Sections (chunks) per page.")
    parser.add_argument("--queries", type=int, default=10, help="`hearth search` processes through serve.")
    parser.add_argument("--cold-runs", type=int, default=3, help="`hearth search` processes with no server.")
    parser.add_argument("--server-queries", type=int, default=50, help="POST /v1/index/search calls.")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the corpus and index here.")
    parser.add_argument(
        "--rerank-model",
        type=Path,
        default=None,
        help="Also time in-serve search with the cross_encoder reranker on this CrossEncoder directory.",
    )
    parser.add_argument("--rerank-top-n", type=int, default=20, help="retrieval.rerank.top_n for it.")
    parser.add_argument("--rerank-budget-ms", type=int, default=1500, help="retrieval.rerank.budget_ms.")
    parser.add_argument("--rerank-precision", choices=["fp32", "int8"], default="fp32")
    args = parser.parse_args()

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="hearth-search-bench-")
    work = args.workdir or Path(tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    queries = write_corpus(work / "docs", args.chunks, args.docs_per, args.chunk_size)
    config = write_config(work, work / "docs", args.chunk_size)
    owner = work / "home" / "qdrant" / "hearth_docs.owner.json"
    rng = random.Random(7)
    report: dict[str, Any] = {"index": index(config, work, args.chunks)}

    floor_python = min(timed([sys.executable, "-c", "pass"])[0] for _ in range(3))
    floor_cli = min(timed([HEARTH, "--version"])[0] for _ in range(3))
    report["floor_s"] = {"python": round(floor_python, 3), "hearth_version": round(floor_cli, 3)}

    # The very first run after installing builds the embedder's graph into an empty cache.
    with tempfile.TemporaryDirectory(prefix="hearth-bench-cache-") as empty:
        first_ever = search(config, queries[-1], XDG_CACHE_HOME=empty)
    cold = [search(config, q) for q in rng.sample(queries, args.cold_runs)]
    report["cold"] = {
        "first_ever_s": round(first_ever[0], 3),
        "first_s": round(cold[0][0], 3),
        "median_s": round(statistics.median(s for s, _ in cold), 3),
        "runs": len(cold),
        "hits": [n for _, n in cold],
    }

    proc, url = start_serve(config, owner, [])
    try:
        first = search(config, queries[0])
        through = [search(config, q) for q in rng.sample(queries, args.queries)]
        served = asyncio.run(in_serve(owner, rng.sample(queries, min(len(queries), 25)), args.server_queries))
    finally:
        stop(proc)
    if args.rerank_model is not None:
        report["in_serve_reranked"] = reranked(args, work, owner, rng.sample(queries, min(len(queries), 25)))
    seconds = [s for s, _ in through]
    report["through_serve"] = {
        "first_s": round(first[0], 3),
        "p50_s": round(statistics.median(seconds), 3),
        "max_s": round(max(seconds), 3),
        "queries": len(seconds),
        "hits": sorted({n for _, n in through}),
    }
    report["in_serve"] = {
        "p50_ms": round(statistics.median(served) * 1000, 2),
        "p95_ms": round(p(served, 0.95) * 1000, 2),
        "queries": len(served),
    }
    if "in_serve_reranked" in report:
        figures = report["in_serve_reranked"]
        report["met"] = {"in_serve_reranked_p50_within_budget": figures["p50_ms"] <= args.rerank_budget_ms}
    report["targets"] = TARGETS
    report["met"] = report.get("met", {}) | {
        "through_serve_p50_s": report["through_serve"]["p50_s"] < TARGETS["through_serve_p50_s"],
        "cold_first_s": report["cold"]["first_s"] < TARGETS["cold_first_s"],
        "in_serve_p50_ms": report["in_serve"]["p50_ms"] <= TARGETS["in_serve_p50_ms"],
    }
    report["ratios"] = {
        "cold_over_through_serve": round(report["cold"]["median_s"] / report["through_serve"]["p50_s"], 2),
        "through_serve_over_cli_floor": round(report["through_serve"]["p50_s"] / floor_cli, 2),
        "through_serve_p50_over_target": round(
            report["through_serve"]["p50_s"] / TARGETS["through_serve_p50_s"], 2
        ),
        "cold_first_over_target": round(report["cold"]["first_s"] / TARGETS["cold_first_s"], 2),
        "in_serve_p50_over_target": round(report["in_serve"]["p50_ms"] / TARGETS["in_serve_p50_ms"], 2),
    }
    report["settings"] = {"chunk_size": args.chunk_size, "mode": "hybrid", "rerank": "off", "server": url}
    report["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()}
    print(json.dumps(report, indent=2))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
