"""Settings for the code sandbox that runs generated tests."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.section import Section


class SandboxSettings(Section):
    """Limits for code run on behalf of a user."""

    timeout_s: float = Field(60.0, gt=0, description="Wall-clock limit for one run.")
    cpu_s: int = Field(60, ge=1, description="CPU seconds limit.")
    memory_mb: int = Field(
        1024,
        ge=64,
        description="Memory of the whole run in MiB (and the address space of each of its processes).",
    )
    max_processes: int = Field(64, ge=4, description="Processes the whole run may have at once.")
    max_file_mb: int = Field(64, ge=1, description="Largest file the run may write, in MiB.")
    disk_mb: int = Field(
        512,
        ge=16,
        description="Size of the tmpfs that holds the workspace copy: all a run may write, the copy included.",
    )
    cgroup_parent: str | None = Field(
        None,
        description="A delegated cgroup v2 directory (memory and pids in its cgroup.subtree_control) to create "
        "each run's cgroup in. Empty: found automatically, else the total memory is watched.",
    )
    max_output_chars: int = Field(20000, ge=1000, description="Output kept (head and tail) from a run.")
    repair_attempts: int = Field(2, ge=0, le=5, description="Model repair rounds after failing tests.")
    max_copy_mb: int = Field(
        256, ge=1, description="Largest workspace the sandbox copies (VCS, venv, cache folders skipped)."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables for runs (e.g. PYTEST_DISABLE_PLUGIN_AUTOLOAD: '1'); "
        "PATH, HOME and TMPDIR stay the sandbox's.",
    )
    python: str | None = Field(
        None, description="Python interpreter that runs tests (needs pytest). Empty: the one running Hearth."
    )
    run_as_uid: int = Field(
        65534,
        ge=1,
        description="Unprivileged uid/gid a run switches to before bubblewrap when Hearth runs as root.",
    )


class CompletionSettings(Section):
    """Inline completion in the editor (``lsp.completion``)."""

    enabled: bool = Field(
        True, description="Offer inline suggestions as you type (advertised in initialize)."
    )
    max_tokens: int = Field(48, ge=1, le=512, description="Longest suggestion, in tokens.")
    prefix_tokens: int = Field(
        1024, ge=16, description="Budget for the text before the cursor (at about 3 characters a token)."
    )
    suffix_tokens: int = Field(
        256, ge=0, description="Budget for the text after the cursor (fill-in-the-middle models only)."
    )
    snippets: int = Field(
        3, ge=0, le=10, description="Related snippets from other open files and the workspace index."
    )
    snippet_tokens: int = Field(384, ge=0, description="Budget for those snippets, all together.")
    debounce_ms: int = Field(
        30,
        ge=0,
        le=2000,
        description="Wait this long after a keystroke before generating (a newer one cancels).",
    )
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (0: greedy, reproducible).")
    stop_at_blank_line: bool = Field(True, description="End a suggestion at a blank line.")
    stop_at_block_end: bool = Field(
        True, description="End a suggestion where the block at the cursor ends (a line indented less)."
    )
    fim: Literal["auto", "off"] = Field(
        "auto",
        description="'auto' fills in the middle when the model's GGUF declares FIM tokens; 'off' always "
        "continues the text before the cursor.",
    )
