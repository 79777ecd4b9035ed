"""Hearth's home: where it is when nothing is configured, and private: created 0700, every file 0600.

::

    make_home_private(settings.home)   # once, when a command loads its settings

Hearth keeps tokens, the audit log, chat history and the embedded store (the text of restricted
documents) under its home and wherever ``store.path`` and ``database.url`` point; a process umask of
077 covers all of those files, their SQLite WAL/journal siblings and the store's segments, without
each writer choosing a mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def default_home() -> Path:
    """Where Hearth keeps its data when nothing else is configured (``HEARTH_HOME``, else XDG)."""
    env = os.environ.get("HEARTH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "hearth"


def make_home_private(home: Path) -> Path:
    """Set the process umask to 077 and create ``home`` (and its missing parents) 0700.

    An existing home of ours that others could read (made by an older Hearth) is tightened to 0700.
    """
    os.umask(PRIVATE_UMASK)
    missing = []
    path = home
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    try:
        st = home.stat()
    except OSError:
        return home
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(home, stat.S_IMODE(st.st_mode) & 0o700)
    return home
