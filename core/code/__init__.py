"""Code use cases: explain, generate, generate tests, and the sandboxed test runner."""
