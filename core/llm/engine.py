"""The local engine as a supervised child: llama.cpp's own ``llama-server``, owned by Hearth.

Hearth starts the server on a unix socket in a private directory (never a network address),
waits until it has loaded the model, checks its health, restarts it with backoff after a crash
or a hang, and stops it on shutdown. The child gets a parent-death signal, so it never outlives
Hearth even after a SIGKILL. A crash is a routing decision (the router falls back to the remote
API and counts it in the breaker), never the end of ``hearth serve``::

    engine = EngineProcess(settings.llm.local, model_path)
    await engine.ensure_ready()          # starts it on first use
    async with engine.session().post("/completion", json=...) as resp: ...
    await engine.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
import weakref
from collections import deque
from enum import StrEnum
from pathlib import Path

import aiohttp

from core import metrics
from core.errors import BackendUnavailable
from core.llm.child import Child, describe_exit, kill_left_behind, sweep_stale_dirs
from core.llm.config import LocalLLMSettings

log = logging.getLogger(__name__)

_TAIL_LINES = 40
_STABLE_AFTER_S = 60.0  # an engine that ran this long resets the restart backoff
_WAIT_FOR_RESTART_S = 1.0  # a request waits for a restart due this soon instead of falling back


class EngineState(StrEnum):
    """Where the engine process is in its life."""

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    BACKOFF = "backoff"  # crashed or failed to start; the next start is scheduled


def default_server_path() -> Path:
    """Where deploy/install.sh puts llama-server: ``<prefix>/lib/hearth-llama/llama-server``."""
    return Path(sys.prefix) / "lib" / "hearth-llama" / "llama-server"


class EngineProcess:
    """Starts, watches, restarts and stops one ``llama-server`` child process."""

    def __init__(
        self,
        settings: LocalLLMSettings,
        model_path: Path,
        *,
        server_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.model_path = model_path
        self.server_path = server_path or settings.server_path or default_server_path()
        self.state = EngineState.STOPPED
        self.last_error: str | None = None
        self.restarts = 0
        self.load_seconds: float | None = None
        self.generation = 0  # counts the engines that came up; a restart makes a new generation
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._proc: Child | None = None
        self._dir: Path | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._attempted = asyncio.Event()  # set after each start attempt, ready or failed
        self._backoff_over = asyncio.Event()  # cleared while waiting to restart
        self._session: aiohttp.ClientSession | None = None
        self._retry_at = 0.0
        self._stopping = False

    # -- what callers use -------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        """The unix socket the server listens on (a private 0700 directory)."""
        if self._dir is None:
            sweep_stale_dirs()
            self._dir = Path(tempfile.mkdtemp(prefix=f"hearth-engine-{os.getpid()}-"))
            weakref.finalize(self, shutil.rmtree, str(self._dir), True)
        return self._dir / "llama.sock"

    @property
    def ready(self) -> bool:
        """Whether the engine serves now."""
        return self.state is EngineState.READY

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        return self._proc.pid if self._proc is not None and not self._proc.exited.is_set() else None

    def session(self) -> aiohttp.ClientSession:
        """An HTTP session bound to the engine's socket (base URL ``http://engine``)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                base_url="http://engine",
                # No keep-alive: llama-server gives each open connection one of its HTTP threads, so
                # idle pooled connections would hold threads that tokenize and health calls need.
                connector=aiohttp.UnixConnector(path=str(self.socket_path), limit=0, force_close=True),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            )
        return self._session

    async def ensure_ready(self) -> None:
        """Start the engine if needed and wait until it serves; raise BackendUnavailable if it cannot."""
        if self.state is EngineState.READY:
            return
        if self.state is EngineState.BACKOFF:
            wait = max(0.0, self._retry_at - time.monotonic())
            if wait > _WAIT_FOR_RESTART_S or self._supervisor is None or self._supervisor.done():
                raise BackendUnavailable(
                    f"the local engine is down ({self.last_error}); next restart in {wait:.0f}s"
                )
            # Restarting any moment now (a crash after a good run restarts at once): wait for it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._backoff_over.wait(), wait + 1.0)
        if self._supervisor is None or self._supervisor.done():
            self._check_binary()
            self._stopping = False
            self._attempted.clear()
            self._supervisor = asyncio.create_task(self._supervise(), name="hearth-engine")
        await self._attempted.wait()
        if not self.ready:
            raise BackendUnavailable(self.last_error or "the local engine did not start")

    async def recover(self, since: int) -> bool:
        """After a failed connection to engine ``since`` (a :attr:`generation`): True once a newer one
        serves, False if that engine had not died or no restart is near.

        A crash is seen by clients (their connection breaks) a moment before the supervisor reaps the
        process; this waits for the supervisor to notice and restart it instead of failing the request.
        """
        if self._supervisor is None or self._supervisor.done():
            return False
        proc = self._proc
        if self.generation == since and proc is not None and not await proc.wait(2.0):
            return False  # still running: the failure was something else
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline and not self._stopping:
            if self.ready and self.generation > since:
                return True
            if self.state is EngineState.BACKOFF and self._retry_at - time.monotonic() > 0.5:
                return False  # restarting later: fall back now
            if self._supervisor is None or self._supervisor.done():
                return False
            await asyncio.sleep(0.05)
        return False

    async def stop(self) -> None:
        """Stop the engine (SIGTERM, then SIGKILL) and its supervisor; safe to call twice."""
        self._stopping = True
        await self._terminate()  # gracefully first; the supervisor then sees a stop, not a crash
        task, self._supervisor = self._supervisor, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._terminate()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.state = EngineState.STOPPED

    # -- the supervisor ---------------------------------------------------------------------

    def _check_binary(self) -> None:
        if not os.access(self.server_path, os.X_OK):
            raise BackendUnavailable(
                f"llama-server is not installed at {self.server_path} — run 'make install' "
                "(deploy/install.sh builds it), set llm.local.server_path, or set llm.local.engine: in_process."
            )

    def command(self) -> list[str]:
        """The llama-server command line for the current settings."""
        s = self.settings
        cmd = [
            str(self.server_path),
            "--model", str(self.model_path),
            "--host", str(self.socket_path),
            "--parallel", str(s.parallel),
            "--ctx-size", str(s.n_ctx * s.parallel),
            "--no-kv-unified",
            "--cont-batching",
            "--batch-size", str(s.n_batch),
            "--n-gpu-layers", str(s.n_gpu_layers),
            "--flash-attn", s.flash_attn,
            "--seed", str(s.seed),
            "--jinja",
            "--no-webui",
            "--slots",
            "--metrics",
            # One HTTP thread per streaming slot, and spare ones for tokenize, health and /slots.
            "--threads-http", str(s.parallel + 4),
        ]  # fmt: skip
        if s.n_threads:
            cmd += ["--threads", str(s.n_threads)]
        return cmd

    async def _supervise(self) -> None:
        consecutive = 0
        me = asyncio.current_task()
        try:
            while not self._stopping and not (me and me.cancelling()):
                started = time.monotonic()
                ok = await self._start_once()
                hung = False
                if ok:
                    self._attempted.set()
                    hung = await self._watch()
                if self._stopping:
                    return
                if ok and time.monotonic() - started > _STABLE_AFTER_S:
                    consecutive = 0
                consecutive += 1
                # A crash after a good run restarts at once; a crash loop or a failed load waits 1, 2, 4 … s.
                backoff = 0.0 if ok and consecutive == 1 else 2.0 ** (consecutive - 1)
                backoff = min(backoff, self.settings.restart_backoff_max_s)
                self._retry_at = time.monotonic() + backoff
                self.state = EngineState.BACKOFF
                self._backoff_over.clear()
                self._attempted.set()  # a failed start reaches its waiters with the retry time known
                await self._terminate(kill=hung)
                log.error("local engine: %s; restarting in %.0fs", self.last_error, backoff)
                await asyncio.sleep(backoff)
                self.restarts += 1
                metrics.ENGINE_RESTARTS.inc()
                self._attempted.clear()
                self.state = EngineState.STARTING
                self._backoff_over.set()
        finally:
            await self._terminate(kill=True)
            self._attempted.set()
            self._backoff_over.set()

    async def _start_once(self) -> bool:
        """Spawn the child and wait for it to load the model; False (with last_error set) if it failed."""
        self.state = EngineState.STARTING
        self.socket_path.unlink(missing_ok=True)
        cmd = self.command()
        log.info("starting the local engine: %s", " ".join(cmd))
        started = time.perf_counter()
        try:
            proc = self._proc = Child(cmd, self.tail)
        except OSError as exc:
            self.last_error = f"cannot run {self.server_path} (llm.local.server_path): {exc}"
            return False
        weakref.finalize(self, kill_left_behind, proc)
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if proc.exited.is_set():
                self.last_error = (
                    f"llama-server {describe_exit(proc.returncode)} while loading {self.model_path} "
                    f"(llm.local.model_path); its last lines: {self._tail_text()}"
                )
                return False
            if await self._healthy(within=1.0):
                self.load_seconds = time.perf_counter() - started
                self.generation += 1
                self.state = EngineState.READY
                self.last_error = None
                log.info(
                    "local engine ready in %.1fs (pid %d, %d slots, model %s)",
                    self.load_seconds, proc.pid, self.settings.parallel, self.model_path.name,
                )  # fmt: skip
                return True
            await asyncio.sleep(0.05)
        self.last_error = (
            f"llama-server did not load {self.model_path} within {self.settings.start_timeout_s:.0f}s "
            f"(llm.local.start_timeout_s); its last lines: {self._tail_text()}"
        )
        return False

    async def _watch(self) -> bool:
        """Return when the running engine has died (False) or stopped answering health checks (True)."""
        proc = self._proc
        assert proc is not None
        interval = self.settings.health_interval_s
        while not self._stopping:
            if await proc.wait(interval):
                self.last_error = (
                    f"llama-server {describe_exit(proc.returncode)}; its last lines: {self._tail_text()}"
                )
                return False
            if not await self._healthy(within=self.settings.health_timeout_s):
                self.last_error = (
                    f"llama-server stopped answering health checks for {self.settings.health_timeout_s:.0f}s "
                    "(llm.local.health_timeout_s); killed it"
                )
                return True
        return False

    async def _healthy(self, within: float) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            async with self.session().get("/health", timeout=aiohttp.ClientTimeout(total=within)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    def _tail_text(self, lines: int = 8) -> str:
        picked = list(self.tail)[-lines:]
        return " | ".join(picked) if picked else "(none)"

    async def _terminate(self, *, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send(kill=kill)
        if not await proc.wait(5.0):
            proc.send(kill=True)
            await proc.wait(10.0)
