"""What a sandboxed run produced: the result, the kept output, the launcher's report read into words.

The launcher (:mod:`core.code.sandbox_launch`) writes JSON lines to a pipe: ``up`` once the sandbox
stands, ``error`` when the copy or the command failed, ``done`` with the exit status and the collected
files. :func:`finish` turns those lines, the output and what the run's watchers saw into a
:class:`RunResult`, or into a :class:`~core.errors.SandboxError` when the sandbox never stood up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.code.sandbox_mounts import SETUP_FAILED
from core.errors import SandboxError

COLLECT_CAP = 2_000_000  # characters of each collected file the launcher sends back
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


def finish(
    events: Sequence[dict[str, Any]],
    buffer: OutputBuffer,
    *,
    returncode: int | None,
    timed_out: bool,
    memory_exceeded: bool,
    disk_mb: int,
    memory_mb: int,
    timeout_s: float,
    collect: Sequence[str],
    duration_s: float,
    isolation: list[str],
) -> RunResult:
    """The result of a run from the launcher's ``events`` and its output; SandboxError if it never started."""
    output, truncated = buffer.text()
    if (not events or events[0].get("event") != "up") and not timed_out:
        raise SandboxError(refusal(output))
    done = next((e for e in events if e.get("event") == "done"), None)
    error = next((e for e in events if e.get("event") == "error"), None)
    if error and error.get("kind") == "copy":
        raise SandboxError(
            f"The workspace copy does not fit the sandbox disk (sandbox.disk_mb = {disk_mb} MiB): "
            f"{error.get('message')} — raise sandbox.disk_mb."
        )
    if error:
        output += f"\n[the command could not start: {error.get('message')}]"
    if timed_out:
        output += f"\n[killed: the run exceeded the {timeout_s:g}s time limit (sandbox.timeout_s)]"
    if memory_exceeded:
        output += f"\n[killed: the run's processes together exceeded {memory_mb} MiB (sandbox.memory_mb)]"
    code: int | None
    if timed_out:
        code = None
    elif done is not None:
        code = int(done["rc"])
    else:
        code = returncode if returncode else 1
    if code is not None and code < 0:
        output += f"\n[the run ended on signal {-code}: {_signal_name(-code)}]"
    files = {str(k): str(v) for k, v in (done or {}).get("files", {}).items() if k in collect}
    return RunResult(code, output, timed_out, truncated, duration_s, isolation, files, memory_exceeded)


def read_report(fd: int) -> list[dict[str, Any]]:
    """The launcher's JSON lines, read to EOF (bounded: the command may write to it too)."""
    data = bytearray()
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            if len(data) < 4 * COLLECT_CAP + 65536:
                data += chunk
    events = []
    for line in bytes(data).splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events


def refusal(output: str) -> str:
    """The sentence for a run that never started: a command bwrap cannot find, or isolation that failed."""
    detail = "; ".join(line.strip() for line in output.replace(SETUP_FAILED, "").strip().splitlines()[:3])
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
