// Hearth for VS Code: starts `hearth lsp` over stdio; the code actions come from the server, and so
// do the suggestions shown as ghost text while you type (textDocument/inlineCompletion).
// Install: `make vscode` in the repository root builds the .vsix (see README.md here).
'use strict';
const vscode = require('vscode');
const { LanguageClient, State, TransportKind } = require('vscode-languageclient/node');

let client;

// vscode-languageclient 9 predates LSP 3.18's inline completion: declare it ourselves, so the server
// knows this editor shows suggestions inline (and keeps them out of the completion list).
const inlineCompletionCapability = {
  fillClientCapabilities(capabilities) {
    capabilities.textDocument = capabilities.textDocument || {};
    capabilities.textDocument.inlineCompletion = { dynamicRegistration: false };
  },
  initialize() {},
  getState() { return { kind: 'static' }; },
  dispose() {},
};

// Ghost text: each request carries VS Code's cancellation token, so a keystroke that makes it stale
// sends $/cancelRequest and the server stops generating.
const inlineSuggestions = {
  async provideInlineCompletionItems(document, position, context, token) {
    if (!client || client.state !== State.Running) return undefined;
    const params = {
      textDocument: { uri: document.uri.toString() },
      position: { line: position.line, character: position.character },
      context: { triggerKind: context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke ? 1 : 2 },
    };
    let result;
    try {
      result = await client.sendRequest('textDocument/inlineCompletion', params, token);
    } catch (err) {
      return undefined; // cancelled, or the server has none: nothing to show, nothing to report
    }
    const items = Array.isArray(result) ? result : (result && result.items) || [];
    return items.map((item) => new vscode.InlineCompletionItem(
      typeof item.insertText === 'string' ? item.insertText : new vscode.SnippetString(item.insertText.value),
      item.range ? client.protocol2CodeConverter.asRange(item.range) : undefined,
    ));
  },
};

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
  client.registerFeature(inlineCompletionCapability);
  context.subscriptions.push(
    vscode.languages.registerInlineCompletionItemProvider({ scheme: 'file' }, inlineSuggestions),
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
