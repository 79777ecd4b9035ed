"""The surfaces use the core only through the names core.api lists."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import core.api

ROOT = Path(__file__).resolve().parents[2]


def core_imports(package: str) -> list[tuple[str, str, str]]:
    """(file, module, name) for every ``from core… import name`` in ``package``."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "core":
                found += [(str(path.relative_to(ROOT)), node.module, a.name) for a in node.names]
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "core" for a in node.names), path
    return found


def test_bot_and_lsp_import_only_the_public_api() -> None:
    public = set(core.api.__all__)
    imports = core_imports("bot") + core_imports("lsp")
    assert imports, "the scan found nothing: the paths are wrong"
    outside = [f"{f}: from {m} import {n}" for f, m, n in imports if n not in public]
    assert outside == []
    for _, module, name in imports:  # the same object, not a namesake
        assert getattr(importlib.import_module(module), name) is getattr(core.api, name), (module, name)


def test_every_public_name_exists() -> None:
    assert len(set(core.api.__all__)) == len(core.api.__all__)
    assert all(hasattr(core.api, name) for name in core.api.__all__)
