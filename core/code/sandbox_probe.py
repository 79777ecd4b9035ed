"""A probe run through the real sandbox that reports each isolation property (``hearth doctor``).

::

    for line in await probe_sandbox(settings.sandbox, home=settings.home):
        print(line.ok, line.name, line.detail)

Two runs: one with the configured limits tries the network (a listener on the host's loopback), a
filesystem unix socket (a listener in a temporary directory), Hearth's home, the host's processes,
writes outside the copy and its capabilities, and leaves a ``chmod 000`` tree behind; one with small
limits (64 MiB, 8 processes, a 16 MiB disk) holds memory in two children, forks and fills its disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.code.config import SandboxSettings
from core.code.sandbox import Sandbox
from core.errors import SandboxError

_ISOLATION = r"""
import json, os, socket, sys
port, sock_path, home, marker = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4][::-1]
out = {}
try:
    socket.create_connection(("127.0.0.1", int(port)), timeout=2).close(); out["network"] = "connected"
except OSError as exc:
    out["network"] = exc.strerror or str(exc)
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sock_path); out["socket"] = "connected"
except OSError as exc:
    out["socket"] = exc.strerror or str(exc)
try:
    out["home"] = bool(os.listdir(home))
except OSError:
    out["home"] = False
seen = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            seen.append(open(f"/proc/{pid}/cmdline", "rb").read())
        except OSError:
            pass
out["processes"] = len(seen)
out["host_process"] = any(marker.encode() in c for c in seen)
writable = []
for top in ("/", "/usr", "/etc", "/dev", os.path.dirname(sys.executable)):
    try:
        open(os.path.join(top, ".hearth-probe"), "w").close(); writable.append(top)
    except OSError:
        pass
out["writable"] = writable
out["caps"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
out["uid"] = os.getuid()
os.makedirs("trap/inner"); open("trap/inner/f", "w").write("x"); os.chmod("trap/inner", 0); os.chmod("trap", 0)
print("PROBE " + json.dumps(out))
"""

_LIMITS = r"""
import os, subprocess, sys, time
kids = [subprocess.Popen([sys.executable, "-c", "import time; b = b'x' * 40_000_000; print('held', flush=True); time.sleep(10)"],
                         stdout=subprocess.PIPE, text=True) for _ in range(2)]
held = sum(1 for k in kids if k.stdout.readline().startswith("held"))
print("HELD", held, flush=True)
time.sleep(3)
"""

_FORK_AND_FILL = r"""
import os, time
n = 0
for _ in range(100):
    try:
        if os.fork() == 0:
            time.sleep(5); os._exit(0)
        n += 1
    except OSError:
        break
written = 0
try:
    with open("fill", "wb") as fh:
        for _ in range(40):
            fh.write(b"x" * (1 << 20)); written += 1
except OSError:
    pass
print("FORKED", n, "WROTE", written, flush=True)
"""


@dataclass(frozen=True)
class ProbeLine:
    """One property of the sandbox, as observed from inside a run."""

    name: str
    ok: bool
    detail: str


async def probe_sandbox(settings: SandboxSettings, *, home: Path) -> list[ProbeLine]:
    """Run the probes; raises :class:`SandboxError` when the sandbox cannot run at all."""
    sandbox = Sandbox(settings, private=(home,))
    marker = f"hearth-probe-{os.getpid()}-{id(sandbox)}"
    staging = await asyncio.to_thread(_staged)
    lines: list[ProbeLine] = []
    with tempfile.TemporaryDirectory(prefix="hearth-probe-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        (base / "ws").mkdir()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        unix = socket.socket(socket.AF_UNIX)
        unix.bind(str(base / "probe.sock"))
        unix.listen(4)
        unix.setblocking(False)
        # A host process to look for from inside.
        host = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(30)", marker
        )
        try:
            # The marker goes in reversed: the probe's own command line must not match it.
            args = [str(listener.getsockname()[1]), str(base / "probe.sock"), str(home), marker[::-1]]
            result = await sandbox.run(base / "ws", ["{python}", "-c", _ISOLATION, *args])
            got_tcp, got_unix = _accepted(listener), _accepted(unix)
        finally:
            with contextlib.suppress(ProcessLookupError):
                host.kill()
            await host.wait()
            listener.close()
            unix.close()
        found = next((line for line in result.output.splitlines() if line.startswith("PROBE ")), None)
        if found is None:
            raise SandboxError(f"The sandbox probe did not report: {result.output[-300:]}")
        seen = json.loads(found[6:])
        lines += [
            ProbeLine(
                "network isolated",
                not got_tcp and seen["network"] != "connected",
                f"host loopback: {seen['network']}",
            ),
            ProbeLine(
                "sockets unreachable",
                not got_unix and seen["socket"] != "connected",
                f"filesystem unix socket: {seen['socket']}",
            ),
            ProbeLine(
                "home unreadable", not seen["home"], f"{home} {'visible' if seen['home'] else 'not mounted'}"
            ),
            ProbeLine(
                "host processes hidden",
                not seen["host_process"],
                f"{seen['processes']} processes visible (the run's own)",
            ),
            ProbeLine(
                "read-only outside the copy",
                not seen["writable"],
                "writable: " + ", ".join(seen["writable"])
                if seen["writable"]
                else "/, /usr, /etc, /dev read-only",
            ),
            ProbeLine(
                "no capabilities", int(seen["caps"], 16) == 0, f"CapEff {seen['caps']}, uid {seen['uid']}"
            ),
        ]
        small = settings.model_copy(
            update={"memory_mb": 64, "max_processes": 8, "disk_mb": 16, "timeout_s": 20}
        )
        tight = Sandbox(small, private=(home,))
        memory = await tight.run(base / "ws", ["{python}", "-c", _LIMITS])
        held = memory.output.split("HELD")[1].split()[0] if "HELD" in memory.output else "0"
        lines.append(
            ProbeLine(
                "memory bounded",
                memory.memory_exceeded or held != "2",
                "two children of 40 MB under a 64 MiB run: "
                + ("stopped" if memory.memory_exceeded else f"{held} held"),
            )
        )
        fill = await tight.run(base / "ws", ["{python}", "-c", _FORK_AND_FILL])
        words = fill.output.split()
        forked = int(words[words.index("FORKED") + 1]) if "FORKED" in words else -1
        wrote = int(words[words.index("WROTE") + 1]) if "WROTE" in words else -1
        lines.append(ProbeLine("processes bounded", 0 <= forked < 8, f"{forked} forks under a limit of 8"))
        lines.append(ProbeLine("disk bounded", 0 <= wrote <= 16, f"{wrote} MiB written under a 16 MiB disk"))
    left = await asyncio.to_thread(_staged) - staging
    lines.append(
        ProbeLine("copy removed", not left, "after chmod 000 inside it" if not left else f"left: {left}")
    )
    return lines


def _staged() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("hearth-sandbox-*"))


def _accepted(listener: socket.socket) -> bool:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True
