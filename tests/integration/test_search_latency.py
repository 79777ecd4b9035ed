"""What `hearth search` loads: through a running server, no embedder, store or qdrant-client; cold,
the embedder but not qdrant-client, and no onnx once the graph is cached. Real processes on loopback.

(Timings are the benchmark's business: bench/search_cli.py, smoke-run here.)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.retrieval import ACLS, write_corpus
from tests.fixtures.serve import _env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

# `hearth …` in this interpreter, then the heavy modules it imported (on stderr's last line).
PROBE = """
import json, sys
from server.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    heavy = ("qdrant_client", "onnx", "onnxruntime", "core.retrieval.sync", "core.retrieval.embedders",
             "core.retrieval.search", "core.retrieval.store_edge")
    print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)
"""


async def probe(config: Path, cache: Path, *args: str) -> tuple[list[Any], list[str]]:
    """Run a hearth command in a fresh interpreter: its JSON output and the heavy modules it loaded."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE,
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env() | {"XDG_CACHE_HOME": str(cache)},
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode == 0, err.decode()
    return json.loads(out), json.loads(err.decode().strip().splitlines()[-1])


async def test_search_through_serve_loads_no_model_or_store_and_a_cold_one_no_qdrant_client(
    hearth_serve: Any, tmp_path: Path
) -> None:
    folders = write_corpus(tmp_path / "docs")
    sources = [{"name": s, "type": "files", "path": str(p), "acl": ACLS[s]} for s, p in folders.items()]
    server = await hearth_serve(
        {
            "llm": {"local": {"enabled": False}},
            "sources": sources,
            "server": {"rate_limit_per_minute": 10000},
        },
        "--log-format",
        "text",
    )
    cache = tmp_path / "cache"
    await probe(server.config, cache, "index", "--json")
    hits, loaded = await probe(server.config, cache, "search", "vacation days", "--json")
    assert hits and hits[0]["doc_id"] == "public:leave.md"
    assert loaded == []  # a thin HTTP client of the server
    assert await server.stop() == 0

    hits, loaded = await probe(server.config, cache, "search", "vacation days", "--json")
    assert hits[0]["doc_id"] == "public:leave.md"
    assert "qdrant_client" not in loaded and {"onnx", "onnxruntime", "core.retrieval.store_edge"} <= set(
        loaded
    )
    # The next cold process opens the graph the first one cached: no onnx import, no build.
    hits, loaded = await probe(server.config, cache, "search", "vacation days", "--json")
    assert hits[0]["doc_id"] == "public:leave.md"
    assert "onnx" not in loaded and "onnxruntime" in loaded and "qdrant_client" not in loaded
    assert list((cache / "hearth" / "onnx").glob("*.onnx"))


def test_the_search_latency_bench_prints_its_figures() -> None:
    args = [
        "--chunks",
        "40",
        "--docs-per",
        "4",
        "--queries",
        "2",
        "--cold-runs",
        "1",
        "--server-queries",
        "3",
    ]
    done = subprocess.run(
        [sys.executable, "bench/search_cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["index"]["chunks"] >= 40
    assert report["cold"]["first_ever_s"] > 0 and report["cold"]["hits"] == [5]
    assert report["through_serve"]["queries"] == 2 and report["through_serve"]["hits"] == [5]
    assert report["in_serve"]["queries"] == 3 and report["in_serve"]["p50_ms"] > 0
    assert set(report["met"]) == set(report["targets"]) and report["ratios"]["in_serve_p50_over_target"] > 0
