"""The Hearth language server: explain, generate, write and run tests from any LSP editor."""
