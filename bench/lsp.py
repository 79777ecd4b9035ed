"""The language server's responsiveness: code actions, Explain's first token, inline completion.

Starts the real `hearth lsp` (in-process core, the bundled model unless --model), drives it with a
pygls client, and in the same run measures the baselines: raw llama-cpp-python's time to first
token for the very same Explain prompts, and a llama-server engine called directly with the very
same completion prompts (the same tokens, greedy, ``n_predict`` 32), so the ratios show what the
LSP, the front door, the router, the queue and the prompt pipeline add. Prints JSON.

Inline completion: latency from the request to the suggestion (a 32-token one: the bench turns the
blank-line and block-end stops off, so Hearth and the direct call generate the same tokens), and a
simulated typist (one keystroke every 80 ms, each a new request; the previous one is cancelled as
VS Code does): the share of superseded requests stopped before they generated more than 4 tokens.
Targets: code actions p95 < 50 ms; completion p50 within 10% of the direct call; >= 90% of
superseded requests stopped early; on a GPU with a 1-2B code model p50 <= 300 ms, p95 <= 800 ms.

    .venv/bin/python bench/lsp.py --actions 200 --explains 3 --completions 8 [--model PATH] [--n-gpu-layers -1]
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

from core.code.completion import CHARS_PER_TOKEN, build_prompt, cursor_window  # noqa: E402
from core.code.config import CompletionSettings  # noqa: E402
from core.code.context import build_context  # noqa: E402
from core.contracts import Completion  # noqa: E402
from core.llm.llama_cpp import bundled_model_path, completion_prompt  # noqa: E402
from core.prompts.registry import PromptRegistry  # noqa: E402

HEARTH = str(Path(sys.executable).with_name("hearth"))
SOURCE_FUNCTIONS = 20
TYPED = "def clip_all(values, low, high):\n    return [min(max(v, low), high) for v in values]"
# What the bench sets for completion: 32-token suggestions, and no early stops, so that Hearth and
# the direct call generate exactly the same tokens.
BENCH_COMPLETION = {"max_tokens": 32, "stop_at_blank_line": False, "stop_at_block_end": False}


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


async def lsp_figures(
    root: Path, config: Path, actions: int, explains: int, completions: int = 0, typed: str = ""
) -> dict[str, Any]:
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
    completing: dict[str, Any] = {}
    if completions:
        completing = await completion_figures(client, uri, completion_positions(completions), typed)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return {
        "code_action": summary(latencies),
        "explain_first_token": summary(ttft),
        "explain_total": summary(totals),
        "explain_cold": cold,
        **completing,
    }


def completion_positions(n: int) -> list[tuple[int, int]]:
    """Cursors before the ``return`` of functions 1..n of :func:`workspace_source` (line, column)."""
    return [(4 + 4 * i, 4) for i in range(1, n + 1)]


def _inline_params(uri: str, line: int, column: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=column),
    )


def _suggestion(result: object) -> str:
    items = getattr(result, "items", None) or []
    return str(items[0].insert_text) if items else ""


async def _stats(client: LanguageClient) -> dict[str, Any]:
    result: Any = await client.protocol.send_request_async("hearth/completionStats", None)

    def plain(value: Any) -> Any:
        if hasattr(value, "_asdict"):
            return {k: plain(v) for k, v in value._asdict().items()}
        return list(value) if isinstance(value, list | tuple) else value

    out: dict[str, Any] = plain(result)
    return out


async def completion_figures(
    client: LanguageClient, uri: str, positions: list[tuple[int, int]], typed: str
) -> dict[str, Any]:
    """Inline-completion latency at ``positions``, then a typist typing ``typed`` on a new line."""
    latencies: list[float] = []
    samples: list[str] = []
    await client.text_document_inline_completion_async(_inline_params(uri, 2, 0))  # warm-up
    for line, column in positions:
        t0 = time.perf_counter()
        result = await client.text_document_inline_completion_async(_inline_params(uri, line, column))
        latencies.append((time.perf_counter() - t0) * 1000)
        samples.append(_suggestion(result))
    before = await _stats(client)
    # The typist: a new function at the end of the file, one keystroke every 80 ms.
    line = len(workspace_source(SOURCE_FUNCTIONS).splitlines())
    version = 1
    pending: list[asyncio.Future[Any]] = []
    column = 0
    for i, ch in enumerate(typed):
        if pending and not pending[-1].done():
            client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=f"typist-{i - 1}"))
        version += 1
        at = types.Position(line=line, character=column)
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at), text=ch)
                ],
            )
        )
        column = column + 1 if ch != "\n" else 0
        line += ch == "\n"
        sent = client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline_params(uri, line, column), msg_id=f"typist-{i}"
        )
        pending.append(asyncio.wrap_future(sent))
        await asyncio.sleep(0.08)
    results = await asyncio.gather(*pending, return_exceptions=True)
    after = await _stats(client)
    engine_before, engine_after = before["engine"], after["engine"]
    started = engine_after["started"] - engine_before["started"]
    finished = engine_after["finished"] - engine_before["finished"]
    stopped = engine_after["cancelled_tokens"][len(engine_before["cancelled_tokens"]) :]
    never_started = len(typed) - started
    superseded = never_started + len(stopped)
    early = never_started + sum(1 for n in stopped if n <= 4)
    return {
        "completion_latency": summary(latencies),
        "completion_samples": samples[:3],
        "typist": {
            "keystrokes": len(typed),
            "interval_ms": 80,
            "generations_started": started,
            "generations_finished": finished,
            "superseded": superseded,
            "stopped_before_generating": never_started,
            "generations_failed": engine_after["failed"] - engine_before["failed"],
            # How many tokens the stopped generations had streamed: {tokens: generations}.
            "tokens_when_stopped": {str(n): stopped.count(n) for n in sorted(set(stopped))},
            "stopped_within_4_tokens_share": round(early / superseded, 3) if superseded else None,
            "last_suggestion": _suggestion(results[-1]) if not isinstance(results[-1], BaseException) else "",
        },
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


def direct_completion(
    source: str, positions: list[tuple[int, int]], local: dict[str, Any], model: Path
) -> dict[str, float]:
    """The same completion prompts sent straight to a llama-server engine (the tokens prepared first)."""
    return asyncio.run(_direct_completion(source, positions, local, model))


async def _direct_completion(
    source: str, positions: list[tuple[int, int]], local: dict[str, Any], model: Path
) -> dict[str, float]:
    from core.llm.config import LocalLLMSettings
    from core.llm.engine import EngineProcess
    from core.llm.gguf import gguf_tokenizer_info

    settings = CompletionSettings(**BENCH_COMPLETION)
    engine = EngineProcess(LocalLLMSettings(**local), model)
    await engine.ensure_ready()
    info = gguf_tokenizer_info(model)
    registry = PromptRegistry()
    lines = source.splitlines(keepends=True)
    values: list[float] = []
    try:
        http = engine.session()
        for i, (line, column) in enumerate([(2, 0), *positions]):  # the first warms up, as in the LSP run
            window = cursor_window(
                lines,
                line,
                column,
                prefix_chars=settings.prefix_tokens * CHARS_PER_TOKEN,
                suffix_chars=settings.suffix_tokens * CHARS_PER_TOKEN,
            )
            prompt = build_prompt(
                registry, Completion(window.prefix, window.suffix, "python", "scale.py"), info
            )
            tokens: list[int] = []
            for part in prompt.parts:
                if isinstance(part, int):
                    tokens.append(part)
                    continue
                body = {"content": part, "add_special": False, "parse_special": False}
                async with http.post("/tokenize", json=body) as resp:
                    tokens += (await resp.json())["tokens"]
            request = {
                "prompt": tokens,
                "n_predict": settings.max_tokens,
                "temperature": 0.0,
                "top_p": 0.95,
                "repeat_penalty": 1.0,
                "seed": 0,
                "stream": True,
                "cache_prompt": True,
            }
            t0 = time.perf_counter()
            async with http.post("/completion", json=request) as resp:
                async for raw in resp.content:
                    if raw.startswith(b"data:") and json.loads(raw[5:]).get("stop"):
                        break
            if i:
                values.append((time.perf_counter() - t0) * 1000)
    finally:
        await engine.stop()
    return summary(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=200, help="code action requests to time")
    parser.add_argument(
        "--explains", type=int, default=3, help="warm Explain runs to time (0: skip the model)"
    )
    parser.add_argument(
        "--completions", type=int, default=8, help="inline completions to time, and the typist (0: skip)"
    )
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--index", action="store_true", help="keep workspace indexing on during the run")
    args = parser.parse_args()
    model = args.model or (bundled_model_path() if args.explains or args.completions else None)
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
        source = workspace_source(max(SOURCE_FUNCTIONS, args.explains + 2, args.completions + 2))
        (root / "scale.py").write_text(source)
        config = Path(tmp) / "hearth.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "home": str(Path(tmp) / "home"),
                    "llm": {"local": local, "max_tokens": args.max_tokens, "routing": {"order": ["local"]}},
                    # The background workspace indexer would compete for the same cores; measured apart.
                    "lsp": {"index_workspace": args.index, "completion": BENCH_COMPLETION},
                }
            )
        )
        typed = TYPED if args.completions else ""
        figures = asyncio.run(lsp_figures(root, config, args.actions, args.explains, args.completions, typed))
        baseline = (
            raw_ttft(source, args.explains, local, model, args.max_tokens) if args.explains and model else {}
        )
        positions = completion_positions(args.completions)
        direct = direct_completion(source, positions, local, model) if args.completions and model else {}
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
    if direct and figures.get("completion_latency"):
        result["direct_engine_completion_latency"] = direct
        ratio = figures["completion_latency"]["p50_ms"] / max(direct["p50_ms"], 0.001)
        result["completion_p50_ratio_vs_direct"] = round(ratio, 3)
        result["completion_p50_within_10pct"] = ratio <= 1.10
        share = figures["typist"]["stopped_within_4_tokens_share"]
        result["superseded_stopped_early_ok"] = share is not None and share >= 0.9
    if baseline and figures["explain_first_token"]:
        result["explain_first_token_ratio_vs_raw"] = round(
            figures["explain_first_token"]["p50_ms"] / max(baseline["p50_ms"], 0.001), 2
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
