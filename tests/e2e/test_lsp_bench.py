"""Smoke test: bench/lsp.py runs end to end (code actions only, no model) and prints its JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "lsp.py"


async def test_bench_lsp_smoke() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH),
        "--actions",
        "15",
        "--explains",
        "0",
        "--completions",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out)
    assert result["code_action"]["n"] == 15
    assert result["code_action"]["p95_ms"] > 0
    assert result["raw_llama_first_token"] == {}
