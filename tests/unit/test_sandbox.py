"""Escape tests for the code sandbox: each one runs a hostile program through the real isolation."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from core.code.config import SandboxSettings
from core.code.sandbox import Sandbox
from core.code.sandbox_result import OutputBuffer
from core.errors import SandboxError
from tests.fixtures.skips import needs_root


def _sandbox(**overrides: object) -> Sandbox:
    return Sandbox(SandboxSettings(**{"timeout_s": 20, "cpu_s": 10, **overrides}))


def _procs_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line contains ``marker``, seen from the host."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # it exited while we looked
        if marker.encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found


async def _until(condition: Callable[[], object], within: float = 10.0) -> None:
    """Wait for ``condition`` (polling /proc, which sends no notification)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "mod.py").write_text("VALUE = 1\n")
    return ws


async def test_runs_in_a_copy_with_overlay_and_collects_files(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    script = (
        "import mod, os, pathlib; pathlib.Path('out.txt').write_text(str(mod.VALUE)); "
        "print('uid', os.getuid())"
    )
    result = await _sandbox().run(
        ws, ["{python}", "-c", script], overlay={"mod.py": "VALUE = 42\n"}, collect=["out.txt"]
    )
    assert result.ok, result.output
    assert result.files["out.txt"] == "42"
    assert (ws / "mod.py").read_text() == "VALUE = 1\n"  # the overlay went to the copy only
    assert not (ws / "out.txt").exists()
    assert "uid 1000" in result.output  # the sandbox user, whoever runs Hearth


async def test_network_is_blocked_even_to_loopback(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        # Sanity: the port is reachable from outside the sandbox.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        script = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')\n"
            "except OSError as exc:\n"
            "    print('blocked', exc)\n"
        )
        result = await _sandbox().run(_workspace(tmp_path), ["{python}", "-c", script])
    finally:
        server.close()
    assert "CONNECTED" not in result.output
    assert "blocked" in result.output, result.output


async def test_fork_bomb_is_contained(tmp_path: Path) -> None:
    marker = f"hearth-fork-{uuid.uuid4().hex}"
    script = (
        f"# {marker}\n"
        "import os, time\n"
        "n = 0\n"
        "for _ in range(10000):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        n += 1\n"
        "    except OSError:\n"
        "        break\n"
        "print('forked', n, flush=True)\n"
    )
    sandbox = _sandbox(max_processes=20, timeout_s=15)
    result = await sandbox.run(_workspace(tmp_path), ["{python}", "-c", script])
    assert "forked" in result.output, result.output
    forked = int(result.output.split("forked")[1].split()[0])
    assert 0 < forked < 20
    # The children sleep 30 s, past the 15 s limit: the run ended with its first process, not on
    # the timeout, and every child died with the sandbox.
    assert not result.timed_out and result.exit_code == 0, result.output
    await _until(lambda: not _procs_with(marker), within=5)


async def test_files_outside_the_copy_are_untouched(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    outside = tmp_path / "secret.txt"
    outside.write_text("original")
    os.chmod(outside, 0o666)  # even a world-writable file stays untouched
    script = (
        "import os\n"
        f"for p in [{str(outside)!r}, {str(ws / 'mod.py')!r}, '/tmp/hearth-escape', '../escape']:\n"
        "    try:\n"
        "        open(p, 'w').write('pwned'); print('WROTE', p)\n"
        "    except OSError as exc:\n"
        "        print('refused', p, exc.strerror)\n"
    )
    result = await _sandbox().run(ws, ["{python}", "-c", script])
    assert outside.read_text() == "original"
    assert (ws / "mod.py").read_text() == "VALUE = 1\n"
    assert not os.path.exists("/tmp/hearth-escape")  # noqa: ASYNC240
    # Root or not, the sandbox user may write nowhere but its copy (and its private /tmp): each one refused.
    for p in (str(outside), str(ws / "mod.py"), "../escape"):
        assert f"refused {p} " in result.output, result.output
    assert "WROTE /tmp/hearth-escape" in result.output  # its own /tmp, gone with the run
    assert result.output.count("WROTE") == 1


async def test_sleep_forever_is_killed_on_time(tmp_path: Path) -> None:
    marker = f"hearth-forever-{uuid.uuid4().hex}"
    forever = f"import time  # {marker}\nwhile True: time.sleep(1)"
    result = await _sandbox(timeout_s=1.5).run(_workspace(tmp_path), ["{python}", "-c", forever])
    assert result.timed_out and result.exit_code is None
    assert "time limit" in result.output
    await _until(lambda: not _procs_with(marker), within=5)  # killed, not left running


async def test_output_flood_is_truncated_head_and_tail(tmp_path: Path) -> None:
    script = (
        "import sys\nprint('FIRST')\n"
        "for i in range(200000): sys.stdout.write('x' * 50 + '\\n')\nprint('LAST')"
    )
    result = await _sandbox(max_output_chars=2000).run(_workspace(tmp_path), ["{python}", "-c", script])
    assert result.truncated
    assert len(result.output) < 2200
    assert result.output.startswith("FIRST") and result.output.rstrip().endswith("LAST")
    assert "omitted" in result.output


async def test_cancelling_a_run_kills_it(tmp_path: Path) -> None:
    marker = f"hearth-cancel-{uuid.uuid4().hex}"
    # The program and a child of its own, both marked, so the whole tree can be looked for.
    script = (
        f"import subprocess, sys, time  # {marker}\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)  # {marker}-child'])\n"
        "time.sleep(60)"
    )
    task = asyncio.create_task(_sandbox().run(_workspace(tmp_path), ["{python}", "-c", script]))
    await _until(lambda: _procs_with(f"{marker}-child"))  # the program's own child is running too
    task.cancel()
    # Generous bounds: this checks that cancelling kills the tree, not how fast (a loaded CI box
    # takes seconds to reap a sandbox); a run that ignored the cancel would sleep its 60 s.
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    await _until(lambda: not _procs_with(marker), within=30)


async def test_missing_workspace_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="not a directory"):
        await _sandbox().run(tmp_path / "nope", ["true"])


def test_output_buffer_keeps_small_output_whole() -> None:
    buf = OutputBuffer(1000)
    buf.feed(b"hello\n")
    assert buf.text() == ("hello\n", False)


async def test_isolation_that_cannot_be_set_up_is_an_error_not_an_unsandboxed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        needs_root("the mount-namespace prelude (it runs only when the sandbox starts as root)")
    import core.code.sandbox_mounts as mounts_module

    # A mount the kernel refuses, as on a host without CAP_SYS_ADMIN.
    monkeypatch.setattr(mounts_module, "_PRELUDE", "mount --bind /nonexistent-hearth-src /nonexistent-dst\n")
    marker = tmp_path / "ran"
    with pytest.raises(SandboxError, match="could not isolate the run"):
        await _sandbox().run(_workspace(tmp_path), ["{python}", "-c", f"open({str(marker)!r}, 'w')"])
    assert not marker.exists()


def test_the_image_and_compose_give_the_sandbox_what_it_needs() -> None:
    import yaml

    deploy = Path(__file__).resolve().parents[2] / "deploy"
    assert "bubblewrap" in (deploy / "Dockerfile").read_text()
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    options = set(compose["services"]["hearth"]["security_opt"])
    assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"} <= options


async def test_a_missing_bwrap_is_refused_with_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.code.sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module, "_SAFE_PATH", str(tmp_path))  # no bwrap there
    marker = tmp_path / "ran"
    with pytest.raises(SandboxError, match="bubblewrap"):
        await _sandbox().run(_workspace(tmp_path), ["{python}", "-c", f"open({str(marker)!r}, 'w')"])
    assert not marker.exists()


