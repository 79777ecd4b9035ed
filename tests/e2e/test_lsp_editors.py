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
        unavailable(
            "node is not installed (make vscode installs it); only the JavaScript syntax check needs it"
        )
    subprocess.run([node, "--check", str(VSCODE / "extension.js")], check=True, capture_output=True)


# Loads extension.js with `vscode` and `vscode-languageclient/node` stubbed, activates it, and asks
# its inline-completion provider for a suggestion, as VS Code would while the user types.
INLINE_PROBE = r"""
const Module = require('module');
const sent = [];
const features = [];
let provider;
class InlineCompletionItem { constructor(text, range) { this.insertText = text; this.range = range; } }
const vscode = {
  InlineCompletionItem,
  SnippetString: class { constructor(v) { this.value = v; } },
  InlineCompletionTriggerKind: { Invoke: 0, Automatic: 1 },
  workspace: { getConfiguration: () => ({ get: () => undefined }) },
  commands: { registerCommand: () => ({}) },
  window: {},
  languages: { registerInlineCompletionItemProvider: (selector, p) => { provider = p; return {}; } },
};
const State = { Running: 2 };
class LanguageClient {
  constructor() { this.state = State.Running; this.protocol2CodeConverter = { asRange: (r) => ['range', r] }; }
  registerFeature(f) { features.push(f); }
  start() { return Promise.resolve(); }
  sendRequest(method, params, token) {
    sent.push({ method, params, token });
    return Promise.resolve({ items: [{ insertText: 'return a + b', range: { start: params.position, end: params.position } }] });
  }
}
const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === 'vscode') return vscode;
  if (request === 'vscode-languageclient/node') return { LanguageClient, State, TransportKind: { stdio: 0 } };
  return load.call(this, request, ...rest);
};
const ext = require(process.argv[2]);
ext.activate({ subscriptions: { push: () => {} } });
const caps = {};
features.forEach((f) => f.fillClientCapabilities && f.fillClientCapabilities(caps));
const token = { isCancellationRequested: false };
const doc = { uri: { toString: () => 'file:///ws/m.py' } };
provider.provideInlineCompletionItems(doc, { line: 3, character: 4 }, { triggerKind: 1 }, token).then((items) => {
  const requests = sent.map((s) => ({ method: s.method, params: s.params, token: s.token === token }));
  console.log(JSON.stringify({ caps, sent: requests, items }));
});
"""


def test_vscode_extension_shows_the_servers_inline_suggestions(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (make vscode installs it); the extension's provider needs it")
    probe = tmp_path / "probe.js"
    probe.write_text(INLINE_PROBE)
    done = subprocess.run(
        [node, str(probe), str(VSCODE / "extension.js")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout)
    # The client tells the server it shows suggestions inline (so none are duplicated as items) …
    assert result["caps"]["textDocument"]["inlineCompletion"] == {"dynamicRegistration": False}
    # … and asks with VS Code's cancellation token, so a stale request is cancelled ($/cancelRequest).
    [request] = result["sent"]
    assert request["method"] == "textDocument/inlineCompletion" and request["token"] is True
    assert request["params"]["position"] == {"line": 3, "character": 4}
    assert request["params"]["textDocument"]["uri"] == "file:///ws/m.py"
    [item] = result["items"]
    assert item["insertText"] == "return a + b"
