"""Generated tests join an existing test file under new names; nothing there is shadowed."""

from __future__ import annotations

import ast

from core.code.merge import defined_names, merge_tests

EXISTING = '''"""Tests of calc."""
import pytest

from calc import add


@pytest.fixture
def numbers():
    return [1, 2]


def test_add():
    assert add(2, 2) == 4
'''

GENERATED = '''import pytest

from calc import add, sub


@pytest.fixture
def numbers():
    return [3, 4]


def test_add(numbers):
    assert add(*numbers) == 7  # test_add in a comment stays


def test_sub():
    assert sub(3, 1) == 2, "test_add in a string stays"
'''


def test_clashing_names_are_renamed_with_their_uses_and_known_imports_dropped() -> None:
    merged = merge_tests(EXISTING, GENERATED)
    assert merged.renamed == {"numbers": "numbers_2", "test_add": "test_add_2"}
    assert merged.added == ["test_add_2", "test_sub"]
    whole = EXISTING + "\n\n" + merged.block
    tree = ast.parse(whole)
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert names.count("test_add") == 1 and len(names) == len(set(names))  # nothing shadowed
    assert "def test_add_2(numbers_2):" in merged.block  # the fixture's use follows its new name
    assert "# test_add in a comment stays" in merged.block and '"test_add in a string stays"' in merged.block
    assert "import pytest" not in merged.block  # the file has it
    assert "from calc import add, sub" in merged.block  # a different import is kept
    assert merged.block.count('"""') == 0


def test_a_name_taken_twice_gets_the_next_free_number() -> None:
    existing = "def test_x():\n    pass\n\n\ndef test_x_2():\n    pass\n"
    merged = merge_tests(existing, "def test_x():\n    assert 1\n")
    assert merged.renamed == {"test_x": "test_x_3"} and merged.added == ["test_x_3"]


def test_nothing_clashing_is_appended_as_is() -> None:
    merged = merge_tests("", GENERATED)
    assert merged.renamed == {} and merged.block.strip() == GENERATED.strip()
    assert "2 test(s)" in merged.summary("tests/test_calc.py")


def test_the_summary_names_what_was_added_and_renamed() -> None:
    text = merge_tests(EXISTING, GENERATED).summary("tests/test_calc.py")
    assert text.startswith("Hearth added 2 test(s) to tests/test_calc.py: test_add_2, test_sub.")
    assert "test_add → test_add_2" in text


def test_a_file_that_does_not_parse_still_has_its_names_read() -> None:
    broken = "def test_add():\n    assert add(1,\n\nvalue = 3\n"
    assert {"test_add", "value"} <= defined_names(broken)
    assert merge_tests(broken, "def test_add():\n    assert 1\n").renamed == {"test_add": "test_add_2"}
