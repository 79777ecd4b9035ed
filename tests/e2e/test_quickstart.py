"""The README's quick start, as written: the Makefile's `demo` steps run from a clean copy of the demo.

The commands come from the Makefile itself (the `DEMO :=` line and the `demo:` recipe), so a change
there that breaks the first thing a new user runs breaks this test too.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEARTH = str(Path(sys.executable).with_name("hearth"))


def demo_steps(makefile: str) -> list[list[str]]:
    """The `hearth` argument lists of the `demo:` recipe, with `$(DEMO)` expanded to its options."""
    demo_def = re.search(r"^DEMO := (.+)$", makefile, re.MULTILINE)
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert demo_def and recipe, "the Makefile has no DEMO variable or demo target"
    # DEMO := HEARTH_HOME=… HF_HUB_OFFLINE=1 $(BIN)/hearth --config deploy/demo/hearth.yaml
    words = shlex.split(demo_def.group(1))
    start = next(i for i, w in enumerate(words) if w.endswith("/hearth"))
    options = words[start + 1 :]
    steps = []
    for line in recipe.group(1).splitlines():
        parts = shlex.split(line.strip())
        assert parts[0] == "$(DEMO)", f"a demo step that is not a hearth command: {line!r}"
        steps.append(options + parts[1:])
    return steps


def test_the_readme_quick_start_is_make_demo_then_make_test() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    steps = demo_steps((ROOT / "Makefile").read_text(encoding="utf-8"))
    assert [s[2] for s in steps] == ["index", "ask"]


@pytest.mark.llama
@pytest.mark.slow
def test_the_demo_steps_index_and_answer_with_sources(tmp_path: Path) -> None:
    demo = tmp_path / "deploy" / "demo"
    shutil.copytree(ROOT / "deploy" / "demo", demo, ignore=shutil.ignore_patterns("*.jsonl"))
    env = {**os.environ, "HEARTH_HOME": str(tmp_path / ".hearth-demo"), "HF_HUB_OFFLINE": "1"}
    env.pop("HEARTH_CONFIG", None)
    outputs = []
    for args in demo_steps((ROOT / "Makefile").read_text(encoding="utf-8")):
        done = subprocess.run(
            [HEARTH, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    indexed, answered = outputs
    counts = re.search(r"handbook: (\d+) added, .*; (\d+) chunks", indexed)
    handbook = len(list((demo / "handbook").rglob("*.md")))
    assert counts and int(counts.group(1)) == handbook and int(counts.group(2)) > handbook, indexed
    assert "Sources:" in answered, answered
    sources = answered.split("Sources:", 1)[1]
    assert "leave" in sources.lower(), answered  # the question is about time off: the leave policy
    assert "\x1b[" not in answered  # no spinner or colour codes on a pipe