def test_a_delegated_cgroup_gets_the_limits_of_the_whole_run(tmp_path: Path) -> None:
    """File-level only (this machine's cgroup v2 delegates no memory controller): which directory is
    chosen and what is written to it; the kernel's enforcement is the escape suite's on such hosts."""
    from core.code.sandbox_limits import RunCgroup, find_cgroup_parent

    parent = tmp_path / "delegated"
    parent.mkdir()
    (parent / "cgroup.procs").write_text("")
    (parent / "cgroup.subtree_control").write_text("cpu pids\n")
    assert find_cgroup_parent(str(parent)) is None  # no memory controller for its children
    (parent / "cgroup.subtree_control").write_text("cpu memory pids\n")
    assert find_cgroup_parent(str(parent)) == parent
    group = RunCgroup.create(parent, memory_mb=256, max_processes=20)
    assert group.path.parent == parent and group.path.name.startswith("hearth-run-")
    assert (group.path / "memory.max").read_text() == str(256 << 20)
    assert (group.path / "pids.max").read_text() == "20"
    assert not group.oom_killed()
    (group.path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.oom_killed()


async def test_a_staging_copy_left_by_a_killed_hearth_is_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()
    stale = tmp_path / "hearth-sandbox-stale"
    (stale / "ro" / "src").mkdir(parents=True)
    (stale / "owner").write_text(str(dead.pid))
    live = tmp_path / "hearth-sandbox-live"
    live.mkdir()
    (live / "owner").write_text(str(os.getpid()))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "mod.py").write_text("VALUE = 1\n")
    result = await _sandbox().run(ws, ["true"])
    assert result.ok, result.output
    assert not stale.exists() and live.exists()


