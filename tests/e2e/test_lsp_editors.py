"""The shipped VS Code extension is well-formed and uses commands the server registers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from lsp.server import COMMANDS
from tests.fixtures.skips import unavailable

VSCODE = Path(__file__).resolve().parents[2] / "lsp" / "editors" / "vscode"


def test_vscode_extension_manifest_and_script() -> None:
    manifest = json.loads((VSCODE / "package.json").read_text())
    assert (VSCODE / manifest["main"]).is_file()
    assert "vscode-languageclient" in manifest["dependencies"]
    assert set(manifest["contributes"]["configuration"]["properties"]) == {
        "hearth.path",
        "hearth.config",
        "hearth.serverUrl",
        "hearth.token",
    }
    script = (VSCODE / "extension.js").read_text()
    for command in ("hearth.ask", "hearth.runTests"):
        assert command in COMMANDS and f"'{command}'" in script
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (make vscode installs it); only the JavaScript syntax check needs it")
    subprocess.run([node, "--check", str(VSCODE / "extension.js")], check=True, capture_output=True)
