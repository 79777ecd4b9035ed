"""Turning model output into code that is safe to apply: targets, preambles, extraction, validation.

The default model is a small *base* model, so prompts end with a code fence and a preamble (the
comment or function header to continue, or the test file's imports and ``def test_``); the model
continues it and stops at the closing fence. Instruct models answer with a fenced block instead.
Both shapes are accepted here; anything that does not parse as Python is refused, never applied.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import PurePosixPath

from core.code.context import definitions
from core.errors import InputError

FENCE = "```"
_FENCE_OPEN = re.compile(r"^[ \t]*```[\w+-]*[ \t]*\n", re.M)
_COMMENT = re.compile(r"^\s*#")
_BODYLESS = ("pass", "...", "raise NotImplementedError", "raise NotImplementedError()")


class GenerationRejected(InputError):
    """The model's output was not usable code (no code, or not valid Python); nothing was applied.

    A refusal of its own (``code_unusable``, HTTP 422): the request was fine, the model's answer was not.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, key="code_unusable", detail=message)


@dataclass(frozen=True)
class GenerationTarget:
    """Where generated code goes: replace lines ``start_line``..``end_line`` (0-based, inclusive)."""

    kind: str  # "function" (fill a body) | "comment" (code after a comment/TODO)
    preamble: str  # dedented text the model continues
    indent: str
    start_line: int
    end_line: int
    name: str = ""


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def find_target(source: str, line: int) -> GenerationTarget:
    """The comment block, TODO or docstring-only function at ``line`` that Generate should implement."""
    lines = source.splitlines()
    if not lines or not 0 <= line < len(lines):
        raise InputError(
            "Put the cursor on a comment, a TODO or a function with a docstring, then run Generate."
        )
    for d in sorted(definitions(source), key=lambda d: d.end_line - d.start_line):
        if d.kind == "function" and d.start_line <= line <= d.end_line and _is_bodyless(d.text):
            head = _function_head(d.text)
            indent = _indent_of(lines[d.start_line])
            return GenerationTarget(
                "function", textwrap.dedent(head), indent, d.start_line, d.end_line, d.name
            )
    if _COMMENT.match(lines[line]):
        start = end = line
        while start > 0 and _COMMENT.match(lines[start - 1]):
            start -= 1
        while end + 1 < len(lines) and _COMMENT.match(lines[end + 1]):
            end += 1
        block = "\n".join(lines[start : end + 1])
        return GenerationTarget("comment", textwrap.dedent(block), _indent_of(lines[start]), start, end)
    raise InputError(
        "Nothing to generate here: put the cursor on a comment or TODO describing the code, or inside a "
        "function that has a docstring and no body yet."
    )


def rewrite_target(source: str, line: int, failures: str) -> GenerationTarget:
    """The function at ``line`` as a target to rewrite so that ``failures`` (test output) go away.

    The failures travel as comments above the signature, so the same prompt works for a base model
    continuing the code and for an instruct model behind a remote server.
    """
    funcs = [d for d in definitions(source) if d.kind == "function" and d.start_line <= line <= d.end_line]
    if not funcs:
        raise InputError("Put the cursor inside the function to repair, then run the tests with fix 'code'.")
    d = min(funcs, key=lambda d: d.end_line - d.start_line)
    text = f"Fix this function; these tests fail:\n{failures}"
    notes = "\n".join(f"# {row}"[:200] for row in text.splitlines())
    head = textwrap.dedent(_function_head(d.text))
    lines = source.splitlines()
    return GenerationTarget(
        "function", f"{notes}\n{head}", _indent_of(lines[d.start_line]), d.start_line, d.end_line, d.name
    )


def splice(source: str, target: GenerationTarget, code: str) -> str:
    """``source`` with the target's lines replaced by dedented ``code`` re-indented in place."""
    lines = source.splitlines(keepends=True)
    new = indent_block(code, target.indent)
    if not new.endswith("\n"):
        new += "\n"
    return "".join(lines[: target.start_line]) + new + "".join(lines[target.end_line + 1 :])


