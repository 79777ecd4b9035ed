"""bench/slack_ack.py runs at a tiny size and reports its JSON contract (figures are not asserted)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_slack_ack_bench_reports_latency_and_calls_per_answer():
    spec = importlib.util.spec_from_file_location("slack_ack_bench", ROOT / "bench" / "slack_ack.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = await bench.main_async(argparse.Namespace(requests=3, model_delay=0.01, words=5))
    lazy = report["hearth_lazy_ack"]
    assert lazy["answers"] == 3 and lazy["slack_calls_per_answer"] >= 2
    assert lazy["ack"]["p99_ms"] > 0 and report["baseline_answer_before_ack"]["ack"]["p50_ms"] > 0
    assert report["ratio"]["baseline_p99_over_hearth_p99"] > 0
