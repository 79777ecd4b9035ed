"""bench/rest.py still runs (tiny size): it prints JSON with both sides and their ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.llama
@pytest.mark.slow
def test_rest_bench_smoke(bundled_model: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "rest.py"),
            "--levels",
            "1,2",
            "--requests",
            "1,2",
            "--max-tokens",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
        cwd=ROOT,
    ).stdout
    report = json.loads(out)
    assert [r["concurrency"] for r in report["rounds"]] == [1, 2]
    for r in report["rounds"]:
        assert r["direct_llama_cpp"]["requests"] == r["rest"]["requests"] == r["concurrency"]
        assert r["throughput_ratio"] > 0 and r["rest"]["p99_ms"] >= r["rest"]["p50_ms"] > 0
