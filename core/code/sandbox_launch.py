"""The first program inside the sandbox: copy, limit, run, reap, report. Stdlib only.

It runs as ``python -I -S -c <this file's text> <config json>`` with the sandbox's own interpreter,
inside bubblewrap, as the sandbox user. It copies the read-only staged workspace onto the size-limited
tmpfs that is the run's only writable disk, sets the resource limits on itself (so the test command
and anything that takes this process over are bound by them alike), runs the command with every
other descriptor closed, kills whatever the command left behind, and writes one JSON line per event
to the report descriptor, which the command never holds:

    {"event": "up"}                                   the sandbox came up (namespaces and mounts work)
    {"event": "error", "message": "..."}              the copy did not fit, or the command could not start
    {"event": "done", "rc": 0, "files": {"r.xml": "..."}}

Kept compatible with Python 3.8, since ``sandbox.python`` may be an older interpreter.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from typing import Any


def _emit(fd: int, event: dict[str, Any]) -> None:
    data = (json.dumps(event) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def _read_collected(work: str, rel: str, cap: int) -> str | None:
    path = os.path.join(work, rel)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        left = cap
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(fd)


def main(config: dict[str, Any]) -> int:
    fd = config["report_fd"]
    work = config["work"]
    _emit(fd, {"event": "up"})
    os.umask(0o022)  # a normal umask for the tests, not Hearth's private one
    try:
        shutil.copytree(config["src"], work, symlinks=True, dirs_exist_ok=True)
    except (OSError, shutil.Error) as exc:
        _emit(fd, {"event": "error", "kind": "copy", "message": str(exc)[:300]})
        return 2
    for name, value in config["limits"].items():
        limit = getattr(resource, name)
        resource.setrlimit(limit, (value, value))
    try:
        proc = subprocess.Popen(config["argv"], cwd=work, stdin=subprocess.DEVNULL, close_fds=True)
    except OSError as exc:
        _emit(fd, {"event": "error", "kind": "start", "message": f"{config['argv'][0]}: {exc.strerror}"})
        return 127
    rc = proc.wait()
    try:
        os.kill(-1, signal.SIGKILL)  # every process the command left, not ourselves nor bwrap's init
    except ProcessLookupError:
        pass
    files: dict[str, str] = {}
    for rel in config["collect"]:
        text = _read_collected(work, rel, config["collect_cap"])
        if text is not None:
            files[rel] = text
    _emit(fd, {"event": "done", "rc": rc, "files": files})
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
