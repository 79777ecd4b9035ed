"""`make vscode`'s build script produces a .vsix that VS Code can install: built here, then unpacked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.skips import unavailable

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "lsp" / "editors" / "vscode" / "build.sh"
# Status build.sh exits with when Node.js/npm cannot be installed or the npm registry is unreachable.
NO_NETWORK = 3

# Loads extension.js the way VS Code does (`vscode` is the host's module, stubbed here), so a
# dependency missing from the package's own node_modules fails the require.
PROBE = r"""
const Module = require('module');
const path = require('path');
const handler = {
  get: (t, k) => (k === '__esModule' ? false : k in t ? t[k] : new Proxy(function () {}, handler)),
  apply: () => new Proxy(function () {}, handler),
  construct: () => new Proxy({}, handler),
};
const load = Module._load;
Module._load = function (request, ...rest) {
  return request === 'vscode' ? new Proxy({}, handler) : load.call(this, request, ...rest);
};
const main = path.resolve(process.argv[2]);
const ext = require(main);
const client = require.resolve('vscode-languageclient/node', { paths: [path.dirname(main)] });
console.log(JSON.stringify({ exports: Object.keys(ext).sort(), client }));
"""


def _caret_minimum(spec: str) -> tuple[int, ...]:
    match = re.fullmatch(r"\^(\d+)\.(\d+)\.(\d+)", spec)
    assert match, f"engines.vscode should be a caret range, got {spec!r}"
    return tuple(int(part) for part in match.groups())


@pytest.fixture(scope="module")
def vsix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vscode")
    done = subprocess.run(
        ["bash", str(BUILD), str(out)], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode == NO_NETWORK:
        reason = f"the npm registry (or a way to install npm) is out of reach: {done.stderr.strip()}"
        unavailable(reason, ci_may_skip=True)
    assert done.returncode == 0, done.stdout + done.stderr
    built = sorted(out.glob("hearth-vscode-*.vsix"))
    assert len(built) == 1, list(out.iterdir())
    return built[0]


@pytest.mark.slow
def test_vsix_manifest_engines_and_bundled_language_client(vsix: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(vsix) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path)
    assert "extension.vsixmanifest" in names
    ext = tmp_path / "extension"
    manifest = json.loads((ext / "package.json").read_text(encoding="utf-8"))
    source = json.loads((ROOT / "lsp" / "editors" / "vscode" / "package.json").read_text(encoding="utf-8"))
    assert manifest["name"] == source["name"] == "hearth-vscode"
    assert vsix.name == f"hearth-vscode-{manifest['version']}.vsix"
    assert manifest["license"] == "Apache-2.0" and manifest["repository"]["url"].startswith("https://")
    assert (ext / "LICENSE.txt").read_text(encoding="utf-8").lstrip().startswith("Apache License")
    assert "Requirements" in (ext / "readme.md").read_text(encoding="utf-8")
    assert (ext / manifest["main"]).is_file()
    assert "extension/package-lock.json" not in names

    client_dir = ext / "node_modules" / "vscode-languageclient"
    client = json.loads((client_dir / "package.json").read_text(encoding="utf-8"))
    assert client["version"].split(".")[0] == "9", "package.json asks for vscode-languageclient ^9"
    # VS Code refuses to install an extension whose engine is older than its client library needs.
    assert _caret_minimum(manifest["engines"]["vscode"]) >= _caret_minimum(client["engines"]["vscode"])
    for dep in client["dependencies"]:
        assert (ext / "node_modules" / dep / "package.json").is_file(), f"{dep} is not bundled"

    node = shutil.which("node")
    assert node, "build.sh ran npm, so node is on PATH"
    probe = tmp_path / "probe.js"
    probe.write_text(PROBE, encoding="utf-8")
    loaded = subprocess.run(
        [node, str(probe), str(ext / manifest["main"])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={"PATH": str(Path(node).parent)},
    )
    assert loaded.returncode == 0, loaded.stderr
    result = json.loads(loaded.stdout)
    assert result["exports"] == ["activate", "deactivate"]
    assert Path(result["client"]).is_relative_to(ext / "node_modules")
