"""A real editor: headless Neovim (Debian's 0.7) attaches `hearth lsp` to a Python file, runs an action."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.lsp_rig import HEARTH, ScriptedAPI, make_workspace, remote_llm, start_api, write_config
from tests.fixtures.skips import unavailable

SNIPPET_DIR = Path(__file__).resolve().parents[2] / "lsp" / "editors" / "neovim"

SCRIPT = r"""
local out = {}
local function finish()
  local f = io.open(vim.env.HEARTH_NVIM_OUT, 'w')
  f:write(vim.fn.json_encode(out))
  f:close()
  vim.cmd('qa!')
end
local ok, err = pcall(function()
  -- The snippet shipped in lsp/editors/neovim, configured the way the README says.
  package.path = vim.env.HEARTH_SNIPPET_DIR .. '/?.lua;' .. package.path
  local hearth = require('hearth')
  hearth.cmd = { vim.env.HEARTH_BIN, '--config', vim.env.HEARTH_NVIM_CONFIG, 'lsp' }
  vim.cmd('filetype on')
  vim.cmd('edit ' .. vim.fn.fnameescape(vim.env.HEARTH_NVIM_FILE))
  local client
  vim.wait(30000, function()
    client = vim.lsp.get_active_clients()[1]
    return client ~= nil and client.initialized
  end, 50)
  out.initialized = client ~= nil and client.initialized or false
  vim.api.nvim_win_set_cursor(0, { 14, 0 })  -- the TODO comment (1-based)
  local params = vim.lsp.util.make_range_params()
  params.context = { diagnostics = {} }
  local replies = vim.lsp.buf_request_sync(0, 'textDocument/codeAction', params, 10000) or {}
  out.titles = {}
  local generate
  for _, reply in pairs(replies) do
    for _, action in ipairs(reply.result or {}) do
      table.insert(out.titles, action.title)
      if action.title == 'Hearth: Generate' then generate = action end
    end
  end
  local res = client.request_sync('workspace/executeCommand', generate.command, 30000, 0)
  out.error = res and res.err and res.err.message or vim.NIL
  out.lines = vim.api.nvim_buf_get_lines(0, 0, -1, false)
end)
if not ok then out.lua_error = tostring(err) end
finish()
"""


def _ensure_neovim() -> str:
    nvim = shutil.which("nvim")
    if nvim is None:
        # Debian bookworm ships Neovim 0.7.2; install it for this test when it is missing.
        for step in (
            ["apt-get", "install", "-y", "-q", "neovim"],
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "neovim"],
        ):
            subprocess.run(step, capture_output=True, timeout=300, check=False)
            nvim = shutil.which("nvim")
            if nvim is not None:
                break
    if nvim is None:
        unavailable("Neovim is not installed and 'apt-get install neovim' did not work here (it needs root).")
    return nvim


async def run_headless_neovim(
    nvim: str, script: str, file: Path, config: Path, tmp_path: Path, limit_s: float = 120
) -> dict[str, Any]:
    """Run ``script`` (Lua) in headless Neovim editing ``file``; it writes its findings as JSON.

    The script sees the shipped snippet's folder (HEARTH_SNIPPET_DIR), `hearth` (HEARTH_BIN), the
    config (HEARTH_NVIM_CONFIG), the file (HEARTH_NVIM_FILE) and where to write (HEARTH_NVIM_OUT).
    """
    driver = tmp_path / "drive.lua"
    driver.write_text(script)
    out = tmp_path / "nvim-out.json"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HEARTH_BIN": HEARTH,
        "HEARTH_NVIM_OUT": str(out),
        "HEARTH_NVIM_FILE": str(file),
        "HEARTH_NVIM_CONFIG": str(config),
        "HEARTH_NVIM_ROOT": str(file.parent),
        "HEARTH_HOME": str(tmp_path / "home"),
        "HEARTH_SNIPPET_DIR": str(SNIPPET_DIR),
    }
    proc = await asyncio.create_subprocess_exec(
        nvim,
        "--headless",
        "--clean",
        "-n",
        "-c",
        f"luafile {driver}",
        env=env,
        cwd=file.parent,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), limit_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert out.exists(), output.decode(errors="replace")[-2000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.fixture
async def api() -> AsyncIterator[ScriptedAPI]:
    api = ScriptedAPI(
        reply=lambda prompt: "```python\ndef total(prices):\n    return sum(p for p in prices if p > 0)\n```"
    )
    runner = await start_api(api)
    yield api
    await runner.cleanup()


async def test_neovim_runs_hearth_generate_code_action(tmp_path: Path, api: ScriptedAPI) -> None:
    nvim = await asyncio.to_thread(_ensure_neovim)
    ws = make_workspace(tmp_path)
    config = write_config(tmp_path, remote_llm(api))
    result = await run_headless_neovim(nvim, SCRIPT, ws / "geometry.py", config, tmp_path)
    assert "lua_error" not in result, result
    assert result["initialized"] is True
    assert result["titles"] == [
        "Hearth: Explain",
        "Hearth: Generate",
        "Hearth: Generate tests",
        "Hearth: Run tests",
    ]
    assert result["error"] is None
    text = "\n".join(result["lines"])
    # Neovim applied Hearth's workspace edit to the buffer.
    assert "# TODO: return the total of a list of prices" in text
    assert "def total(prices):\n    return sum(p for p in prices if p > 0)" in text
