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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from core.code import sandbox_launch
from core.code.config import SandboxSettings
from core.code.sandbox_limits import MemoryWatch, RunCgroup, find_cgroup_parent
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
WORK = "/run/hearth/work"  # where the copy is, inside the sandbox (nothing of the host is under /run/hearth)
_SRC = "/run/hearth/src"
_INNER_UID = 1000
_TMP_MB = 64
_SHM_MB = 16
_COLLECT_CAP = 2_000_000
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "localtime", "alternatives", "hosts")
_LAUNCHER = Path(sandbox_launch.__file__).read_text(encoding="utf-8")
# Any failure before bwrap runs (a mount the kernel refuses…) is reported, never run around.
_SETUP_FAILED = "HEARTH_SANDBOX_SETUP_FAILED"
# Root only, in a private mount namespace: bind each path the sandbox user must read but cannot reach
# (below a 0700 directory) to a slot, cover that directory with an empty tmpfs, put the path back
# read-only. $1: slot dir, $2: count of keeps, then the keeps, the count of hides, the hides, the rest.
_PRELUDE = f"""set -eu
trap 'rc=$?; [ "$rc" -eq 0 ] || echo "{_SETUP_FAILED}" >&2; exit "$rc"' EXIT
umask 022  # the re-exposed paths' parents must be traversable whatever Hearth's own umask (077)
mount --make-rprivate /
slots="$1"; n="$2"; shift 2
i=0; keeps=""
while [ "$i" -lt "$n" ]; do mkdir -p "$slots/$i"; mount --rbind "$1" "$slots/$i"; keeps="$keeps $1"; shift; i=$((i + 1)); done
m="$1"; shift
while [ "$m" -gt 0 ]; do mount -t tmpfs -o mode=0755,size=1m hearth-hidden "$1"; shift; m=$((m - 1)); done
i=0
for keep in $keeps; do mkdir -p "$keep"; mount --move "$slots/$i" "$keep"; mount -o remount,bind,ro "$keep"; i=$((i + 1)); done
trap - EXIT
exec "$@"
"""
_NAMESPACE_FIX = (
    "run Hearth's container with `security_opt: [seccomp=unconfined, apparmor=unconfined, "
    "systempaths=unconfined]` (deploy/compose.yaml), or on a host allow unprivileged user namespaces "
    "(sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0, or "
    "kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu)"
)


@dataclass
class RunResult:
    """What a sandboxed run produced."""

    exit_code: int | None
    output: str
    timed_out: bool
    truncated: bool
    duration_s: float
    isolation: list[str]
    files: dict[str, str] = field(default_factory=dict)
    memory_exceeded: bool = False

    @property
    def ok(self) -> bool:
        """Whether the command finished in time with exit status 0."""
        return self.exit_code == 0 and not self.timed_out and not self.memory_exceeded


