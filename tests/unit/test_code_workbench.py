"""The code workbench over the in-process CodeService and a scripted backend: generate, write tests,
run them in the real sandbox, repair the tests or the code, in bounded rounds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from core.assistant import Assistant
from core.code.context import build_context
from core.code.generation import GenerationRejected
from core.code.sandbox import Sandbox
from core.code.service import CodeService
from core.code.workbench import CodeWorkbench
from core.errors import InputError
from core.llm.base import Message
from core.llm.fake import FakeBackend
from core.llm.router import Router
from tests.fixtures.core import make_settings

SOURCE = 'def add(a, b):\n    """Add two numbers."""\n    ...\n'
CALC = "def add(a, b):\n    return a + b\n"


def _bench(
    tmp_path: Path, reply: object, *, attempts: int = 2, **sandbox: object
) -> tuple[CodeWorkbench, FakeBackend]:
    settings = make_settings(tmp_path, sandbox={"timeout_s": 30, **sandbox})
    backend = FakeBackend(reply=reply)  # type: ignore[arg-type]
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    bench = CodeWorkbench(CodeService(assistant), Sandbox(settings.sandbox), repair_attempts=attempts)
    return bench, backend


def _workspace(tmp_path: Path, **files: str) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    for name, text in files.items():
        (ws / name.replace("__", "/")).write_text(text)
    return ws


async def test_generate_continues_the_function_head(tmp_path: Path) -> None:
    bench, backend = _bench(tmp_path, "\n    return a + b\n\n\ndef extra():\n    pass")
    made = await bench.generate(build_context(SOURCE, "m.py", 1, 1))
    assert made.code == 'def add(a, b):\n    """Add two numbers."""\n    return a + b'
    assert (made.target.start_line, made.target.end_line) == (0, 2)
    options = backend.calls[0].options
    assert options.answer_prefix.startswith("```python\ndef add(a, b):") and "\n```" in options.stop


async def test_generate_refuses_prose(tmp_path: Path) -> None:
    bench, _ = _bench(tmp_path, "Sorry, as a language model I cannot write this.")
    with pytest.raises(GenerationRejected, match="nothing was changed"):
        await bench.generate(build_context(SOURCE, "m.py", 1, 1))


async def test_generate_refuses_other_languages_before_the_model(tmp_path: Path) -> None:
    bench, backend = _bench(tmp_path, "x")
    with pytest.raises(InputError, match="Python only"):
        await bench.generate(build_context("// TODO: sort\n", "main.go", 0, 0))
    assert backend.calls == []


def _tests_reply(messages: Sequence[Message]) -> str:
    if "These tests failed" in messages[-1].content:
        return "2, 2) == 4\n"
    return "2, 2) == 5\n"


async def test_write_run_and_repair_tests_in_the_sandbox(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, **{"calc.py": CALC})
    bench, backend = _bench(tmp_path, _tests_reply)
    made = await bench.write_tests(build_context(CALC, "calc.py", 1, 1), ws)
    assert made.path == "test_calc.py"
    assert made.code.startswith("import pytest\n\nfrom calc import add\n")
    overlay = {"test_calc.py": made.code}
    run = await bench.run_file(ws, "test_calc.py", overlay)
    assert not run.ok and run.failures[0].line == made.code.splitlines().index("    assert add(2, 2) == 5")
    assert "assert 4 == 5" in run.failures[0].message
    fixed, text = await bench.repair_tests(ws, run, overlay, ("calc.py", CALC))
    assert fixed.ok and text is not None and "add(2, 2) == 4" in text
    assert fixed.notes == ["Repair 1: test_calc.py: 1 passed, 0 failed."]
    assert len(backend.calls) == 2
    assert not (ws / "test_calc.py").exists()  # runs happen on copies; applying is the editor's job


async def test_tests_go_to_the_tests_folder_and_a_test_file_is_refused(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, **{"calc.py": CALC})
    (ws / "tests").mkdir()
    bench, backend = _bench(tmp_path, _tests_reply)
    assert (await bench.write_tests(build_context(CALC, "calc.py", 1, 1), ws)).path == "tests/test_calc.py"
    with pytest.raises(InputError, match="already a test file"):
        await bench.write_tests(build_context("def test_x():\n    pass\n", "tests/test_calc.py", 0, 0), ws)
    assert len(backend.calls) == 1


async def test_run_tests_repairs_the_tests_when_asked(tmp_path: Path) -> None:
    wrong = "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 5\n"
    ws = _workspace(tmp_path, **{"calc.py": CALC, "test_calc.py": wrong})
    bench, backend = _bench(tmp_path, _tests_reply)
    ctx = build_context(CALC, "calc.py", 1, 1)
    plain = await bench.run_tests(ctx, ws, {})
    assert not plain.run.ok and not plain.repaired and backend.calls == []  # no repair unless asked
    outcome = await bench.run_tests(ctx, ws, {}, fix="tests")
    assert outcome.run.ok and outcome.repaired and outcome.tests == wrong
    assert outcome.repaired_tests is not None and outcome.texts["test_calc.py"] == outcome.repaired_tests
    # From the test file itself, the module under test is found by its import.
    from_tests = await bench.run_tests(build_context(wrong, "test_calc.py", 4, 4), ws, {}, fix="tests")
    assert from_tests.run.ok and from_tests.repaired_tests is not None


async def test_run_tests_repairs_the_function_under_test(tmp_path: Path) -> None:
    buggy = 'def add(a, b):\n    """Add two numbers."""\n    return a - b\n'
    tests = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    ws = _workspace(tmp_path, **{"calc.py": buggy, "test_calc.py": tests})
    prompts: list[str] = []

    def reply(messages: Sequence[Message]) -> str:
        prompts.append(messages[-1].content)
        return "\n    return a + b\n"

    bench, _ = _bench(tmp_path, reply)
    outcome = await bench.run_tests(build_context(buggy, "calc.py", 2, 2), ws, {}, fix="code")
    assert outcome.run.ok and outcome.repaired_code is not None
    assert outcome.repaired_code.code.endswith("return a + b")
    assert (outcome.repaired_code.target.start_line, outcome.repaired_code.target.end_line) == (0, 2)
    assert "assert -1 == 3" in prompts[0]  # the failure reached the model
    assert outcome.texts["calc.py"] == outcome.repaired_code.source
    with pytest.raises(InputError, match="inside the function"):
        await bench.run_tests(build_context("\n\n" + buggy, "calc.py", 0, 0), ws, {}, fix="code")


async def test_repair_rounds_are_bounded_and_noted(tmp_path: Path) -> None:
    wrong = "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 5\n"
    ws = _workspace(tmp_path, **{"calc.py": CALC, "test_calc.py": wrong})
    bench, backend = _bench(tmp_path, "I cannot write tests.", attempts=2)
    outcome = await bench.run_tests(build_context(CALC, "calc.py", 1, 1), ws, {}, fix="tests")
    assert not outcome.run.ok and not outcome.repaired
    assert [n.split(":")[0] for n in outcome.run.notes] == ["Repair 1", "Repair 2"]
    assert len(backend.calls) == 2
    none, _ = _bench(tmp_path / "zero", "x", attempts=0)
    assert not (await none.run_tests(build_context(CALC, "calc.py", 1, 1), ws, {}, fix="tests")).repaired


async def test_run_tests_without_tests_says_what_to_do(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, **{"calc.py": CALC})
    bench, _ = _bench(tmp_path, "x")
    with pytest.raises(InputError, match="No tests at test_calc.py"):
        await bench.run_tests(build_context(CALC, "calc.py", 1, 1), ws, {})


async def test_a_hanging_test_run_is_stopped(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, **{"test_hang.py": "import time\n\ndef test_forever():\n    time.sleep(600)\n"})
    bench, _ = _bench(tmp_path, "x", timeout_s=4)
    run = await bench.run_file(ws, "test_hang.py")
    assert run.result.timed_out and not run.ok
    assert "time limit" in run.summary()
