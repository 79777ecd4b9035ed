// Hearth for VS Code: starts `hearth lsp` over stdio; the code actions come from the server.
// Install: `make vscode` in the repository root builds the .vsix (see README.md here).
'use strict';
const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function serverOptions() {
  const cfg = vscode.workspace.getConfiguration('hearth');
  const args = [];
  if (cfg.get('config')) args.push('--config', cfg.get('config'));
  args.push('lsp');
  if (cfg.get('serverUrl')) args.push('--server', cfg.get('serverUrl'));
  const env = Object.assign({}, process.env);
  if (cfg.get('token')) env.HEARTH_LSP_TOKEN = cfg.get('token');
  return { command: cfg.get('path') || 'hearth', args, options: { env }, transport: TransportKind.stdio };
}

function activeArgument() {
  const editor = vscode.window.activeTextEditor;
  if (!editor) return undefined;
  const s = editor.selection;
  return {
    uri: editor.document.uri.toString(),
    range: { start: { line: s.start.line, character: s.start.character }, end: { line: s.end.line, character: s.end.character } },
  };
}

function activate(context) {
  client = new LanguageClient('hearth', 'Hearth', serverOptions(), {
    documentSelector: [{ scheme: 'file' }],
    outputChannelName: 'Hearth',
  });
  context.subscriptions.push(
    vscode.commands.registerCommand('hearth.askQuestion', async () => {
      const question = await vscode.window.showInputBox({ prompt: 'Ask Hearth about this workspace' });
      if (question) await client.sendRequest('workspace/executeCommand', { command: 'hearth.ask', arguments: [{ question }] });
    }),
    vscode.commands.registerCommand('hearth.runTestsAndRepair', async () => {
      const arg = activeArgument();
      if (arg) await client.sendRequest('workspace/executeCommand', { command: 'hearth.runTests', arguments: [Object.assign(arg, { fix: 'tests' })] });
    }),
    vscode.commands.registerCommand('hearth.runTestsAndFixCode', async () => {
      const arg = activeArgument();
      if (arg) await client.sendRequest('workspace/executeCommand', { command: 'hearth.runTests', arguments: [Object.assign(arg, { fix: 'code' })] });
    }),
  );
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
