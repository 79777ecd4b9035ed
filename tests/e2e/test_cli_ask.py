"""`hearth` as a user runs it: a real process, the real bundled model, a real loopback API for fallback."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from tests.fixtures.openai_server import FakeOpenAI

HEARTH = [sys.executable, "-m", "server.cli.__main__"]


async def hearth(*args: str, config: Path | None = None, stdin: bytes | None = None) -> tuple[int, str, str]:
    env = dict(os.environ)
    cmd = [*HEARTH] + (["--config", str(config)] if config else []) + list(args)
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=Path.cwd(),  # the test's own empty directory (tests/fixtures/core.py): no ./hearth.yaml
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 240)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.llama
async def test_ask_json_with_the_bundled_model(tmp_path: Path, bundled_model: Path) -> None:
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text("llm:\n  local:\n    n_ctx: 1024\n  max_tokens: 16\n")
    code, out, err = await hearth("ask", "--json", "What is a unit test?", config=cfg)
    assert code == 0, err
    data = json.loads(out)
    assert set(data) >= {"answer", "citations", "backend", "model", "usage", "timings_ms"}
    assert data["backend"] == "local" and data["model"] == "gemma-3-270m-q4_k_m"
    assert data["answer"].strip() and 0 < data["usage"]["completion_tokens"] <= 16
    assert data["timings_ms"]["total"] > 0


async def test_ask_falls_back_to_remote_when_the_model_file_is_missing(
    tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(
        "llm:\n  local:\n    model_path: /nonexistent/model.gguf\n"
        f"  remote:\n    base_url: {openai_server.base_url}\n    api_key: sk-secret-value\n    model: big\n"
    )
    code, out, err = await hearth("--log-level", "INFO", "ask", "Where is the office?", config=cfg)
    assert code == 0, err
    assert openai_server.reply in out
    assert "fake-remote-model (remote)" in out
    assert "llm.local.model_path" in err, "the log says why it fell back"
    assert "sk-secret-value" not in err + out, "secrets are never logged"


async def test_both_backends_down_is_one_sentence_and_exit_1(
    tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    openai_server.plan = ["401"]
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(
        "llm:\n  local:\n    model_path: /nonexistent/model.gguf\n"
        f"  remote:\n    base_url: {openai_server.base_url}\n    api_key: wrong\n"
    )
    code, out, err = await hearth("ask", "hello", config=cfg)
    assert code == 1
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("Error: No model could answer right now")
    assert "llm.remote.api_key" in err and "llm.local.model_path" in err


async def test_empty_question_exit_1_with_a_plain_message() -> None:
    code, _, err = await hearth("ask", "   ")
    assert code == 1 and "empty" in err and "Traceback" not in err


@pytest.mark.llama
@pytest.mark.slow
async def test_question_from_stdin_and_huge_question_is_refused_not_a_crash(
    tmp_path: Path, bundled_model: Path
) -> None:
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text("llm:\n  local:\n    n_ctx: 1024\n  max_tokens: 8\n")
    code, out, err = await hearth("ask", "--json", "-", config=cfg, stdin=("why " * 30000).encode())
    assert code == 1 and "120,000 characters; the limit is" in err and "Traceback" not in err
    code, out, err = await hearth("ask", "--json", "-", config=cfg, stdin=b"why is the sky blue?")
    assert code == 0, err
    assert json.loads(out)["answer"].strip()


@pytest.mark.llama
async def test_doctor_reports_each_check(bundled_model: Path) -> None:
    code, out, err = await hearth("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out)}
    assert code == 0, out + err
    assert checks["local model"]["ok"] and "loads in" in checks["local model"]["detail"]
    assert checks["home"]["ok"]
    import llama_cpp

    built = "with" if llama_cpp.llama_supports_gpu_offload() else "without"
    assert f"built {built} GPU offload" in checks["llama.cpp GPU offload"]["detail"]


async def test_doctor_fails_with_the_fix_for_a_missing_model(tmp_path: Path) -> None:
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text("llm:\n  local:\n    model_path: /nonexistent/model.gguf\n")
    code, out, _ = await hearth("doctor", config=cfg)
    assert code == 1
    assert "FAIL local model" in out and "fix: set llm.local.model_path" in out