async def test_runs_under_hearths_private_umask(tmp_path: Path) -> None:
    """`hearth` sets umask 077 once settings load; the sandbox must still reach what it binds."""
    previous = os.umask(0o077)
    try:
        result = await _sandbox().run(
            _workspace(tmp_path), ["{python}", "-c", "import mod; print(mod.VALUE)"]
        )
    finally:
        os.umask(previous)
    assert result.ok and result.output.strip() == "1", result.output


async def test_a_configured_home_inside_the_workspace_is_not_copied(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    home = ws / "state"
    home.mkdir()
    (home / "hearth.db").write_text("tokens")
    sandbox = Sandbox(SandboxSettings(timeout_s=20, cpu_s=10), private=(home,))
    result = await sandbox.run(ws, ["{python}", "-c", "import os; print(sorted(os.listdir('.')))"])
    assert result.ok, result.output
    assert "mod.py" in result.output and "state" not in result.output


async def test_a_workspace_larger_than_the_run_disk_is_a_clear_error(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    (ws / "data.bin").write_bytes(b"x" * (20 << 20))
    with pytest.raises(SandboxError, match=r"does not fit the sandbox disk \(sandbox.disk_mb = 16 MiB\)"):
        await _sandbox(disk_mb=16).run(ws, ["true"])


async def test_an_interpreter_under_tmp_is_not_hidden_by_the_private_tmp(tmp_path: Path) -> None:
    """A CI checkout or a throwaway venv lives under /tmp: the run's private /tmp must not hide it."""
    import subprocess
    import sys

    venv = tmp_path / "venv"
    assert str(venv).startswith("/tmp/")
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )
    result = await _sandbox(python=str(venv / "bin" / "python")).run(
        _workspace(tmp_path), ["{python}", "-c", "import sys; print('prefix', sys.prefix)"]
    )
    assert result.ok, result.output
    assert f"prefix {venv}" in result.output


def test_a_command_bwrap_cannot_find_is_not_blamed_on_namespaces() -> None:
    from core.code.sandbox_result import refusal

    text = refusal("bwrap: execvp /opt/gone/bin/python: No such file or directory")
    assert "could not start the test command" in text and "/opt/gone/bin/python" in text
    assert "security_opt" not in text
    assert "security_opt" in refusal("bwrap: setting up uid map: Permission denied")
