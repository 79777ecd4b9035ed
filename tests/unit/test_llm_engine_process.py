"""The engine supervisor's decisions that need no engine: the command line, a missing binary, a bad exec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import BackendUnavailable
from core.llm.config import LocalLLMSettings
from core.llm.engine import EngineProcess, EngineState
from core.llm.llama_server import LlamaServerBackend


def test_command_has_slots_per_slot_context_and_only_a_unix_socket(tmp_path: Path) -> None:
    s = LocalLLMSettings(parallel=3, n_ctx=2048, n_gpu_layers=-1, n_threads=2, flash_attn="on")
    engine = EngineProcess(s, tmp_path / "m.gguf", server_path=tmp_path / "llama-server")
    cmd = engine.command()
    arg = {cmd[i]: cmd[i + 1] for i in range(1, len(cmd) - 1) if cmd[i].startswith("--")}
    assert arg["--parallel"] == "3" and arg["--ctx-size"] == str(3 * 2048)
    assert arg["--n-gpu-layers"] == "-1" and arg["--threads"] == "2" and arg["--flash-attn"] == "on"
    assert "--cont-batching" in cmd and "--no-kv-unified" in cmd
    assert arg["--host"].endswith(".sock") and "--port" not in cmd
    assert (Path(arg["--host"]).parent.stat().st_mode & 0o777) == 0o700


async def test_missing_server_binary_names_the_settings(tmp_path: Path) -> None:
    engine = EngineProcess(LocalLLMSettings(), tmp_path / "m.gguf", server_path=tmp_path / "nope")
    with pytest.raises(BackendUnavailable, match="llm.local.server_path") as err:
        await engine.ensure_ready()
    assert "in_process" in str(err.value) and engine.state is EngineState.STOPPED
    await engine.stop()


async def test_a_binary_that_exits_at_once_is_reported_with_its_output(tmp_path: Path) -> None:
    fake = tmp_path / "llama-server"
    starts = tmp_path / "starts"  # one line per time the engine binary was started
    fake.write_text(
        f"#!/bin/sh\necho started >> {starts}\necho 'error: unknown model architecture' >&2\nexit 3\n"
    )
    fake.chmod(0o755)
    engine = EngineProcess(LocalLLMSettings(), tmp_path / "m.gguf", server_path=fake)
    try:
        with pytest.raises(BackendUnavailable, match="exited with status 3") as err:
            await engine.ensure_ready()
        assert "unknown model architecture" in str(err.value) and "llm.local.model_path" in str(err.value)
        # The first retry is due within a second: the next caller waits for it (and it fails again).
        with pytest.raises(BackendUnavailable, match="exited with status 3"):
            await engine.ensure_ready()
        assert engine.restarts == 1
        assert len(starts.read_text().splitlines()) == 2
        # Now the next retry is seconds away: callers are told at once instead of waiting for it
        # (nothing is started for them; the caller learns when the next try is).
        with pytest.raises(BackendUnavailable, match="next restart in"):
            await engine.ensure_ready()
        assert engine.restarts == 1 and len(starts.read_text().splitlines()) == 2
    finally:
        await engine.stop()
    assert engine.state is EngineState.STOPPED and engine.pid is None


async def test_missing_model_file_is_caught_before_starting_anything(tmp_path: Path) -> None:
    backend = LlamaServerBackend(LocalLLMSettings(model_path=tmp_path / "absent.gguf"))
    with pytest.raises(BackendUnavailable, match="llm.local.model_path"):
        await backend.load()
    assert not backend.loaded and backend.down_reason is None


def test_socket_directories_of_dead_processes_are_swept(tmp_path: Path) -> None:
    import subprocess
    import tempfile

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(tempfile.mkdtemp(prefix=f"hearth-engine-{dead.pid}-"))
    (stale / "llama.sock").write_text("")
    mine = Path(tempfile.mkdtemp(prefix=f"hearth-engine-{os.getpid()}-"))
    try:
        engine = EngineProcess(LocalLLMSettings(), tmp_path / "m.gguf", server_path=tmp_path / "nope")
        sock = engine.socket_path
        assert not stale.exists(), "a dead process's socket directory is left behind"
        assert mine.exists(), "a live process's directory must be kept"
        assert sock.parent.name.startswith(f"hearth-engine-{os.getpid()}-")
        del engine
        import gc

        gc.collect()
        assert not sock.parent.exists(), "a dropped engine removes its directory"
    finally:
        import shutil

        shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(mine, ignore_errors=True)