class OutputBuffer:
    """Keeps the first and last ``limit // 2`` characters of a stream of bytes."""

    def __init__(self, limit: int) -> None:
        self.half = max(1, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        """Add bytes, dropping the middle once over the limit."""
        self.total += len(data)
        room = self.half * 4 - len(self.head)  # bytes: up to 4 per character
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.half * 8:
                del self.tail[: len(self.tail) - self.half * 4]

    def text(self) -> tuple[str, bool]:
        """The kept text and whether anything was cut."""
        head = self.head.decode("utf-8", "replace")
        tail = self.tail.decode("utf-8", "replace")
        whole = head + tail
        if len(whole) <= self.half * 2 and self.total == len(self.head) + len(self.tail):
            return whole, False
        omitted = self.total - len(head[: self.half].encode()) - len(tail[-self.half :].encode())
        return f"{head[: self.half]}\n… [{omitted:,} bytes of output omitted] …\n{tail[-self.half :]}", True


@cache
def _prefixes(python: str) -> tuple[str, ...]:
    """The directories an interpreter needs: its venv, its base prefix, its real executable's home."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        found = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        try:
            out = subprocess.run(
                [
                    python,
                    "-I",
                    "-c",
                    "import sys; print(sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxError(
                f"sandbox.python {python} does not run ({exc}) — point it at a Python with pytest."
            ) from exc
        found = out.split()
    real = Path(os.path.realpath(python)).parent.parent
    found += [str(real), str(Path(python).parent.parent)]
    return _outermost(found)


def _outermost(paths: Sequence[str]) -> tuple[str, ...]:
    """Distinct paths, none inside another, none already under ``/usr`` (bound anyway)."""
    keep: list[Path] = []
    for raw in sorted({os.path.realpath(p) for p in paths} | {os.path.abspath(p) for p in paths}, key=len):
        path = Path(raw)
        if path == Path("/") or path.is_relative_to("/usr"):
            continue
        if not any(path.is_relative_to(k) for k in keep):
            keep.append(path)
    return tuple(str(p) for p in keep)


def reexpose_as(uid: int, gid: int, needed: Sequence[str], slots: str, argv: Sequence[str]) -> list[str]:
    """As root: ``argv`` as ``uid``/``gid``, in a private mount namespace where each ``needed`` path
    below a directory that uid cannot traverse is put back, read-only, in an empty tmpfs there.

    ``slots`` is an empty directory outside those directories (see :func:`_slot_dir`).
    """
    keeps: list[str] = []
    hides: list[str] = []
    for path in needed:
        hidden = _hidden_ancestor(Path(path), uid)
        if hidden is not None:
            keeps.append(path)
            if str(hidden) not in hides:
                hides.append(str(hidden))
    drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    prelude = ["/bin/sh", "-c", _PRELUDE, "hearth-sandbox", slots, str(len(keeps)), *keeps]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        *prelude,
        str(len(hides)),
        *hides,
        *drop,
        *argv,
    ]


def _slot_dir(hides: Sequence[str]) -> str:
    """A new empty root-only directory outside every directory the prelude covers."""
    for base in ("/dev/shm", "/tmp", "/var/tmp"):
        if os.path.isdir(base) and not any(Path(base).is_relative_to(h) for h in hides):
            return tempfile.mkdtemp(prefix="hearth-slots-", dir=base)
    raise SandboxError("The sandbox found no temporary directory outside the ones it hides.")


def _hidden_ancestor(path: Path, uid: int) -> Path | None:
    """The outermost directory above ``path`` that ``uid`` (its own gid, no groups) may not traverse."""
    for parent in reversed(path.parents):
        if parent == Path("/"):
            continue
        try:
            st = parent.stat()
        except OSError:
            return None
        if st.st_uid == uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid == uid:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            return parent
    return None


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
        await asyncio.to_thread(_prefixes, self.python)  # may ask the interpreter once (cached)
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
        uid = _INNER_UID
        (etc / "passwd").write_text(
            f"root:x:0:0::/:/usr/sbin/nologin\nsandbox:x:{uid}:{uid}::{WORK}:/bin/sh\n"
        )
        (etc / "group").write_text(f"root:x:0:\nsandbox:x:{uid}:\n")
        if self._root:
            run_uid = self.settings.run_as_uid
            for dirpath, dirnames, filenames in os.walk(parent):
                os.lchown(dirpath, run_uid, run_uid)
                for name in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, name), run_uid, run_uid)

    def _binds(self, parent: Path) -> tuple[list[str], list[str]]:
        """bwrap's file-system arguments, and the bound host paths (for the root prelude)."""
        s = self.settings
        # The private /proc, /dev, /dev/shm and /tmp first: bwrap mounts in order, so an interpreter or
        # venv that lives under /tmp (a CI checkout, a throwaway venv) is bound on top of the private
        # /tmp below instead of being hidden by it.
        args = [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--perms",
            "1777",
            "--size",
            str(_SHM_MB << 20),
            "--tmpfs",
            "/dev/shm",
            "--perms",
            "1777",
            "--size",
            str(_TMP_MB << 20),
            "--tmpfs",
            "/tmp",
        ]
        args += ["--ro-bind", "/usr", "/usr"]
        sources = ["/usr"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / name
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                args += ["--ro-bind", str(host), str(host)]
                sources.append(str(host))
        for name in _ETC:
            if (Path("/etc") / name).exists():
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        etc = parent / "ro" / "etc"
        args += [
            "--ro-bind",
            str(etc / "passwd"),
            "/etc/passwd",
            "--ro-bind",
            str(etc / "group"),
            "/etc/group",
        ]
        for prefix in _prefixes(self.python):
            args += ["--ro-bind", prefix, prefix]
            sources.append(prefix)
        for path in self.private:
            if any(path.is_relative_to(src) for src in sources) and path.exists():
                args += ["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]
        args += [
            "--ro-bind",
            str(parent / "ro" / "src"),
            _SRC,
            "--perms",
            "0700",
            "--size",
            str(s.disk_mb << 20),
            "--tmpfs",
            WORK,
            # bwrap's root and /dev are tmpfs without a size: nothing may be written to them.
            "--remount-ro",
            "/dev",
            "--remount-ro",
            "/",
        ]
        return args, sources + [str(parent / "ro")]

    def _command(
        self, parent: Path, report_fd: int, argv: list[str], collect: Sequence[str]
    ) -> tuple[list[str], str | None]:
        """The command line, and (as root) the slot directory to remove after the run."""
        s = self.settings
        config = {
            "report_fd": report_fd,
            "src": _SRC,
            "work": WORK,
            "argv": argv,
            "collect": list(collect),
            "collect_cap": _COLLECT_CAP,
            "limits": {
                "RLIMIT_CPU": s.cpu_s,
                "RLIMIT_AS": s.memory_mb << 20,
                "RLIMIT_NPROC": s.max_processes,
                "RLIMIT_FSIZE": s.max_file_mb << 20,
                "RLIMIT_CORE": 0,
                "RLIMIT_NOFILE": 1024,
            },
        }
        binds, sources = self._binds(parent)
        bwrap = [
            "bwrap",
            "--unshare-user",
            "--disable-userns",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "sandbox",
            "--uid",
            str(_INNER_UID),
            "--gid",
            str(_INNER_UID),
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            *binds,
            "--chdir",
            "/",
            "--",
            self.python,
            "-I",
            "-S",
            "-c",
            _LAUNCHER,
            json.dumps(config),
        ]
        if not self._root:
            return bwrap, None
        slots = _slot_dir([str(h) for src in sources if (h := _hidden_ancestor(Path(src), s.run_as_uid))])
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
        report = asyncio.create_task(asyncio.to_thread(_read_report, report_r))

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
        duration = time.perf_counter() - started
        output, truncated = buffer.text()
        memory = bool(watch and watch.tripped) or bool(cgroup and cgroup.oom_killed())
        if (not events or events[0].get("event") != "up") and not timed_out:
            raise SandboxError(_refusal(output))
        done = next((e for e in events if e.get("event") == "done"), None)
        error = next((e for e in events if e.get("event") == "error"), None)
        if error and error.get("kind") == "copy":
            raise SandboxError(
                f"The workspace copy does not fit the sandbox disk (sandbox.disk_mb = {s.disk_mb} MiB): "
                f"{error.get('message')} — raise sandbox.disk_mb."
            )
        if error:
            output += f"\n[the command could not start: {error.get('message')}]"
        if timed_out:
            output += f"\n[killed: the run exceeded the {timeout_s:g}s time limit (sandbox.timeout_s)]"
        if memory:
            output += (
                f"\n[killed: the run's processes together exceeded {s.memory_mb} MiB (sandbox.memory_mb)]"
            )
        code: int | None
        if timed_out:
            code = None
        elif done is not None:
            code = int(done["rc"])
        else:
            code = proc.returncode if proc.returncode else 1
        if code is not None and code < 0:
            output += f"\n[the run ended on signal {-code}: {_signal_name(-code)}]"
        files = {str(k): str(v) for k, v in (done or {}).get("files", {}).items() if k in collect}
        return RunResult(code, output, timed_out, truncated, duration, self.isolation(), files, memory)


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


def _read_report(fd: int) -> list[dict[str, Any]]:
    """The launcher's JSON lines, read to EOF (bounded: the command may write to it too)."""
    data = bytearray()
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            if len(data) < 4 * _COLLECT_CAP + 65536:
                data += chunk
    events = []
    for line in bytes(data).splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events


def _refusal(output: str) -> str:
    detail = "; ".join(line.strip() for line in output.replace(_SETUP_FAILED, "").strip().splitlines()[:3])
    if "bwrap: execvp" in detail:  # the namespaces worked; the program is not where the sandbox looks
        return (
            f"The sandbox could not start the test command ({detail}) — the interpreter or one of its "
            "directories is not visible inside the sandbox; set sandbox.python to an interpreter outside "
            "Hearth's home. Tests are never run unsandboxed."
        )
    return (
        f"The sandbox could not isolate the run ({detail or 'bubblewrap did not start'}) — {_NAMESPACE_FIX}; "
        "tests are never run unsandboxed."
    )


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _signal_name(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        return "unknown"
    hints = {
        "SIGXCPU": "CPU time limit (sandbox.cpu_s)",
        "SIGXFSZ": "file size limit (sandbox.max_file_mb)",
        "SIGKILL": "killed",
    }
    return f"{name} — {hints[name]}" if name in hints else name
