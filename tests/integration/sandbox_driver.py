"""Runs generated test files through the real sandbox and prints the outcomes as JSON.

The escape suite calls :func:`drive` in-process when it tests the root mode, and runs this module
as a throwaway unprivileged user (``python -m tests.integration.sandbox_driver SPEC``) for the
image's mode. A spec: ``{"settings": {...}, "runs": [{"workspace": "...", "test": "test_x.py"}]}``;
the runs go concurrently.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from core.code.config import SandboxSettings
from core.code.sandbox import Sandbox
from core.code.testrun import run_pytest
from core.errors import SandboxError


async def drive(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Each run's exit code, output, flags, collected report and failure messages."""
    sandbox = Sandbox(SandboxSettings(**spec["settings"]))

    async def one(run: dict[str, Any]) -> dict[str, Any]:
        try:
            outcome = await run_pytest(sandbox, Path(run["workspace"]), run["test"])
        except SandboxError as exc:
            return {"refused": str(exc)}
        result = outcome.result
        return {
            "exit_code": result.exit_code,
            "output": result.output,
            "timed_out": result.timed_out,
            "memory_exceeded": result.memory_exceeded,
            "files": result.files,
            "messages": [f.message for f in outcome.failures],
            "isolation": result.isolation,
        }

    return list(await asyncio.gather(*(one(r) for r in spec["runs"])))


if __name__ == "__main__":
    print(json.dumps(asyncio.run(drive(json.loads(sys.argv[1])))))