def _is_bodyless(func_text: str) -> bool:
    """Whether a function has only a docstring and/or pass/.../NotImplementedError."""
    try:
        node = ast.parse(textwrap.dedent(func_text)).body[0]
    except (SyntaxError, IndexError):
        return False
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    body = list(node.body)
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    return all(ast.unparse(stmt).strip() in _BODYLESS for stmt in body)


def _function_head(func_text: str) -> str:
    """Decorators, signature and docstring of a function — the part the model continues."""
    dedented = textwrap.dedent(func_text)
    node = ast.parse(dedented).body[0]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    first = node.body[0]
    keep_to = (
        first.end_lineno
        if isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        else first.lineno - 1
    )
    lines = dedented.splitlines()
    return "\n".join(lines[: keep_to or 1]).rstrip()


def continue_lines(preamble: str, text: str) -> str:
    """Join a line-complete preamble and the model's continuation, fixing the continuation's indentation."""
    last = preamble.rstrip("\n").splitlines()[-1] if preamble.strip() else ""
    expected = _indent_of(last)
    if last.rstrip().endswith(":"):
        expected += "    "
    elif last.lstrip().startswith("#"):
        expected = ""
    lines = text.lstrip("\n").splitlines()
    if not lines:
        return preamble + "\n"
    delta = len(expected) - len(_indent_of(lines[0]))
    if delta > 0:
        lines = [" " * delta + line if line.strip() else line for line in lines]
    elif delta < 0:
        lines = [line[min(-delta, len(_indent_of(line))) :] for line in lines]
    return preamble + "\n" + "\n".join(lines)


def _fenced(text: str) -> str | None:
    """The first fenced block in ``text`` (to its closing fence or the end), or None."""
    match = _FENCE_OPEN.search(text)
    if match is None:
        return None
    body = text[match.end() :]
    close = body.find(FENCE)
    return body if close < 0 else body[:close]


def _parsable_prefix(code: str) -> ast.Module | None:
    """Parse ``code``, dropping trailing lines (an answer cut at max_tokens) until it parses."""
    lines = code.rstrip().splitlines()
    while lines:
        try:
            return ast.parse("\n".join(lines))
        except SyntaxError:
            lines.pop()
    return None


def _source_of(code: str, nodes: list[ast.stmt]) -> str:
    lines = code.splitlines()
    start = min([nodes[0].lineno] + [d.lineno for d in getattr(nodes[0], "decorator_list", [])]) - 1
    end = nodes[-1].end_lineno or nodes[-1].lineno
    return "\n".join(lines[start:end]).rstrip() + "\n"


def extract_generated(output: str, target: GenerationTarget) -> str:
    """The code to put at ``target`` (dedented), from the model's output; GenerationRejected if unusable."""
    block = _fenced(output)
    if block is not None:
        code = textwrap.dedent(block)
        if target.kind == "function" and f"def {target.name}" not in code:
            code = continue_lines(target.preamble, code)
        elif target.kind == "comment" and target.preamble.strip() not in code:
            code = target.preamble + "\n" + code
    else:
        code = continue_lines(target.preamble, output)
    tree = _parsable_prefix(code)
    if tree is None or not tree.body:
        raise GenerationRejected(
            "The model's answer was not valid Python, so nothing was changed — try again "
            "or describe the code more precisely."
        )
    if target.kind == "function":
        func = next(
            (
                n
                for n in tree.body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == target.name
            ),
            None,
        )
        if func is None:
            raise GenerationRejected(
                f"The model did not write a body for {target.name}(), so nothing was changed."
            )
        func_src = _source_of(code, [func])
        if _is_bodyless(func_src):
            raise GenerationRejected(
                f"The model left {target.name}() without a body, so nothing was changed."
            )
        return func_src
    # Keep leading imports and the first definition/statement the comment asked for.
    kept: list[ast.stmt] = []
    for node in tree.body:
        kept.append(node)
        if not isinstance(node, ast.Import | ast.ImportFrom):
            break
    comment = target.preamble.rstrip() + "\n"
    src = _source_of(code, kept)
    return comment + src if not src.startswith(comment) else src


