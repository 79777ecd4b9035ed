"""What the editor sends with each `workspace/executeCommand`, and what it gets back.

pygls structures a command's JSON argument into the type its handler is annotated with, and turns
the returned dataclass into JSON, so no handler parses ``list(args)``. An argument of the wrong
shape is refused with :func:`usage`, one sentence per command::

    {"command": "hearth.runTests", "arguments": [{"uri": "file:///ws/mod.py", "line": 9, "fix": "tests"}]}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lsprotocol import types

from core.code.testrun import Failure
from core.code.workbench import Fix

EXPLAIN = "hearth.explain"
GENERATE = "hearth.generate"
GENERATE_TESTS = "hearth.generateTests"
RUN_TESTS = "hearth.runTests"
ASK = "hearth.ask"
COMMANDS = (EXPLAIN, GENERATE, GENERATE_TESTS, RUN_TESTS, ASK)

_PLACE = "{'uri': ..., 'range': ...}"
_USAGE = {
    EXPLAIN: f"an argument {_PLACE} (code actions pass it)",
    GENERATE: f"an argument {_PLACE} (code actions pass it)",
    GENERATE_TESTS: f"an argument {_PLACE} (code actions pass it)",
    RUN_TESTS: "an argument {'uri': ..., 'range': ..., 'fix': 'tests' or 'code' (or left out)}",
    ASK: "a question, e.g. {'question': 'Where is auth handled?'}",
}


def usage(command: str) -> str:
    """The sentence that refuses a missing or malformed argument of ``command`` (or an unknown command)."""
    if command not in _USAGE:
        return f"Unknown command {command!r}; available: {', '.join(COMMANDS)}."
    return f"{command} needs {_USAGE[command]}."


@dataclass(frozen=True)
class CodeArgs:
    """A document and the range a command is about (code actions), or just a line (key bindings)."""

    uri: str
    range: types.Range | None = None
    line: int = 0


@dataclass(frozen=True)
class RunTestsArgs(CodeArgs):
    """Run the tests of the document; ``fix`` repairs the tests or the function at the cursor."""

    fix: Fix | None = None


@dataclass(frozen=True)
class AskArgs:
    """A question about the workspace."""

    question: str


@dataclass(frozen=True)
class Shown:
    """An explanation or answer, opened as ``uri`` (None: shown as a message instead)."""

    markdown: str
    uri: str | None
    model: str
    backend: str


@dataclass(frozen=True)
class Applied:
    """Generated code and whether the editor applied the edit."""

    applied: bool
    code: str
    model: str
    backend: str


@dataclass(frozen=True)
class GeneratedTests:
    """A generated test file (workspace-relative ``path``) and whether it reached the editor."""

    applied: bool
    uri: str
    path: str
    code: str
    model: str
    backend: str


@dataclass(frozen=True)
class RunReport:
    """A sandboxed test run and what a repair did."""

    passed: int
    failed: int
    ok: bool
    summary: str
    repaired: bool
    timed_out: bool
    output: str
    notes: list[str] = field(default_factory=list)
    isolation: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
