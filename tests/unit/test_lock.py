"""The locks install.sh installs from: whole, hashed, in step with pyproject.toml and this venv."""

from __future__ import annotations

import http.server
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "deploy" / "requirements.lock"
DEV = ROOT / "deploy" / "requirements-dev.lock"
# Installed by install.sh itself, never from a lock (see deploy/lock.sh).
OUTSIDE = {"torch", "llama-cpp-python", "hearth"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.MULTILINE)


def pins(lock: Path) -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in _PIN.findall(lock.read_text(encoding="utf-8"))}


def project() -> dict[str, list[Requirement]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"runtime": [Requirement(r) for r in data["dependencies"]]}
    for extra, reqs in data["optional-dependencies"].items():
        groups[extra] = [Requirement(r) for r in reqs]
    return groups


@pytest.mark.parametrize("lock", [RUNTIME, DEV], ids=["runtime", "dev"])
def test_every_locked_package_is_pinned_with_hashes(lock: Path) -> None:
    text = lock.read_text(encoding="utf-8")
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    packages = [e for e in entries if _PIN.match(e)]
    assert len(packages) > 30
    assert all("--hash=sha256:" in e for e in packages), [e.split()[0] for e in packages if "--hash" not in e]
    assert not re.search(r"^(hearth|torch|llama-cpp-python)\b", text, re.MULTILINE)


def test_the_locks_hold_what_pyproject_asks_for_at_versions_it_allows() -> None:
    groups = project()
    runtime, dev = pins(RUNTIME), pins(DEV)
    for lock, names in ((runtime, ["runtime"]), (dev, ["runtime", "dev", "torch"])):
        for group in names:
            for req in groups[group]:
                name = canonicalize_name(req.name)
                if name in OUTSIDE:
                    continue
                assert name in lock, f"{req} ({group}) is not in the lock: run 'make lock'"
                assert req.specifier.contains(lock[name], prereleases=True), (
                    f"{req} but the lock has {lock[name]}"
                )
    # The runtime set is the dev set's base: the same versions where both have a package.
    assert {n: v for n, v in runtime.items() if dev.get(n) != v} == {}


@pytest.mark.skipif(
    bool(os.environ.get("HEARTH_NO_LOCK")), reason="installed from pyproject.toml (HEARTH_NO_LOCK)"
)
def test_this_venv_is_the_locked_set() -> None:
    """What the suite runs on is what the dev lock says (install.sh installs it with --no-deps)."""
    wrong = {}
    for name, version in pins(DEV).items():
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            wrong[name] = "missing"
            continue
        if installed != version:
            wrong[name] = f"{installed} (locked {version})"
    assert wrong == {}, (
        "the venv differs from deploy/requirements-dev.lock: rerun 'make test' (it reinstalls)"
    )


def test_the_locks_keep_the_lock_constraints() -> None:
    """What deploy/lock-constraints.txt holds back (releases too new for Debian 12's Python) stays back."""
    lines = (ROOT / "deploy" / "lock-constraints.txt").read_text(encoding="utf-8").splitlines()
    held = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    assert held
    for lock in (RUNTIME, DEV):
        locked = pins(lock)
        for req in held:
            name = canonicalize_name(req.name)
            if name in locked:
                assert req.specifier.contains(locked[name]), (
                    f"{lock.name} has {name}=={locked[name]} against {req}"
                )


class _Index(http.server.BaseHTTPRequestHandler):
    """A package index's PEP 691 JSON project pages, as pypi.org/simple serves them (files only)."""

    projects = {
        "soupsieve": [
            ("soupsieve-4.1.3-py3-none-any.whl", ">=3.11.5"),
            ("soupsieve-2.10-py3-none-any.whl", ">=3.9"),
        ],
        "six": [("six-1.17.0-py2.py3-none-any.whl", None), ("six-1.17.0.tar.gz", "")],
    }

    def do_GET(self) -> None:
        name = self.path.strip("/").split("/")[-1]
        if self.headers.get("Accept") != "application/vnd.pypi.simple.v1+json" or name not in self.projects:
            self.send_error(404)
            return
        files = [{"filename": f, "requires-python": r} for f, r in self.projects[name]]
        body = json.dumps({"name": name, "files": files}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(("soupsieve", "failed"), [("4.1.3", True), ("2.10", False)])
def test_a_locked_release_the_python_floor_cannot_install_is_named(
    tmp_path: Path, soupsieve: str, failed: bool
) -> None:
    """lockfile.py --python reads each pin's Requires-Python from the index and names the one to hold back."""
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        f"six==1.17.0 \\\n    --hash=sha256:00\nsoupsieve=={soupsieve} \\\n    --hash=sha256:11\n",
        encoding="utf-8",
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "PIP_INDEX_URL": f"http://127.0.0.1:{server.server_address[1]}/simple"}
        done = subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "lockfile.py"), "--python", "3.11", str(lock)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
    assert done.returncode == (1 if failed else 0), done.stderr
    if failed:
        assert "soupsieve==4.1.3 (Requires-Python >=3.11.5) cannot install on Python 3.11" in done.stderr
        assert "six" not in done.stderr
    else:
        assert done.stderr == ""
