"""Settings for the code sandbox that runs generated tests."""

from __future__ import annotations

from pydantic import Field

from core.section import Section


class SandboxSettings(Section):
    """Limits for code run on behalf of a user."""

    timeout_s: float = Field(60.0, gt=0, description="Wall-clock limit for one run.")
    cpu_s: int = Field(60, ge=1, description="CPU seconds limit.")
    memory_mb: int = Field(1024, ge=64, description="Address-space limit in MiB.")
    max_processes: int = Field(64, ge=1, description="Process limit for the sandbox user.")
    max_file_mb: int = Field(64, ge=1, description="Largest file the run may write, in MiB.")
    max_output_chars: int = Field(20000, ge=1000, description="Output kept (head and tail) from a run.")
    repair_attempts: int = Field(2, ge=0, le=5, description="Model repair rounds after failing tests.")
    max_copy_mb: int = Field(
        256, ge=1, description="Largest workspace the sandbox copies (VCS, venv, cache folders skipped)."
    )
    python: str | None = Field(
        None, description="Python interpreter that runs tests (needs pytest). Empty: the one running Hearth."
    )
    run_as_uid: int = Field(
        65534, ge=1, description="Unprivileged uid/gid the run switches to when Hearth runs as root."
    )
