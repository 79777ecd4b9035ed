"""Run a command on a throw-away copy of a workspace, cut off from the network and the rest of the disk.

::

    sandbox = Sandbox(settings.sandbox)
    result = await sandbox.run(Path("~/proj"), ["python", "-m", "pytest", "-q"], collect=["report.xml"])
    result.exit_code, result.output, result.files["report.xml"]

Isolation (Linux, util-linux only — no extra package needed):

- ``unshare --net --pid --mount --fork --mount-proc --kill-child``: a new network namespace (only a
  loopback that is down: no connection leaves, not even to the host's 127.0.0.1), a new PID namespace
  (the run sees and can signal only its own processes; when its first process dies every other
  one dies too) and a private mount table;
- inside it, still as root: the copy is bind-mounted on itself, then ``/`` is remounted read-only, a
  private tmpfs covers ``/dev/shm`` and ``/root`` (re-exposing read-only only the interpreter's own
  directory when it lives there);
- ``setpriv`` drops to ``sandbox.run_as_uid`` (``nobody``) with no supplementary groups and
  ``no_new_privs``; ``prlimit`` caps CPU seconds, address space, processes and file size;
- a wall-clock timeout kills the whole process group, and output is captured head + tail.

When Hearth does not run as root it uses ``unshare --user --map-root-user`` instead (no uid change;
the file system stays writable where your own user can write) and says so in ``result.isolation``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.code.config import SandboxSettings
from core.errors import SandboxError

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

# Runs as root inside the new namespaces, then drops to the sandbox user. $1: the copy, $2: staging
# dir, $3: count of "hidden dir" entries, then triples (dir to hide, path inside it to keep, stage slot),
# then the command.
_SETUP_FAILED = "HEARTH_SANDBOX_SETUP_FAILED"
# Any failure before the final exec (a mount the kernel refuses…) is reported, never run around.
# The namespaces every sandboxed run gets (both modes): no network, its own pids, killed with us.
_ISOLATE = ["--net", "--pid", "--fork", "--mount-proc", "--kill-child", "--"]
_TRAP = f"""set -eu
trap 'rc=$?; [ "$rc" -eq 0 ] || echo "{_SETUP_FAILED}" >&2; exit "$rc"' EXIT
"""
_PRELUDE = r"""
mount --make-rprivate /
copy="$1"; stage="$2"; n="$3"; shift 3
mount --bind "$copy" "$copy"
i=0
while [ "$i" -lt "$n" ]; do
  hide="$1"; keep="$2"; slot="$stage/$3"; shift 3
  mkdir -p "$slot"
  if [ -n "$keep" ]; then mount --rbind "$keep" "$slot"; fi
  mount -t tmpfs -o mode=0755,size=1m hearth-hidden "$hide"
  if [ -n "$keep" ]; then mkdir -p "$keep"; mount --move "$slot" "$keep"; mount -o remount,bind,ro "$keep"; fi
  i=$((i + 1))
