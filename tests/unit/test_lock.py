"""The locks install.sh installs from: whole, hashed, in step with pyproject.toml and this venv."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
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
                assert req.specifier.contains(lock[name], prereleases=True), f"{req} but the lock has {lock[name]}"
    # The runtime set is the dev set's base: the same versions where both have a package.
    assert {n: v for n, v in runtime.items() if dev.get(n) != v} == {}


@pytest.mark.skipif(bool(os.environ.get("HEARTH_NO_LOCK")), reason="installed from pyproject.toml (HEARTH_NO_LOCK)")
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
    assert wrong == {}, "the venv differs from deploy/requirements-dev.lock: rerun 'make test' (it reinstalls)"
