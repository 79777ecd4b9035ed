"""What the model sees about a piece of code: the selection, its enclosing function/class, the imports.

::

    ctx = build_context(source, "pkg/mod.py", start_line=10, end_line=12)
    ctx.code            # the selection, or the enclosing function when the selection is empty
    ctx.prompt_context  # imports + enclosing definition + retrieved workspace chunks, for the prompt
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from core.errors import InputError

# File extension -> language name shown in prompts. Explain works for all of these.
LANGUAGES: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".swift": "swift",
    ".scala": "scala",
    ".sh": "shell",
    ".bash": "shell",
    ".sql": "sql",
    ".lua": "lua",
    ".r": "r",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".json": "json",
    ".md": "markdown",
    ".html": "html",
    ".css": "css",
    ".vim": "vim",
}
# Languages Hearth can generate, test and run (generated code is validated with Python's parser).
RUNNABLE = frozenset({"python"})
_IMPORT = re.compile(r"^\s*(import\s+\S|from\s+\S+\s+import\s)")
MAX_CODE_CHARS = 6000


def language_of(path: str, language_id: str | None = None) -> str | None:
    """The language of a file from its editor language id or its extension; None when unknown."""
    if language_id and language_id in set(LANGUAGES.values()):
        return language_id
    return LANGUAGES.get(PurePosixPath(path).suffix.lower())


def require_runnable(language: str | None, path: str) -> str:
    """``language`` when Hearth can generate and run tests for it; otherwise a clear InputError."""
    if language in RUNNABLE:
        return language
    what = f"a {language} file" if language else "a file of a language Hearth does not know"
    raise InputError(
        f"{PurePosixPath(path).name} is {what}: Hearth generates and runs code for Python only "
        "(Explain works for any language)."
    )


@dataclass(frozen=True)
class Definition:
    """A function or class in a Python file (0-based inclusive lines, decorators included)."""

    name: str
    kind: str  # "function" | "class"
    start_line: int
    end_line: int
    text: str


@dataclass(frozen=True)
class CodeContext:
    """The code a request is about, and what surrounds it."""

    path: str
    language: str
    source: str
    selection: str
    start_line: int
    end_line: int
    enclosing: Definition | None = None
    imports: tuple[str, ...] = ()
    retrieved: tuple[str, ...] = field(default=())

    @property
    def code(self) -> str:
        """The selection, or the enclosing definition when nothing is selected."""
        if self.selection.strip():
            return self.selection[:MAX_CODE_CHARS]
        if self.enclosing is not None:
            return self.enclosing.text[:MAX_CODE_CHARS]
        raise InputError(
            "Nothing to work on: select some code, or put the cursor inside a function or class.",
            key="empty_code",
        )

    @property
    def prompt_context(self) -> str:
        """Imports, the enclosing definition (when it is not the code itself) and retrieved chunks."""
        parts: list[str] = []
        if self.imports:
            parts.append("\n".join(self.imports))
        if self.enclosing is not None and self.selection.strip() and self.enclosing.text != self.selection:
            parts.append(f"# enclosing {self.enclosing.kind} {self.enclosing.name}\n{self.enclosing.text}")
        parts.extend(self.retrieved)
        return "\n\n".join(parts)[:MAX_CODE_CHARS]

    def with_retrieved(self, chunks: list[str]) -> CodeContext:
        """A copy with retrieved workspace chunks added."""
        return replace(self, retrieved=tuple(chunks))


def definitions(source: str) -> list[Definition]:
    """Every function and class in ``source`` (outer before inner); empty if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines()
    found: list[Definition] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            end = (node.end_lineno or node.lineno) - 1
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            found.append(Definition(node.name, kind, start, end, "\n".join(lines[start : end + 1])))
    return found


def enclosing_definition(source: str, start_line: int, end_line: int) -> Definition | None:
    """The innermost function or class containing lines ``start_line``..``end_line``."""
    best: Definition | None = None
    for d in definitions(source):
        if d.start_line <= start_line and end_line <= d.end_line:
            if best is None or d.end_line - d.start_line < best.end_line - best.start_line:
                best = d
    return best


def module_imports(source: str) -> tuple[str, ...]:
    """The file's import lines (top level or not), de-duplicated."""
    seen: dict[str, None] = {}
    for line in source.splitlines():
        if _IMPORT.match(line):
            seen.setdefault(line.strip(), None)
    return tuple(seen)[:40]


def build_context(
    source: str,
    path: str,
    start_line: int,
    end_line: int,
    *,
    selection: str = "",
    language: str | None = None,
) -> CodeContext:
    """Assemble the context for lines ``start_line``..``end_line`` (0-based) of ``source``."""
    if "\x00" in source:
        raise InputError(f"{path} looks like a binary file; Hearth works on text source files.")
    lang = language or language_of(path) or "text"
    enclosing = enclosing_definition(source, start_line, end_line) if lang == "python" else None
    return CodeContext(
        path=path,
        language=lang,
        source=source,
        selection=selection,
        start_line=start_line,
        end_line=end_line,
        enclosing=enclosing,
        imports=module_imports(source) if lang == "python" else (),
    )
