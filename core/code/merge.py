"""New generated tests added to an existing test file without shadowing what is there.

Appending a second ``def test_add`` to a file that has one silently replaces the first (Python keeps
the last definition), so a person's test stops running. :func:`merge_tests` renames each generated
name that the file already defines (``test_add`` → ``test_add_2``; fixtures and helpers too, with
their uses in the generated code), drops import lines the file already has, and says what it did::

    merged = merge_tests(existing_text, generated_module)
    existing_text + merged.block   # merged.added, merged.renamed for the message to the user
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field

_DEF = re.compile(r"^(?:async\s+def|def|class)\s+([A-Za-z_]\w*)", re.MULTILINE)
_ASSIGNED = re.compile(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=", re.MULTILINE)


@dataclass(frozen=True)
class MergedTests:
    """What to append to the file, the tests it adds, and the generated names that were renamed."""

    block: str
    added: list[str]
    renamed: dict[str, str] = field(default_factory=dict)

    def summary(self, path: str) -> str:
        """One sentence for the person who asked: what was added where, and what was renamed."""
        if not self.added:
            return f"Hearth found no new tests to add to {path}."
        names = ", ".join(self.added)
        sentence = f"Hearth added {len(self.added)} test(s) to {path}: {names}."
        if self.renamed:
            pairs = ", ".join(f"{old} → {new}" for old, new in self.renamed.items())
            sentence += f" Renamed to keep your existing definitions: {pairs}."
        return sentence


def defined_names(source: str) -> set[str]:
    """Top-level names ``source`` defines (functions, classes, assignments, imports)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        # A file mid-edit still has its names: read the definition lines themselves.
        return set(_DEF.findall(source)) | set(_ASSIGNED.findall(source))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _imports(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {line.strip() for line in source.splitlines() if line.startswith(("import ", "from "))}
    return {ast.unparse(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)}


def _free(name: str, taken: set[str]) -> str:
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


def _rename(source: str, renames: dict[str, str]) -> str:
    """Replace NAME tokens (never text inside strings or comments) per ``renames``."""
    if not renames:
        return source
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.string in renames:
            edits.append((tok.start[0], tok.start[1], tok.end[1], renames[tok.string]))
    for row, start, end, new in reversed(edits):  # right to left keeps earlier offsets valid
        line = lines[row - 1]
        lines[row - 1] = line[:start] + new + line[end:]
    return "".join(lines)


def merge_tests(existing: str, generated: str) -> MergedTests:
    """The part of the generated module to append to ``existing`` (see the module docstring)."""
    tree = ast.parse(generated)  # the core validated it: a whole module with at least one test
    taken = defined_names(existing)
    ours = {
        n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    renames: dict[str, str] = {}
    for name in ours:
        if name in taken:
            new = _free(name, taken | set(ours) | set(renames.values()))
            renames[name] = new
    text = _rename(generated, renames)
    tree = ast.parse(text)
    have = _imports(existing)
    drop: set[int] = set()  # 0-based line numbers of imports the file already has
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom) and ast.unparse(node) in have:
            drop |= set(range(node.lineno - 1, (node.end_lineno or node.lineno)))
    first = tree.body[0] if tree.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        drop |= set(range(first.lineno - 1, (first.end_lineno or first.lineno)))  # a second module docstring
    kept = [line for i, line in enumerate(text.splitlines()) if i not in drop]
    block = re.sub(r"\n{4,}", "\n\n\n", "\n".join(kept)).strip("\n")
    added = [
        n.name
        for n in tree.body
        if (isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test"))
        or (isinstance(n, ast.ClassDef) and n.name.startswith("Test"))
    ]
    return MergedTests(block + "\n" if block else "", added, renames)