def indent_block(code: str, indent: str) -> str:
    """Re-indent dedented ``code`` to ``indent`` (blank lines stay empty)."""
    return "".join(indent + line if line.strip() else line for line in code.splitlines(keepends=True))


# ---- tests -------------------------------------------------------------------------------------


def module_name(path: str) -> str:
    """The import name of a workspace-relative Python file: ``pkg/mod.py`` -> ``pkg.mod``."""
    parts = list(PurePosixPath(path.replace("\\", "/")).with_suffix("").parts)
    if parts and parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    name = ".".join(p for p in parts if p not in ("", "."))
    if not name or not all(p.isidentifier() for p in name.split(".")):
        raise InputError(f"{path} is not importable as a Python module (its name is not an identifier).")
    return name


def public_names(code: str) -> list[str]:
    """Top-level functions and classes defined in ``code`` that tests can import."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]


def preamble_for_tests(code: str, path: str) -> str:
    """Imports for a pytest file about ``code`` from ``path``, then the start of a first test.

    For a function ``f`` it ends in ``def test_f():\n    assert f(`` — a base model then writes a
    concrete call and expected value, instead of a test with made-up parameters pytest cannot fill.
    """
    names = public_names(code)
    module = module_name(path)
    imports = f"from {module} import {', '.join(names)}" if names else f"import {module}"
    funcs = [n for n in public_functions(code) if not n.startswith("_")]
    if funcs:
        return f"import pytest\n\n{imports}\n\n\ndef test_{funcs[0]}():\n    assert {funcs[0]}("
    return f"import pytest\n\n{imports}\n\n\ndef test_"


def is_test_module(text: str) -> bool:
    """Whether ``text`` is already a whole Python module with a test function (not a fragment)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    return any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test") for n in tree.body
    )


def with_imports(module: str, preamble: str) -> str:
    """``module`` with the preamble's imports it lacks put first, so it runs on its own.

    A model that answers with a fenced block of tests often leaves out ``from calc import add``;
    the file it lands in, or a REST client saving it, would then fail with a NameError.
    """
    have = {ast.unparse(n) for n in ast.parse(module).body if isinstance(n, ast.Import | ast.ImportFrom)}
    head = _parsable_prefix(preamble)  # the preamble ends inside a first test: its imports parse
    wanted = [n for n in head.body if isinstance(n, ast.Import | ast.ImportFrom)] if head else []
    missing = [ast.unparse(n) for n in wanted if ast.unparse(n) not in have]
    return "\n".join(missing) + "\n\n\n" + module if missing else module


def public_functions(code: str) -> list[str]:
    """Top-level function names in ``code``."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def path_for_tests(path: str, *, has_tests_dir: bool) -> str:
    """Where the tests for ``path`` go: ``tests/test_<name>.py`` if a tests/ folder exists, else beside it."""
    p = PurePosixPath(path)
    if p.name.startswith("test_"):
        return path
    name = f"test_{p.stem}.py"
    return str(PurePosixPath("tests") / name) if has_tests_dir else str(p.with_name(name))


def extract_tests(output: str, preamble: str) -> str:
    """A pytest module from the model's output; GenerationRejected unless it parses and has a test."""
    block = _fenced(output)
    code = textwrap.dedent(block) if block is not None else preamble + output
    tree = _parsable_prefix(code)
    if tree is None:
        raise GenerationRejected("The model's tests were not valid Python, so no test file was written.")
    tests = [
        n
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test")
    ]
    if not tests:
        raise GenerationRejected("The model wrote no test function, so no test file was written.")
    # Keep everything up to the last complete test function; later rambling is dropped.
    last = tree.body.index(tests[-1])
    return _source_of(code, tree.body[: last + 1])
