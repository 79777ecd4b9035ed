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
