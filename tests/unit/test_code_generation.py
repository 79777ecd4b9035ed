"""Targets, extraction and validation of generated code; context building; JUnit parsing."""

from __future__ import annotations

import pytest

from core.code.context import build_context, language_of, require_runnable
from core.code.generation import (
    GenerationRejected,
    extract_generated,
    extract_tests,
    find_target,
    indent_block,
    module_name,
    path_for_tests,
    preamble_for_tests,
)
from core.code.testrun import parse_junit
from core.errors import InputError

SOURCE = '''import math
from os import path


class Shape:
    def area(self, r):
        """Area of a circle of radius r."""
        ...

    def done(self):
        return 1


# TODO: return the total of prices, ignoring negatives
x = 1
'''


def test_docstring_only_method_is_a_function_target() -> None:
    target = find_target(SOURCE, 6)
    assert target.kind == "function" and target.name == "area"
    assert (target.start_line, target.end_line, target.indent) == (5, 7, "    ")
    assert target.preamble == 'def area(self, r):\n    """Area of a circle of radius r."""'


def test_comment_block_is_a_comment_target_and_plain_code_is_refused() -> None:
    target = find_target(SOURCE, 13)
    assert target.kind == "comment" and target.start_line == target.end_line == 13
    with pytest.raises(InputError, match="Nothing to generate here"):
        find_target(SOURCE, 10)  # a function that already has a body


def test_base_model_continuation_is_joined_reindented_and_trimmed() -> None:
    target = find_target(SOURCE, 6)
    # A base model continues after the docstring (sometimes over-indented) and rambles on.
    out = "\n        return math.pi * r ** 2\n\n    def other(self):\n        pass\n\nprint(1)\nbroken("
    code = extract_generated(out, target)
    assert (
        code == 'def area(self, r):\n    """Area of a circle of radius r."""\n    return math.pi * r ** 2\n'
    )
    assert indent_block(code, target.indent).startswith("    def area(self, r):\n        ")
    # The stream's leading newline stripped away still gives a well-indented body.
    assert "\n    return 1" in extract_generated("return 1", target)


def test_fenced_instruct_answer_is_accepted() -> None:
    target = find_target(SOURCE, 13)
    out = "Sure!\n```python\ndef total(prices):\n    return sum(p for p in prices if p > 0)\n```\nEnjoy."
    code = extract_generated(out, target)
    assert code.startswith("# TODO: return the total")
    assert "def total(prices):" in code and "Enjoy" not in code


@pytest.mark.parametrize("output", ["I cannot help with that.", "", "   \n"])
def test_no_code_or_invalid_python_is_rejected(output: str) -> None:
    with pytest.raises(GenerationRejected):
        extract_generated(output, find_target(SOURCE, 6))
    with pytest.raises(GenerationRejected):
        extract_generated("```python\ndef (broken\n```", find_target(SOURCE, 13))


def test_tests_preamble_and_extraction() -> None:
    code = "def add(a, b):\n    return a + b\n"
    preamble = preamble_for_tests(code, "pkg/calc.py")
    # A base model continues a concrete first assertion rather than inventing test parameters.
    assert preamble.endswith("from pkg.calc import add\n\n\ndef test_add():\n    assert add(")
    tests = extract_tests("1, 2) == 3\n\ndef test_two(", preamble)
    assert (
        tests.startswith("import pytest") and "    assert add(1, 2) == 3" in tests and "test_two" not in tests
    )
    assert preamble_for_tests("class Cart:\n    pass\n", "shop.py").endswith(
        "from shop import Cart\n\n\ndef test_"
    )
    with pytest.raises(GenerationRejected, match="no test function"):
        extract_tests("```python\nx = 1\n```", preamble)


def test_paths_and_module_names() -> None:
    assert path_for_tests("pkg/calc.py", has_tests_dir=True) == "tests/test_calc.py"
    assert path_for_tests("pkg/calc.py", has_tests_dir=False) == "pkg/test_calc.py"
    assert module_name("src/pkg/calc.py") == "pkg.calc"
    with pytest.raises(InputError, match="not importable"):
        module_name("my-scripts/run.py")


def test_context_finds_enclosing_function_and_imports() -> None:
    ctx = build_context(SOURCE, "shape.py", 10, 10)
    assert ctx.enclosing is not None and ctx.enclosing.name == "done"
    assert ctx.code.startswith("    def done(self):")
    assert ctx.imports == ("import math", "from os import path")
    selected = build_context(SOURCE, "shape.py", 10, 10, selection="return 1")
    assert selected.code == "return 1" and "enclosing function done" in selected.prompt_context
    with pytest.raises(InputError, match="select some code"):
        _ = build_context(SOURCE, "shape.py", 14, 14).code


def test_languages() -> None:
    assert language_of("a/b.ts") == "typescript" and language_of("x.unknown") is None
    assert language_of("x", "python") == "python"
    with pytest.raises(InputError, match="Python only"):
        require_runnable("go", "main.go")


def test_junit_failures_point_at_the_failing_assert() -> None:
    xml = """<?xml version="1.0"?><testsuites><testsuite>
    <testcase classname="tests.test_calc" name="test_ok" file="tests/test_calc.py" line="3"/>
    <testcase classname="tests.test_calc" name="test_bad" file="tests/test_calc.py" line="6">
      <failure message="assert 3 == 4">tests/test_calc.py:8: in test_bad
    assert add(1, 2) == 4
E   assert 3 == 4</failure></testcase>
    </testsuite></testsuites>"""
    passed, failures = parse_junit(xml, "tests/test_calc.py")
    assert passed == 1
    [failure] = failures
    assert (failure.test, failure.path, failure.line, failure.message) == (
        "test_bad",
        "tests/test_calc.py",
        7,
        "assert 3 == 4",
    )


def test_tests_from_a_fenced_answer_get_the_imports_they_lack() -> None:
    from core.code.generation import extract_tests, preamble_for_tests, with_imports

    code = "def add(a, b):\n    return a + b\n"
    preamble = preamble_for_tests(code, "pkg/calc.py")
    module = with_imports(extract_tests("```python\ndef test_add():\n    assert add(1, 2) == 3\n```", preamble), preamble)
    assert module.startswith("import pytest\nfrom pkg.calc import add\n")
    namespace: dict[str, object] = {"__name__": "t"}
    exec(compile(module.replace("from pkg.calc import add", "add = lambda a, b: a + b"), "t", "exec"), namespace)
    # One that imports for itself is left as it is.
    own = "from pkg.calc import add\n\n\ndef test_add():\n    assert add(1, 1) == 2\n"
    assert with_imports(own, preamble) == "import pytest\n\n\n" + own
