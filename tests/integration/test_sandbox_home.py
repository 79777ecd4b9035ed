"""Hearth's home and what it writes there are private: a real `hearth` process creates them 0700/0600.

The red team read the embedded store and the audit database from inside a sandboxed run because
the home was world-readable; the sandbox no longer mounts it, and other users cannot read it either.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from core.home import make_home_private

HEARTH = str(Path(sys.executable).with_name("hearth"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_hearth_command_creates_its_home_and_database_private(tmp_path: Path) -> None:
    home = tmp_path / "deep" / "home"
    env = {**os.environ, "HEARTH_HOME": str(home)}
    env.pop("HEARTH_CONFIG", None)
    done = subprocess.run(
        [HEARTH, "tokens", "create", "--user", "alice", "--acl", "group:eng"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert _mode(home) == 0o700 and _mode(home.parent) == 0o700
    created = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "hearth.db" for p in created), created
    loose = {str(p): oct(_mode(p)) for p in created if _mode(p) & 0o077}
    assert not loose  # hearth.db and its WAL/SHM siblings: owner only


def test_an_existing_world_readable_home_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "old-home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    previous = os.umask(0o022)
    try:
        make_home_private(home)
        assert os.umask(0o022) == 0o077  # files created from here on are 0600
    finally:
        os.umask(previous)
    assert _mode(home) == 0o700
