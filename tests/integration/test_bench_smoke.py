"""The LLM benchmark runs and prints its JSON contract (tiny size; figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.llama
def test_llm_bench_prints_ratio(bundled_model: Path) -> None:
    out = subprocess.run([sys.executable, "bench/llm.py", "--runs", "1", "--max-tokens", "8"], cwd=ROOT,
                         capture_output=True, text=True, timeout=240, check=True).stdout
    report = json.loads(out)
    assert report["raw_llama_cpp"]["tokens_mean"] == report["hearth_local_backend"]["tokens_mean"] > 1
    assert report["ratio"]["tokens_per_s"] > 0


@pytest.mark.llama
def test_llm_concurrency_bench_prints_all_three_sides_and_ratios(bundled_model: Path) -> None:
    out = subprocess.run(
        [sys.executable, "bench/llm_concurrency.py", "--levels", "1,2", "--max-tokens", "4", "--parallel", "2", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=True,
    ).stdout  # fmt: skip
    report = json.loads(out)
    for side in ("in_process_serialized", "bare_llama_server", "hearth_llama_server"):
        for level in ("1", "2"):
            figures = report["results"][side][level]
            assert figures["requests"] >= 2 and figures["tokens"] > 0 and figures["ttft_p50_ms"] > 0, (side, level)
    assert report["ratios"]["vs_in_process_at_2"] > 0 and report["build"]["portable"]
