"""Memory and process limits for a whole sandboxed run, not per process.

Two ways, chosen per machine:

- **cgroup v2** when a cgroup this process may write delegates ``memory`` and ``pids`` to its
  children (a systemd ``Delegate=yes`` unit, a container started with a writable cgroup, root on a
  cgroup v2 host): each run gets its own child cgroup with ``memory.max``, ``memory.swap.max=0`` and
  ``pids.max``; the kernel enforces the total.
- **otherwise** (the usual container: ``/sys/fs/cgroup`` read-only) a :class:`MemoryWatch` sums the
  anonymous memory of every process of the run (its process tree, read from ``/proc``) every
  30 ms (the tree itself every 120 ms) and kills the run once the sum passes ``sandbox.memory_mb``. The process count is
  bounded by ``RLIMIT_NPROC``, which the launcher sets inside the run's own user namespace, so it
  counts that run's processes only; each process is also capped at ``memory_mb`` of address space, so
  between two samples the run can overshoot by at most what its processes allocate in one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _own_cgroup() -> Path | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            path = _CGROUP_ROOT / line[3:].lstrip("/")
            return path if (path / "cgroup.procs").exists() else None
    return None


def _delegates(group: Path) -> bool:
    try:
        enabled = set((group / "cgroup.subtree_control").read_text().split())
    except OSError:
        return False
    return (
        {"memory", "pids"} <= enabled
        and os.access(group, os.W_OK)
        and os.access(group / "cgroup.procs", os.W_OK)
    )


def find_cgroup_parent(configured: str | None) -> Path | None:
    """The cgroup v2 directory runs are created under, or None when there is none to write."""
    if configured:
        group = Path(configured)
        return group if _delegates(group) else None
    own = _own_cgroup()
    if own is None:
        return None
    # Our own cgroup can delegate only when it holds no process (the "no internal process" rule),
    # so the usual delegated layout is our parent, with us in a leaf beside the runs.
    for candidate in (own, own.parent):
        if candidate.is_relative_to(_CGROUP_ROOT) and _delegates(candidate):
            return candidate
    return None


@dataclass
class RunCgroup:
    """One run's cgroup: created with its limits, joined by the run's first process, removed after."""

    path: Path

    @classmethod
    def create(cls, parent: Path, memory_mb: int, max_processes: int) -> RunCgroup:
        """Make ``parent/hearth-run-<id>`` with the run's limits."""
        path = parent / f"hearth-run-{uuid.uuid4().hex[:12]}"
        path.mkdir()
        try:
            (path / "memory.max").write_text(str(memory_mb * 1024 * 1024))
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")
            (path / "pids.max").write_text(str(max_processes))
            if (path / "memory.oom.group").exists():
                (path / "memory.oom.group").write_text("1")  # an OOM kill takes the whole run
        except OSError:
            path.rmdir()
            raise
        return cls(path)

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the run for the memory limit."""
        try:
            events = (self.path / "memory.events").read_text().split()
        except OSError:
            return False
        counts = dict(zip(events[::2], events[1::2], strict=False))
        return int(counts.get("oom_kill", "0")) > 0

    async def remove(self) -> None:
        """Kill anything left in the cgroup and remove it."""
        for _ in range(200):
            with contextlib.suppress(OSError):
                (self.path / "cgroup.kill").write_text("1")
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                await asyncio.sleep(0.01)


def _tree(root: int) -> list[int]:
    """``root`` and its live descendants, from ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _pss_anon(pid: int) -> int | None:
    """A process's proportional share of anonymous memory (copy-on-write pages split between sharers)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss_Anon:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _rss_anon(pid: int) -> int:
    """Resident memory that is not file-backed: cheap, and never less than the process's share."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            fields = fh.read().split()
        return max(0, int(fields[1]) - int(fields[2])) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def anon_memory_bytes(pids: list[int]) -> int:
    """Anonymous memory these processes hold together (shared libraries never count).

    The cheap per-process figure counts pages a fork shares with its parent once per process; only
    when that sum is over a limit is the exact proportional one (``smaps_rollup``) worth reading.
    """
    return sum(_rss_anon(pid) for pid in pids)


def exact_anon_memory_bytes(pids: list[int]) -> int:
    """Like :func:`anon_memory_bytes`, with copy-on-write pages split between the processes sharing them."""
    return sum(pss if (pss := _pss_anon(pid)) is not None else _rss_anon(pid) for pid in pids)


class MemoryWatch:
    """Kills a run whose processes together hold more than ``limit_bytes`` (the fallback without cgroups).

    Every ``interval_s`` it sums the memory of the run's processes; the process tree itself (a scan
    of ``/proc``) is read again every ``rescan_every`` samples, so a process started in between is
    counted at most that many intervals late (each is capped by its own address-space limit).
    """

    def __init__(
        self, root_pid: int, limit_bytes: int, interval_s: float = 0.03, rescan_every: int = 4
    ) -> None:
        self.root_pid = root_pid
        self.limit_bytes = limit_bytes
        self.interval_s = interval_s
        self.rescan_every = rescan_every
        self.tripped = False
        self.peak_bytes = 0

    def sample(self, pids: list[int]) -> int:
        """The run's memory now (the exact figure once the cheap one is over the limit)."""
        used = anon_memory_bytes(pids)
        if used > self.limit_bytes:
            used = exact_anon_memory_bytes(pids)
        return used

    async def watch(self, kill: Callable[[], None]) -> None:
        """Sample until cancelled; call ``kill()`` once over the limit."""
        pids: list[int] = []
        n = 0
        while True:
            if n % self.rescan_every == 0:
                pids = await asyncio.to_thread(_tree, self.root_pid)
            n += 1
            used = await asyncio.to_thread(self.sample, pids)
            self.peak_bytes = max(self.peak_bytes, used)
            if used > self.limit_bytes:
                self.tripped = True
                kill()
                return
            await asyncio.sleep(self.interval_s)
