"""The language server's responsiveness: code-action listing latency and Explain's time to first token.

Starts the real `hearth lsp` (in-process core, the bundled model unless --model), drives it with a
pygls client, and in the same run measures raw llama-cpp-python's time to first token for the very
same prompts (the explain template rendered the same way), so the ratio shows what the LSP, the
router, the queue and the prompt pipeline add. Prints JSON. Target: code actions p95 < 50 ms.

    .venv/bin/python bench/lsp.py --actions 200 --explains 3 [--model PATH] [--n-gpu-layers -1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from lsprotocol import types
from pygls.lsp.client import LanguageClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.code.context import build_context  # noqa: E402
from core.llm.llama_cpp import bundled_model_path, completion_prompt  # noqa: E402
from core.prompts.registry import PromptRegistry  # noqa: E402

HEARTH = str(Path(sys.executable).with_name("hearth"))


def workspace_source(n: int) -> str:
    """A module with ``n`` distinct functions (distinct prompts defeat llama.cpp's prefix cache)."""
    parts = ["import math\n"]
    for i in range(n):
        parts.append(
            f"\ndef scale_{i}(values, factor={i + 2}):\n"
            f'    """Multiply each value by factor and clip at {i * 10 + 50}."""\n'
            f"    return [min(v * factor, {i * 10 + 50}) for v in values]\n"
        )
    return "".join(parts)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    """p50/p95/max in milliseconds."""
    if not values:
        return {}
    return {
        "p50_ms": round(pct(values, 50), 2),
        "p95_ms": round(pct(values, 95), 2),
        "max_ms": round(max(values), 2),
        "n": len(values),
    }


async def lsp_figures(root: Path, config: Path, actions: int, explains: int) -> dict[str, Any]:
    client = LanguageClient("hearth-bench", "1")
    first_report: dict[str, float] = {}
    started_at: dict[str, float] = {}

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def _create(params: types.WorkDoneProgressCreateParams) -> None:
        return None

    @client.feature(types.PROGRESS)
    def _progress(params: types.ProgressParams) -> None:
        value = params.value if isinstance(params.value, dict) else {}
        if value.get("kind") == "report" and "explaining" in str(value.get("message", "")):
            first_report.setdefault("t", time.perf_counter())

    @client.feature(types.WINDOW_SHOW_DOCUMENT)
    def _show(params: types.ShowDocumentParams) -> types.ShowDocumentResult:
        return types.ShowDocumentResult(success=True)

    await client.start_io(HEARTH, "--config", str(config), "lsp")
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(
                    work_done_progress=True, show_document=types.ShowDocumentClientCapabilities(support=True)
                )
            ),
            root_uri=root.as_uri(),
        )
    )
    client.initialized(types.InitializedParams())
    uri = (root / "scale.py").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=(root / "scale.py").read_text()
            )
        )
    )
    latencies: list[float] = []
    for i in range(actions):
        line = 3 + (i % 20) * 4
        params = types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(
                start=types.Position(line=line, character=0), end=types.Position(line=line, character=0)
            ),
            context=types.CodeActionContext(diagnostics=[]),
        )
        t0 = time.perf_counter()
        await client.text_document_code_action_async(params)
        latencies.append((time.perf_counter() - t0) * 1000)
    ttft: list[float] = []
    totals: list[float] = []
    cold: dict[str, float] = {}
    for i in range(explains + 1):  # run 0 loads the model (reported separately)
        first_report.clear()
        line = 3 + i * 4
        started_at["t"] = time.perf_counter()
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="hearth.explain", arguments=[{"uri": uri, "line": line}])
        )
        end = time.perf_counter()
        first = (first_report.get("t", end) - started_at["t"]) * 1000
        if i == 0:
            cold = {"first_token_ms": round(first, 1), "total_ms": round((end - started_at["t"]) * 1000, 1)}
        else:
            ttft.append(first)
            totals.append((end - started_at["t"]) * 1000)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return {
        "code_action": summary(latencies),
        "explain_first_token": summary(ttft),
        "explain_total": summary(totals),
        "explain_cold": cold,
    }


def raw_ttft(
    source: str, explains: int, settings: dict[str, Any], model: Path, max_tokens: int
) -> dict[str, float]:
    """Raw llama-cpp-python, same model, settings, prompts and sampling options (stop strings included)."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(model),
        n_ctx=settings["n_ctx"],
        n_threads=settings.get("n_threads"),
        n_gpu_layers=settings.get("n_gpu_layers", 0),
        seed=0,
        verbose=False,
    )
    registry = PromptRegistry()
    values: list[float] = []
    for i in range(0, explains + 1):  # run 0 warms up, like the LSP's first Explain
        ctx = build_context(source, "scale.py", 3 + i * 4, 3 + i * 4)
        rendered = registry.render(
            "explain", code=ctx.code, language="python", path="scale.py", context=ctx.prompt_context or None
        )
        prompt = completion_prompt(rendered.messages, rendered.answer_prefix)
        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=False)
        t0 = time.perf_counter()
        stream = llm.create_completion(
            prompt=tokens,
            max_tokens=max_tokens,
            temperature=0.2,
            stream=True,
            seed=0,
            stop=list(rendered.stop),
        )
        for part in stream:
            if part["choices"][0].get("text"):
                break
        if i:
            values.append((time.perf_counter() - t0) * 1000)
    llm.close()
    return summary(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=200, help="code action requests to time")
    parser.add_argument(
        "--explains", type=int, default=3, help="warm Explain runs to time (0: skip the model)"
    )
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--index", action="store_true", help="keep workspace indexing on during the run")
    args = parser.parse_args()
    model = args.model or (bundled_model_path() if args.explains else None)
    local: dict[str, Any] = {
        "n_ctx": args.n_ctx,
        "n_threads": args.threads,
        "n_gpu_layers": args.n_gpu_layers,
    }
    if args.model:
        local["model_path"] = str(args.model)
    with tempfile.TemporaryDirectory(prefix="hearth-bench-lsp-") as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        source = workspace_source(max(20, args.explains + 2))
        (root / "scale.py").write_text(source)
        config = Path(tmp) / "hearth.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "home": str(Path(tmp) / "home"),
                    "llm": {"local": local, "max_tokens": args.max_tokens, "routing": {"order": ["local"]}},
                    # The background workspace indexer would compete for the same cores; measured apart.
                    "lsp": {"index_workspace": args.index},
                }
            )
        )
        figures = asyncio.run(lsp_figures(root, config, args.actions, args.explains))
        baseline = (
            raw_ttft(source, args.explains, local, model, args.max_tokens) if args.explains and model else {}
        )
    result: dict[str, Any] = {
        "benchmark": "lsp",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "settings": {
            "actions": args.actions,
            "explains": args.explains,
            "index_workspace": args.index,
            **local,
        },
        **figures,
        "raw_llama_first_token": baseline,
        "code_action_p95_target_ms": 50,
        "code_action_p95_ok": bool(figures["code_action"]) and figures["code_action"]["p95_ms"] < 50,
    }
    if baseline and figures["explain_first_token"]:
        result["explain_first_token_ratio_vs_raw"] = round(
            figures["explain_first_token"]["p50_ms"] / max(baseline["p50_ms"], 0.001), 2
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
