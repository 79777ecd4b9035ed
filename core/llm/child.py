"""One ``llama-server`` process at the operating-system level, for :mod:`core.llm.engine`.

It dies with its parent (``PR_SET_PDEATHSIG``), its output is read by a thread into a tail kept for
error messages, and the private socket directories of Hearth processes that died are swept.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections import deque
from pathlib import Path

engine_log = logging.getLogger("hearth.engine.llama_server")

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Runs in the child before exec: SIGKILL it when the parent dies; give up if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux: rely on stop()
        return
    if os.getppid() != parent:
        os._exit(1)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Child:
    """One llama-server process: a thread reads its output, an event says when it has exited.

    Plain ``subprocess`` rather than asyncio's: the process then belongs to no event loop, so an
    engine left running when a loop closes (a CLI command, a test) is still killed cleanly.
    """

    def __init__(self, cmd: list[str], tail: deque[str]) -> None:
        parent = os.getpid()
        self.popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches Hearth, which stops the engine
            preexec_fn=lambda: _die_with_parent(parent),
        )
        self.pid = self.popen.pid
        self.exited = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._tail = tail
        threading.Thread(target=self._pump, name=f"llama-server-{self.pid}", daemon=True).start()

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has exited and been reaped."""
        return self.popen.returncode if self.exited.is_set() else None

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:
            for raw in self.popen.stdout:
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    self._tail.append(text)
                    engine_log.debug("%s", text)
        self.popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            self._loop.call_soon_threadsafe(self.exited.set)

    def send(self, *, kill: bool) -> None:
        """SIGKILL or SIGTERM, if it is still running."""
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill() if kill else self.popen.terminate()

    async def wait(self, within: float) -> bool:
        """Whether it exited within ``within`` seconds."""
        if self.exited.is_set():
            # Not through wait_for: on Python 3.11 it swallows a cancellation that arrives while
            # the awaited thing is already done, and the supervisor would outlive its loop.
            return True
        try:
            await asyncio.wait_for(self.exited.wait(), within)
        except TimeoutError:
            return False
        return True


def sweep_stale_dirs() -> None:
    """Remove the socket directories of Hearth processes that died without cleaning up (kill -9)."""
    for path in Path(tempfile.gettempdir()).glob("hearth-engine-*-*"):
        try:
            pid = int(path.name.split("-")[2])
            if path.stat().st_uid != os.getuid():
                continue
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, IndexError, OSError):
            continue


def kill_left_behind(child: Child) -> None:
    """Finalizer: an engine object dropped (or an interpreter exiting) without stop() kills its child."""
    child.send(kill=True)
