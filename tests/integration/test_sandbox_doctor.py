"""`hearth doctor` probes the real sandbox and reports each isolation property on a line of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.cli import doctor_cmd, main
from tests.fixtures.core import make_settings

PROPERTIES = {
    "network isolated",
    "sockets unreachable",
    "home unreadable",
    "host processes hidden",
    "read-only outside the copy",
    "no capabilities",
    "memory bounded",
    "processes bounded",
    "disk bounded",
    "copy removed",
}


def test_doctor_reports_each_sandbox_property(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "hearth.db").write_text("secret")
    checks = {c.name: c for c in doctor_cmd._sandbox(make_settings(tmp_path))}
    assert set(checks) == {f"sandbox: {p}" for p in PROPERTIES}
    failed = {name: c.detail for name, c in checks.items() if not c.ok}
    assert not failed
    assert "not mounted" in checks["sandbox: home unreadable"].detail


def test_doctor_json_has_the_sandbox_lines(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(_config(tmp_path)), "doctor", "--no-load", "--json"])
    names = {c["name"] for c in json.loads(result.output)}
    assert {f"sandbox: {p}" for p in PROPERTIES} <= names


def test_a_sandbox_that_cannot_start_is_a_warning_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap anywhere
    monkeypatch.setattr("core.code.sandbox._SAFE_PATH", str(tmp_path))
    (check,) = doctor_cmd._sandbox(make_settings(tmp_path))
    assert not check.ok and not check.required
    assert "bubblewrap" in check.detail and "never run unsandboxed" in check.detail


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(f"home: {tmp_path / 'home'}\n")
    return cfg
