"""The sandbox's file system and namespaces: bubblewrap's command line, and (as root) the re-exposure.

:func:`bwrap_command` is the whole mount policy of a run: an empty root, read-only ``/usr``, ``/lib*``,
a minimal ``/etc`` and the interpreter's prefixes; private ``/proc``, ``/dev``, ``/dev/shm`` and
``/tmp``; the staged copy read-only at :data:`SRC` and a size-limited tmpfs at :data:`WORK`;
Hearth's own private paths covered wherever a bind would show them; new user, network, PID, IPC,
UTS and cgroup namespaces without capabilities. :func:`reexpose_as` wraps that command when Hearth
runs as root, so the run starts as the sandbox user and still reads what it needs.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from core.errors import SandboxError

WORK = "/run/hearth/work"  # where the copy is, inside the sandbox (nothing of the host is under /run/hearth)
SRC = "/run/hearth/src"  # the staged copy, read-only; the launcher copies it onto WORK
INNER_UID = 1000  # the run's uid and gid inside its user namespace
_TMP_MB = 64
_SHM_MB = 16
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "localtime", "alternatives", "hosts")
# Any failure before bwrap runs (a mount the kernel refuses…) is reported, never run around.
SETUP_FAILED = "HEARTH_SANDBOX_SETUP_FAILED"
# Root only, in a private mount namespace: bind each path the sandbox user must read but cannot reach
# (below a 0700 directory) to a slot, cover that directory with an empty tmpfs, put the path back
# read-only. $1: slot dir, $2: count of keeps, then the keeps, the count of hides, the hides, the rest.
_PRELUDE = f"""set -eu
trap 'rc=$?; [ "$rc" -eq 0 ] || echo "{SETUP_FAILED}" >&2; exit "$rc"' EXIT
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


def bwrap_command(
    parent: Path, python: str, private: Sequence[Path], disk_mb: int, inner: Sequence[str]
) -> tuple[list[str], list[str]]:
    """bwrap's command line that runs ``inner`` in the sandbox, and the host paths it binds.

    ``parent`` is the run's staging directory (``ro/src`` the copy, ``ro/etc`` its passwd and group);
    the bound paths are what :func:`reexpose_as` must make readable when the run starts as root.
    """
    binds, sources = _binds(parent, python, private, disk_mb)
    command = [
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
        str(INNER_UID),
        "--gid",
        str(INNER_UID),
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        *binds,
        "--chdir",
        "/",
        "--",
        *inner,
    ]
    return command, sources


def write_identity(etc: Path) -> None:
    """The sandbox's own ``passwd`` and ``group`` (root and the sandbox user, home at WORK) in ``etc``."""
    uid = INNER_UID
    (etc / "passwd").write_text(f"root:x:0:0::/:/usr/sbin/nologin\nsandbox:x:{uid}:{uid}::{WORK}:/bin/sh\n")
    (etc / "group").write_text(f"root:x:0:\nsandbox:x:{uid}:\n")


def _binds(parent: Path, python: str, private: Sequence[Path], disk_mb: int) -> tuple[list[str], list[str]]:
    """bwrap's file-system arguments, and the bound host paths (for the root prelude)."""
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
    for prefix in prefixes(python):
        args += ["--ro-bind", prefix, prefix]
        sources.append(prefix)
    for path in private:
        if any(path.is_relative_to(src) for src in sources) and path.exists():
            args += ["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]
    args += [
        "--ro-bind",
        str(parent / "ro" / "src"),
        SRC,
        "--perms",
        "0700",
        "--size",
        str(disk_mb << 20),
        "--tmpfs",
        WORK,
        # bwrap's root and /dev are tmpfs without a size: nothing may be written to them.
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
    ]
    return args, sources + [str(parent / "ro")]


@cache
def prefixes(python: str) -> tuple[str, ...]:
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

    ``slots`` is an empty directory outside those directories (see :func:`slot_dir`).
    """
    keeps: list[str] = []
    hides: list[str] = []
    for path in needed:
        hidden = hidden_ancestor(Path(path), uid)
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


def slot_dir(hides: Sequence[str]) -> str:
    """A new empty root-only directory outside every directory the prelude covers."""
    for base in ("/dev/shm", "/tmp", "/var/tmp"):
        if os.path.isdir(base) and not any(Path(base).is_relative_to(h) for h in hides):
            return tempfile.mkdtemp(prefix="hearth-slots-", dir=base)
    raise SandboxError("The sandbox found no temporary directory outside the ones it hides.")


def hidden_ancestor(path: Path, uid: int) -> Path | None:
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
