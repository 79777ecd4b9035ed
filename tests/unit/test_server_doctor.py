"""`hearth doctor`: GPU memory fit (with a stand-in nvidia-smi on PATH) and `--ready --server`."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from server.cli import main
from server.gpu_fit import estimate, gguf_block_count


def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_mb: int) -> None:
    """An nvidia-smi that reports one H100 with ``free_mb`` free."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 81559, {free_mb}'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.llama
def test_block_count_is_read_from_the_gguf_header(bundled_model: Path, tmp_path: Path) -> None:
    assert gguf_block_count(bundled_model) == 18  # Gemma 3 270M
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file")
    assert gguf_block_count(junk) is None


def test_estimate_suggests_how_many_layers_fit() -> None:
    fits = estimate(4000, 32, -1, 4096, 24000)
    assert fits.ok and fits.offloaded == 32
    too_big = estimate(40000, 80, -1, 8192, 24000)
    assert not too_big.ok and 0 < (too_big.max_layers or 0) < 80
    assert estimate(40000, 80, too_big.max_layers or 0, 8192, 24000).ok


@pytest.mark.llama
@pytest.mark.parametrize("free_mb,ok", [(2000, True), (300, False)])
def test_doctor_reports_whether_the_model_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundled_model: Path, free_mb: int, ok: bool
) -> None:
    fake_smi(tmp_path, monkeypatch, free_mb)
    monkeypatch.setenv("HEARTH_LLM__LOCAL__N_GPU_LAYERS", "-1")
    result = CliRunner().invoke(main, ["doctor", "--no-load"])
    line = next(ln for ln in result.output.splitlines() if "GPU memory fit" in ln)
    assert line.startswith("OK" if ok else "FAIL"), result.output
    assert "NVIDIA H100" in line and "18/18 layers" in line
    if not ok:
        assert "n_gpu_layers" in result.output and result.exit_code == 1


async def test_ready_probe_asks_a_running_server(
    aiohttp_server: Any, settings: Any, fake_assistant: Any
) -> None:
    from server.app import create_app

    server = await aiohttp_server(create_app(settings, assistant=fake_assistant))
    url = f"http://127.0.0.1:{server.port}"
    result = await asyncio.to_thread(CliRunner().invoke, main, ["doctor", "--ready", "--server", url])
    assert result.exit_code == 0, result.output
    await server.close()
    result = await asyncio.to_thread(CliRunner().invoke, main, ["doctor", "--ready", "--server", url])
    assert result.exit_code == 1 and "did not answer /readyz" in result.output


@pytest.mark.llama
def test_chat_template_key_is_read_from_the_gguf_header(bundled_model: Path, tmp_path: Path) -> None:
    from core.llm.gguf import gguf_has_key

    assert not gguf_has_key(bundled_model, "tokenizer.chat_template")  # Gemma 3 270M base
    assert gguf_has_key(bundled_model, "tokenizer.ggml.model")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF\x03")
    assert not gguf_has_key(junk, "tokenizer.chat_template")


def test_doctor_fails_on_a_native_or_amx_build_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from core.llm import build_info
    from server.cli import doctor_cmd
    from tests.fixtures.core import make_settings

    bad = build_info.BuildReport(
        features={"AVX2": True, "AVX512": True, "AMX_INT8": True},
        amx_symbol=True,
        server_path=tmp_path / "llama-server",
        server_version="version: 1",
        build_flags="-DGGML_NATIVE=ON",
    )
    monkeypatch.setattr(build_info, "inspect_build", lambda _path=None: bad)
    checks = {c.name: c for c in doctor_cmd._build(make_settings(tmp_path))}
    cpu = checks["llama.cpp CPU build"]
    assert not cpu.ok and cpu.required and "AMX" in cpu.detail and "native" in cpu.detail
    assert "make install" in cpu.fix
    good = build_info.BuildReport(
        features={"AVX2": True, "FMA": True}, server_path=tmp_path / "llama-server", server_version="version: 1",
        build_flags="-DGGML_NATIVE=OFF",
    )  # fmt: skip
    monkeypatch.setattr(build_info, "inspect_build", lambda _path=None: good)
    checks = {c.name: c for c in doctor_cmd._build(make_settings(tmp_path))}
    assert checks["llama.cpp CPU build"].ok and "AVX2, FMA; portable" in checks["llama.cpp CPU build"].detail
    assert checks["llama-server"].ok


