"""Run a command on a throw-away copy of a workspace, inside bubblewrap, with limits for the whole run.

::

    sandbox = Sandbox(settings.sandbox)
    result = await sandbox.run(Path("~/proj"), ["{python}", "-m", "pytest", "-q"], collect=["report.xml"])
    result.exit_code, result.output, result.files["report.xml"]

One policy whether Hearth runs as root or not (the image runs as uid 10001):

- **bubblewrap** (``bwrap``, Debian ``bubblewrap``) builds an empty root holding read-only binds of
  ``/usr``, ``/lib*``, a minimal ``/etc`` (its own ``passwd``/``group``) and the interpreter (a venv
  and its base prefix) — nothing else of the host: no home, no ``/run``, no ``/var``, so no
  filesystem unix socket and none of Hearth's files. New user, network (a loopback that is down),
  PID, IPC, UTS and cgroup namespaces, no capabilities, no nested user namespaces,
  ``--die-with-parent``, ``--new-session``, a fresh ``/proc`` for the run's own processes only.
- The **copy** is staged in a per-run 0700 directory that only this run's sandbox sees (read-only),
  then copied by :mod:`core.code.sandbox_launch` onto a size-limited tmpfs (``sandbox.disk_mb``):
  the run's only writable place besides its own small ``/tmp`` and ``/dev/shm`` tmpfs. The tmpfs
  vanishes with the sandbox, whatever the run did to it (``chmod 000``, a timeout, a kill).
- **Limits** for the whole run: a cgroup v2 with ``memory.max``/``pids.max`` where one is delegated,
  else the fallback in :mod:`core.code.sandbox_limits` (a watch on the run's total memory, and
  ``RLIMIT_NPROC`` counted in the run's own user namespace). Per process: CPU seconds, address space,
  file size, no core dumps. A wall-clock timeout kills the whole run; output is kept head + tail.
- **As root** the run never is root: a private mount namespace re-exposes, for the sandbox user
  (``sandbox.run_as_uid``) only, the paths it needs that sit in private directories (an interpreter
  under ``/root``), then ``setpriv`` drops to that uid before ``bwrap`` starts, exactly as unprivileged.

Nothing runs unsandboxed: when bubblewrap cannot create its namespaces the run is refused with the fix.

This module is the run's lifecycle (stage the copy, start, watch, kill, clean up); bubblewrap's
command line and the root re-exposure are :mod:`core.code.sandbox_mounts`, the result and the
launcher's report :mod:`core.code.sandbox_result`, the whole-run limits :mod:`core.code.sandbox_limits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.code import sandbox_launch
from core.code.config import SandboxSettings
from core.code.sandbox_limits import MemoryWatch, RunCgroup, find_cgroup_parent
from core.code.sandbox_mounts import (
    SRC,
    WORK,
    bwrap_command,
    hidden_ancestor,
    prefixes,
    reexpose_as,
    slot_dir,
    write_identity,
)
from core.code.sandbox_result import COLLECT_CAP, OutputBuffer, RunResult, finish, read_report
from core.errors import SandboxError
from core.home import default_home

log = logging.getLogger(__name__)

_SKIP = (
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
)
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_LAUNCHER = Path(sandbox_launch.__file__).read_text(encoding="utf-8")


class Sandbox:
    """Runs commands on a copy of a workspace with the isolation described in the module docstring."""

    def __init__(self, settings: SandboxSettings, *, private: Sequence[Path] = ()) -> None:
        self.settings = settings
        self.python = settings.python or sys.executable
        self._root = os.geteuid() == 0
        # Hearth's own files: never copied in, and covered if they sit under a bound directory.
        self.private = [Path(os.path.realpath(p)) for p in (default_home(), *private)]
        self._cgroup_parent = find_cgroup_parent(settings.cgroup_parent)

    def isolation(self) -> list[str]:
        """What this sandbox enforces on this machine, in words."""
        s = self.settings
        who = f"uid {s.run_as_uid} (dropped from root)" if self._root else f"uid {os.geteuid()}"
        total = (
            f"cgroup v2 {self._cgroup_parent}: memory {s.memory_mb} MiB and {s.max_processes} processes in total"
            if self._cgroup_parent
            else f"memory {s.memory_mb} MiB in total (watched), {s.max_processes} processes in total (user namespace)"
        )
        return [
            "bubblewrap: empty root, read-only /usr, interpreter and minimal /etc",
            "user, network (no network), pid, ipc, uts namespaces; no capabilities",
            who,
            f"workspace copy on a {s.disk_mb} MiB tmpfs (the only writable disk)",
            total,
            f"cpu {s.cpu_s}s",
            f"files {s.max_file_mb} MiB",
            f"timeout {s.timeout_s:g}s",
        ]

    def _check_tools(self) -> None:
        tools = ("bwrap",) + (("unshare", "setpriv", "mount") if self._root else ())
        missing = [t for t in tools if not shutil.which(t, path=_SAFE_PATH)]
        if missing:
            raise SandboxError(
                f"The sandbox needs {', '.join(missing)} (Debian packages bubblewrap, util-linux, mount) — "
                "install them (apt-get install bubblewrap); tests are never run unsandboxed."
            )

    async def run(
        self,
        workspace: Path,
        argv: Sequence[str],
        *,
        overlay: Mapping[str, str] | None = None,
        collect: Sequence[str] = (),
        timeout_s: float | None = None,
    ) -> RunResult:
        """Copy ``workspace`` (plus ``overlay``: relative path -> text), run ``argv`` in the copy.

        ``collect`` names files (relative to the copy) to read back after the run. ``{python}`` in
        ``argv`` is the sandbox's interpreter; the copy is the working directory (``WORK`` inside).
        """
        self._check_tools()
        await asyncio.to_thread(prefixes, self.python)  # may ask the interpreter once (cached)
        if not await asyncio.to_thread(workspace.is_dir):
            raise SandboxError(f"The workspace {workspace} is not a directory.")
        await asyncio.to_thread(_sweep_stale)
        parent = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="hearth-sandbox-"))  # 0700
        try:
            await asyncio.to_thread((parent / "owner").write_text, str(os.getpid()))
            await asyncio.to_thread(self._prepare, workspace, parent, overlay or {})
            limit = timeout_s or self.settings.timeout_s
            return await self._execute(parent, list(argv), collect, limit)
        finally:
            await asyncio.to_thread(shutil.rmtree, parent, True)

    def _prepare(self, workspace: Path, parent: Path, overlay: Mapping[str, str]) -> None:
        """Stage the copy (bounded) and the sandbox's /etc files in the private run directory."""
        budget = self.settings.max_copy_mb * 1024 * 1024
        used = 0
        copy = parent / "ro" / "src"
        private = self.private

        def copy_file(src: str, dst: str) -> object:
            nonlocal used
            used += os.path.getsize(src)
            if used > budget:
                raise SandboxError(
                    f"The workspace is larger than sandbox.max_copy_mb ({self.settings.max_copy_mb} MiB) — "
                    "raise it or run the tests from a smaller folder."
                )
            return shutil.copy2(src, dst)

        def ignore(directory: str, names: list[str]) -> set[str]:
            skip = set(shutil.ignore_patterns(*_SKIP)(directory, names))
            base = Path(os.path.realpath(directory))
            return skip | {name for name in names if base / name in private}

        try:
            shutil.copytree(workspace, copy, symlinks=True, ignore=ignore, copy_function=copy_file)
        except shutil.Error as exc:
            raise SandboxError(f"Could not copy the workspace {workspace}: {exc.args[0][:3]}") from exc
        for rel, text in overlay.items():
            target = (copy / rel).resolve()
            if not target.is_relative_to(copy.resolve()):
                raise SandboxError(f"Refusing to write {rel!r} outside the workspace copy.")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        etc = parent / "ro" / "etc"
        etc.mkdir()
        write_identity(etc)
        if self._root:
            run_uid = self.settings.run_as_uid
            for dirpath, dirnames, filenames in os.walk(parent):
                os.lchown(dirpath, run_uid, run_uid)
                for name in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, name), run_uid, run_uid)

    def _command(
        self, parent: Path, report_fd: int, argv: list[str], collect: Sequence[str]
    ) -> tuple[list[str], str | None]:
        """The command line, and (as root) the slot directory to remove after the run."""
        s = self.settings
        config = {
            "report_fd": report_fd,
            "src": SRC,
            "work": WORK,
            "argv": argv,
            "collect": list(collect),
            "collect_cap": COLLECT_CAP,
            "limits": {
                "RLIMIT_CPU": s.cpu_s,
                "RLIMIT_AS": s.memory_mb << 20,
                "RLIMIT_NPROC": s.max_processes,
                "RLIMIT_FSIZE": s.max_file_mb << 20,
                "RLIMIT_CORE": 0,
                "RLIMIT_NOFILE": 1024,
            },
        }
        inner = [self.python, "-I", "-S", "-c", _LAUNCHER, json.dumps(config)]
        bwrap, sources = bwrap_command(parent, self.python, self.private, s.disk_mb, inner)
        if not self._root:
            return bwrap, None
        slots = slot_dir([str(h) for src in sources if (h := hidden_ancestor(Path(src), s.run_as_uid))])
        return reexpose_as(s.run_as_uid, s.run_as_uid, sources, slots, bwrap), slots

    async def _execute(
        self, parent: Path, argv: list[str], collect: Sequence[str], timeout_s: float
    ) -> RunResult:
        s = self.settings
        env = {
            **s.env,
            "PATH": _SAFE_PATH,
            "HOME": WORK,
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONHASHSEED": "0",
        }
        argv = [self.python if a == "{python}" else a for a in argv]
        report_r, report_w = os.pipe()
        try:
            command, slots = self._command(parent, report_w, argv, collect)
        except BaseException:
            os.close(report_r)
            os.close(report_w)
            raise
        cgroup = None
        if self._cgroup_parent is not None:
            try:
                cgroup = await asyncio.to_thread(
                    RunCgroup.create, self._cgroup_parent, s.memory_mb, s.max_processes
                )
            except OSError as exc:
                log.warning(
                    "sandbox: no cgroup under %s (%s); using the memory watch", self._cgroup_parent, exc
                )
        if cgroup is not None:
            # The first process joins the run's cgroup before it becomes the sandbox.
            command = [
                "/bin/sh",
                "-c",
                'echo $$ > "$0/cgroup.procs" && exec "$@"',
                str(cgroup.path),
                *command,
            ]
        log.debug("sandbox run in %s: %s", parent, argv)
        buffer = OutputBuffer(s.max_output_chars)
        started = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                cwd="/",
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(report_w,),
            )
        finally:
            os.close(report_w)
        report = asyncio.create_task(asyncio.to_thread(read_report, report_r))

        async def pump() -> None:
            assert proc.stdout is not None
            while data := await proc.stdout.read(65536):
                buffer.feed(data)

        def kill() -> None:
            _kill_group(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

        reader = asyncio.create_task(pump())
        watch = MemoryWatch(proc.pid, s.memory_mb << 20) if cgroup is None else None
        watcher = asyncio.create_task(watch.watch(kill)) if watch else None
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
        finally:
            # Also on cancellation: nothing the run started may outlive it.
            if watcher:
                watcher.cancel()
            kill()
            await asyncio.shield(proc.wait())
            try:
                await asyncio.wait_for(reader, 5)
            except TimeoutError:
                reader.cancel()
            events = await asyncio.shield(report)
            if cgroup is not None:
                await cgroup.remove()
            if slots is not None:
                await asyncio.to_thread(shutil.rmtree, slots, True)
        return finish(
            events,
            buffer,
            returncode=proc.returncode,
            timed_out=timed_out,
            memory_exceeded=bool(watch and watch.tripped) or bool(cgroup and cgroup.oom_killed()),
            disk_mb=s.disk_mb,
            memory_mb=s.memory_mb,
            timeout_s=timeout_s,
            collect=collect,
            duration_s=time.perf_counter() - started,
            isolation=self.isolation(),
        )


def _sweep_stale() -> None:
    """Remove the staging directories of runs whose Hearth process was killed mid-run."""
    for stale in Path(tempfile.gettempdir()).glob("hearth-sandbox-*"):
        try:
            pid = int((stale / "owner").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (OSError, ValueError):
            continue  # another user's, being set up, or still running


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
