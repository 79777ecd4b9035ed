"""Run a pytest file in the sandbox and turn its JUnit report into failures with file, line and message."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.code.sandbox import Sandbox
from core.code.sandbox_result import RunResult

REPORT = ".hearth-pytest.xml"
_FRAME = re.compile(r"^(?P<file>[^\s:][^:\n]*\.py):(?P<line>\d+):", re.M)
_FILE_LINE = re.compile(r'File "(?P<file>[^"]+\.py)", line (?P<line>\d+)')


@dataclass(frozen=True)
class Failure:
    """One failing (or erroring) test, located at a 0-based line of a workspace-relative file."""

    test: str
    path: str
    line: int
    message: str


@dataclass
class PytestRun:
    """The outcome of running a test file."""

    passed: int
    failures: list[Failure]
    result: RunResult
    test_path: str
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every test passed (and at least one ran)."""
        return not self.failures and self.passed > 0 and not self.result.timed_out

    def summary(self) -> str:
        """One line for the editor."""
        if self.result.timed_out:
            return f"{self.test_path}: the test run was stopped at the time limit."
        if not self.failures and not self.passed:
            return f"{self.test_path}: no tests ran (exit status {self.result.exit_code})."
        return f"{self.test_path}: {self.passed} passed, {len(self.failures)} failed."

    def failure_text(self) -> str:
        """Failures as text for a repair prompt."""
        return "\n\n".join(f"{f.test} ({f.path}:{f.line + 1}):\n{f.message}" for f in self.failures)[:3000]


def pytest_argv(test_path: str) -> list[str]:
    """The sandboxed command that runs one test file and writes a JUnit report."""
    return [
        "{python}",
        "-m",
        "pytest",
        "-q",
        "--tb=short",
        "-p",
        "no:cacheprovider",
        "-o",
        "junit_family=xunit1",
        f"--junitxml={REPORT}",
        "--",
        test_path,
    ]


async def run_pytest(
    sandbox: Sandbox, workspace: Path, test_path: str, overlay: dict[str, str] | None = None
) -> PytestRun:
    """Run ``test_path`` (workspace-relative) on a sandboxed copy of ``workspace``."""
    result = await sandbox.run(workspace, pytest_argv(test_path), overlay=overlay, collect=[REPORT])
    passed, failures = parse_junit(result.files.get(REPORT, ""), test_path)
    if not result.files.get(REPORT) and not result.timed_out:
        # pytest never got to write a report (it could not start): surface its output on the file.
        failures = [Failure("pytest", test_path, 0, result.output[-1500:] or "pytest did not run.")]
    return PytestRun(passed, failures, result, test_path)


def parse_junit(xml_text: str, test_path: str) -> tuple[int, list[Failure]]:
    """Passed count and failures from a pytest JUnit (xunit1) report."""
    if not xml_text.strip():
        return 0, []
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return 0, [Failure("pytest", test_path, 0, "The test report could not be read.")]
    passed = 0
    failures: list[Failure] = []
    for case in root.iter("testcase"):
        problem = next((c for c in case if c.tag in ("failure", "error")), None)
        if problem is None:
            if next((c for c in case if c.tag == "skipped"), None) is None:
                passed += 1
            continue
        name = case.get("name") or case.get("classname") or "test"
        detail = problem.text or ""
        message = (problem.get("message") or "").strip() or _last_error_line(detail) or problem.tag
        path, line = _locate(detail, case.get("file") or test_path, int(case.get("line") or 0), test_path)
        failures.append(Failure(name, path, line, message[:1000]))
    return passed, failures


def _norm(path: str) -> str:
    return str(PurePosixPath(path.replace("\\", "/")))


def _locate(detail: str, case_file: str, case_line: int, test_path: str) -> tuple[str, int]:
    """The deepest frame in the test file (the failing assert), else the test's own line."""
    wanted = _norm(test_path)
    frames = [(m["file"], int(m["line"]) - 1) for m in _FRAME.finditer(detail)]
    frames += [(m["file"], int(m["line"]) - 1) for m in _FILE_LINE.finditer(detail)]
    in_test = [(f, n) for f, n in frames if _norm(f) == wanted or _norm(f).endswith("/" + wanted)]
    if in_test:
        return wanted, max(0, in_test[-1][1])
    return _norm(case_file), max(0, case_line)


def _last_error_line(detail: str) -> str:
    errors = [line[1:].strip() for line in detail.splitlines() if line.startswith("E ")]
    return "\n".join(errors[-5:])
