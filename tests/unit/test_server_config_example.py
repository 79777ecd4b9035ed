"""deploy/hearth.example.yaml is generated from the Settings tree and never drifts from it."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from core.config import Settings, load_settings
from server.cli import main
from server.config_example import render_example

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "hearth.example.yaml"


def test_committed_example_equals_the_generated_output() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == render_example(), (
        "deploy/hearth.example.yaml is stale — regenerate it: "
        "hearth config example -o deploy/hearth.example.yaml"
    )


def test_cli_prints_the_same_text() -> None:
    result = CliRunner().invoke(main, ["config", "example"])
    assert result.exit_code == 0
    assert result.output == render_example()


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, info in model.model_fields.items():
        keys.add(prefix + name)
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys |= _keys(ann, f"{prefix}{name}.")
    return keys


def test_every_settings_key_is_documented() -> None:
    text = render_example()
    documented = set()
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if stripped.startswith("# ") and indent == 0 and stripped[2:].split(":")[0] == "home":
            documented.add("home")
            continue
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        key = stripped.split(":", 1)[0]
        stack = [(i, k) for i, k in stack if i < indent]
        documented.add(".".join([k for _, k in stack] + [key]))
        stack.append((indent, key))
    assert _keys(Settings) <= documented


def test_example_loads_back_into_the_default_settings(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    target = tmp_path / "hearth.yaml"
    target.write_text(yaml.safe_dump(data | {"home": str(tmp_path / "home")}), encoding="utf-8")
    loaded = load_settings(target)
    assert loaded.model_dump() == Settings(home=tmp_path / "home").model_dump()