def test_doctor_reports_the_installed_build_and_server() -> None:
    result = CliRunner().invoke(main, ["doctor", "--no-load", "--json"])
    import json

    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["llama.cpp CPU build"]["ok"], checks["llama.cpp CPU build"]
    assert "AVX2" in checks["llama.cpp CPU build"]["detail"] or os.uname().machine != "x86_64"
    assert checks["llama-server"]["ok"] and "version" in checks["llama-server"]["detail"]


def test_the_build_cache_key_changes_with_the_flags() -> None:
    import subprocess

    script = Path(__file__).parents[2] / "deploy" / "build-llama.sh"

    def key(**env: str) -> str:
        out = subprocess.run(
            ["bash", str(script), "--print-key"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    portable = key()
    assert portable == key() and portable.startswith("0.3.36-")
    assert key(HEARTH_LLAMA_CMAKE_ARGS="-DGGML_NATIVE=ON") != portable, (
        "a native build must not reuse the cache"
    )
    assert key(HEARTH_LLAMA_VERSION="0.3.35") != portable


def test_a_binding_with_its_own_build_or_an_opted_in_native_build(tmp_path: Path) -> None:
    from core.llm.build_info import BuildReport

    pip_built = BuildReport(features={"AVX2": True}, shared_with_server=False, server_path=tmp_path / "s")
    assert any("llama-cpp-python carries a llama.cpp build of its own" in p for p in pip_built.problems)
    opted = BuildReport(
        features={"AVX2": True}, build_flags="-DGGML_NATIVE=OFF -DGGML_NATIVE=ON", opt_in="-DGGML_NATIVE=ON",
        shared_with_server=True, server_path=tmp_path / "s",
    )  # fmt: skip
    assert opted.native and opted.native_opted_in and not opted.problems
    amx = BuildReport(features={"AMX_INT8": True}, opt_in="-DGGML_NATIVE=ON", server_path=tmp_path / "s")
    assert amx.problems, "AMX is refused even in an opted-in native build"


async def test_a_remote_only_setup_passes_without_any_local_engine(
    openai_server: Any, tmp_path: Path
) -> None:
    """routing.order [remote]: a missing llama-server or model file is a warning, not a failed doctor."""
    import json

    cfg = tmp_path / "hearth.yaml"
    local = {"model_path": str(tmp_path / "absent.gguf"), "server_path": str(tmp_path / "no-llama-server")}
    remote = {"base_url": openai_server.base_url, "model": "gpt-test", "api_key": "k"}

    def doctor(order: list[str]) -> tuple[int, dict[str, Any]]:
        llm = {"local": local, "remote": remote, "routing": {"order": order}}
        cfg.write_text(json.dumps({"home": str(tmp_path / "home"), "llm": llm}))
        result = CliRunner().invoke(main, ["--config", str(cfg), "doctor", "--no-load", "--json"])
        return result.exit_code, {c["name"]: c for c in json.loads(result.stdout)}

    code, checks = await asyncio.to_thread(doctor, ["remote"])
    assert checks["remote API"]["ok"] and checks["remote API"]["required"]
    model = checks["local model"]
    assert (
        not model["ok"]
        and not model["required"]
        and "not used: llm.routing.order is ['remote']" in model["detail"]
    )
    assert code == 0, checks
    # With the local model first in line, the same missing file fails the doctor.
    code, checks = await asyncio.to_thread(doctor, ["local", "remote"])
    assert code == 1 and checks["local model"]["required"] and not checks["local model"]["ok"]


def _without(monkeypatch: pytest.MonkeyPatch, *absent: str) -> None:
    """importlib.metadata as on an install that lacks ``absent`` (the Docker image has no PyTorch)."""
    import importlib.metadata

    real = importlib.metadata.version

    def version(name: str) -> str:
        if name in absent:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_the_package_check_asks_only_for_what_the_configured_embedder_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PyTorch is the hearth[torch] extra: without it the default (onnx) install passes, and a
    sentence_transformers embedder is told how to get it."""
    from server.cli.doctor_cmd import _versions

    _without(monkeypatch, "torch", "sentence-transformers")
    onnx = _versions("onnx")
    assert onnx.ok, onnx.detail
    assert "onnxruntime" in onnx.detail and "sentence-transformers" not in onnx.detail
    torch = _versions("sentence_transformers")
    assert not torch.ok
    assert "missing: torch, sentence-transformers" in torch.detail
    assert "deploy/install.sh --torch" in torch.fix
    _without(monkeypatch, "torch", "sentence-transformers", "pygls")
    broken = _versions("sentence_transformers")
    assert (
        not broken.ok and "pygls" in broken.detail and broken.fix == "run 'make demo' (or pip install -e .)"
    )