done
if [ -d /dev/shm ]; then mount -t tmpfs -o size=16m,mode=1777 hearth-shm /dev/shm; fi
mount -o remount,bind,ro /
cd "$copy"
exec "$@"
"""


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

    @property
    def ok(self) -> bool:
        """Whether the command finished in time with exit status 0."""
        return self.exit_code == 0 and not self.timed_out


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


class Sandbox:
    """Runs commands on a copy of a workspace with the isolation described in the module docstring."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.python = settings.python or sys.executable
        self._root = os.geteuid() == 0

    def isolation(self) -> list[str]:
        """What this sandbox enforces on this machine, in words."""
        s = self.settings
        parts = ["network namespace (no network)", "pid namespace", "mount namespace", "workspace copy"]
        if self._root:
            parts += [f"uid {s.run_as_uid}", "read-only root file system", "private /dev/shm", "/root hidden"]
        else:
            parts += ["user namespace (same uid: files your user owns stay writable)"]
        parts += [
            f"cpu {s.cpu_s}s",
            f"memory {s.memory_mb} MiB",
            f"{s.max_processes} processes",
            f"files {s.max_file_mb} MiB",
            f"timeout {s.timeout_s:g}s",
        ]
        return parts

    def _check_tools(self) -> None:
        tools = ("unshare", "prlimit") + (("setpriv",) if self._root else ())
        missing = [t for t in tools if not shutil.which(t)]
        if missing:
            raise SandboxError(
                f"The sandbox needs {', '.join(missing)} (Debian package util-linux) — install it; "
                "tests are never run unsandboxed."
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

        ``collect`` names files (relative to the copy) to read back after the run.
        """
        self._check_tools()
        if not await asyncio.to_thread(workspace.is_dir):
            raise SandboxError(f"The workspace {workspace} is not a directory.")
        parent = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="hearth-sandbox-"))
        try:
            copy = parent / "work"
            await asyncio.to_thread(self._prepare, workspace, copy, parent, overlay or {})
            limit = timeout_s or self.settings.timeout_s
            return await self._execute(copy, parent, list(argv), collect, limit)
        finally:
            await asyncio.to_thread(shutil.rmtree, parent, True)

    def _prepare(self, workspace: Path, copy: Path, parent: Path, overlay: Mapping[str, str]) -> None:
        """Copy the workspace (bounded), write the overlay, hand the copy to the sandbox user."""
        budget = self.settings.max_copy_mb * 1024 * 1024
        used = 0

        def copy_file(src: str, dst: str) -> object:
            nonlocal used
            used += os.path.getsize(src)
            if used > budget:
                raise SandboxError(
                    f"The workspace is larger than sandbox.max_copy_mb ({self.settings.max_copy_mb} MiB) — "
                    "raise it or run the tests from a smaller folder."
                )
            return shutil.copy2(src, dst)

        try:
            shutil.copytree(
                workspace, copy, symlinks=True, ignore=shutil.ignore_patterns(*_SKIP), copy_function=copy_file
            )
        except shutil.Error as exc:
            raise SandboxError(f"Could not copy the workspace {workspace}: {exc.args[0][:3]}") from exc
        for rel, text in overlay.items():
            target = (copy / rel).resolve()
            if not target.is_relative_to(copy.resolve()):
                raise SandboxError(f"Refusing to write {rel!r} outside the workspace copy.")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        (copy / ".tmp").mkdir(exist_ok=True)
        (parent / "stage").mkdir()
        if self._root:
            uid = self.settings.run_as_uid
            for dirpath, dirnames, filenames in os.walk(copy):
                os.lchown(dirpath, uid, uid)
                for name in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, name), uid, uid)
            os.chmod(parent, 0o711)  # the sandbox user may pass through to the copy, not list it

    def _command(self, copy: Path, parent: Path, argv: list[str]) -> list[str]:
        s = self.settings
        limits = [
            "prlimit",
            f"--cpu={s.cpu_s}",
            f"--as={s.memory_mb * 1024 * 1024}",
            f"--nproc={s.max_processes}",
            f"--fsize={s.max_file_mb * 1024 * 1024}",
            "--core=0",
            "--nofile=1024",
            "--",
        ]
        if not self._root:
            return ["unshare", "--user", "--map-root-user", *_ISOLATE, *limits, *argv]
        hidden: list[str] = []
        root_home = Path("/root")
        if root_home.is_dir():
            keep = ""
            for candidate in (sys.base_prefix, os.path.realpath(self.python)):
                path = Path(candidate)
                if path.is_relative_to(root_home) and path != root_home:
                    rel = path.relative_to(root_home)
                    keep = str(root_home / rel.parts[0])
                    break
            hidden += [str(root_home), keep, "0"]
        drop = [
            "setpriv",
            f"--reuid={s.run_as_uid}",
            f"--regid={s.run_as_uid}",
            "--clear-groups",
            "--no-new-privs",
            "--",
        ]
        return [
            "unshare",
            "--mount",
            *_ISOLATE,
            "/bin/sh",
            "-c",
            _TRAP + _PRELUDE,
            "hearth-sandbox",
            str(copy),
            str(parent / "stage"),
            str(len(hidden) // 3),
            *hidden,
            *drop,
            *limits,
            *argv,
        ]

    async def _execute(
        self, copy: Path, parent: Path, argv: list[str], collect: Sequence[str], timeout_s: float
    ) -> RunResult:
        env = {
            "PATH": _SAFE_PATH,
            "HOME": str(copy),
            "TMPDIR": str(copy / ".tmp"),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONHASHSEED": "0",
        }
        argv = [self.python if a == "{python}" else a for a in argv]
        command = self._command(copy, parent, argv)
        log.debug("sandbox run in %s: %s", copy, argv)
        buffer = OutputBuffer(self.settings.max_output_chars)
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=copy,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )

        async def pump() -> None:
            assert proc.stdout is not None
            while data := await proc.stdout.read(65536):
                buffer.feed(data)

        reader = asyncio.create_task(pump())
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
        finally:
            # Also on cancellation: nothing the run started may outlive it.
            _kill_group(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
            try:
                await asyncio.wait_for(reader, 5)
            except TimeoutError:
                reader.cancel()
        duration = time.perf_counter() - started
        output, truncated = buffer.text()
        if timed_out:
            output += f"\n[killed: the run exceeded the {timeout_s:g}s time limit (sandbox.timeout_s)]"
        files: dict[str, str] = {}
        for rel in collect:
            path = copy / rel
            if path.is_file() and not path.is_symlink():
                files[rel] = path.read_text(encoding="utf-8", errors="replace")[:2_000_000]
        code = None if timed_out else proc.returncode
        if code and (_SETUP_FAILED in output or output.startswith("unshare: ")):
            detail = output.replace(_SETUP_FAILED, "").strip().splitlines()[:3]
            raise SandboxError(
                f"The sandbox could not isolate the run ({'; '.join(detail)}) — run Hearth as root in its "
                "container, or enable unprivileged user namespaces; tests are never run unsandboxed."
            )
        if code is not None and code < 0:
            output += f"\n[the run ended on signal {-code}: {_signal_name(-code)}]"
        return RunResult(code, output, timed_out, truncated, duration, self.isolation(), files)


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
