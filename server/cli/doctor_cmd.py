"""`hearth doctor`: one line per check, OK or FAIL with the fix."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from core.config import Settings
from server.cli import State, json_option, pass_state
from server.cli.doctor_check import Check
from server.cli.doctor_rerank import rerank_check

if TYPE_CHECKING:
    from core.llm.build_info import BuildReport

_PACKAGES = (
    "hearth",
    "llama-cpp-python",
    "openai",
    "qdrant-client",
    "qdrant-edge-py",
    "slack-bolt",
    "pygls",
    "apscheduler",
    "sqlglot",
    "aiohttp",
)


# What an embedder backend needs beyond the runtime set, and the install that brings it.
_EMBEDDER_PACKAGES = {
    "onnx": (("onnxruntime", "onnx"), "run 'make demo' (or pip install -e .)"),
    "sentence_transformers": (
        ("torch", "sentence-transformers"),
        "embed.backend sentence_transformers needs PyTorch: deploy/install.sh --torch (or pip install 'hearth[torch]')",
    ),
}


def _versions(embed_backend: str) -> Check:
    """The packages this configuration runs on: the runtime set, plus what its embedder needs."""
    extra, extra_fix = _EMBEDDER_PACKAGES.get(embed_backend, ((), ""))
    found, missing = [], []
    for pkg in (*_PACKAGES, *extra):
        try:
            found.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(pkg)
    detail = f"Python {platform.python_version()}; " + ", ".join(found)
    if missing:
        return Check(
            "packages",
            False,
            detail + f"; missing: {', '.join(missing)}",
            extra_fix
            if extra_fix and set(missing) <= set(extra)
            else "run 'make demo' (or pip install -e .)",
        )
    return Check("packages", sys.version_info >= (3, 11), detail, "use Python 3.11 or newer")


def _gpu(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    try:
        import llama_cpp

        offload = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception as exc:  # noqa: BLE001 - doctor reports whatever went wrong
        return [Check("llama.cpp", False, f"cannot import llama_cpp: {exc}", "pip install llama-cpp-python")]
    wants_gpu = settings.llm.local.n_gpu_layers != 0
    checks.append(
        Check(
            "llama.cpp GPU offload",
            offload or not wants_gpu,
            f"built {'with' if offload else 'without'} GPU offload; llm.local.n_gpu_layers={settings.llm.local.n_gpu_layers}",
            "rebuild with CMAKE_ARGS='-DGGML_CUDA=on' pip install --force-reinstall --no-cache-dir llama-cpp-python, "
            "or set llm.local.n_gpu_layers: 0",
            required=wants_gpu,
        )
    )
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,memory.total,memory.used", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            checks.append(Check("GPU", True, out.replace("\n", "; ")))
        except (subprocess.SubprocessError, OSError) as exc:
            checks.append(
                Check(
                    "GPU",
                    False,
                    f"nvidia-smi failed: {exc}",
                    "check the NVIDIA driver and container runtime",
                    required=wants_gpu,
                )
            )
    return checks


def _build(settings: Settings) -> list[Check]:
    """The llama.cpp build: portable (no native, no AMX) and a working llama-server."""
    from core.llm.build_info import inspect_build

    local = settings.llm.local
    report = inspect_build(local.server_path)
    rebuild = "rebuild portably: rm -rf .venv && make install (deploy/install.sh never builds native or AMX)"
    features = ", ".join(report.enabled_features) or "unknown"
    checks = [
        Check(
            "llama.cpp CPU build",
            not report.problems,
            f"uses {features}; " + ("; ".join(report.problems) or _build_kind(report)),
            rebuild,
        )
    ]
    if local.enabled and local.engine == "server":
        checks.append(
            Check(
                "llama-server",
                report.server_error is None,
                f"{report.server_path}: {report.server_version or report.server_error}",
                "run 'make install' (deploy/install.sh builds it), set llm.local.server_path, "
                "or set llm.local.engine: in_process",
            )
        )
    return checks


def _build_kind(report: BuildReport) -> str:
    if report.native_opted_in:
        return "native for this CPU (opted in with HEARTH_LLAMA_CMAKE_ARGS)"
    return "portable"


def _vram_fit(settings: Settings) -> Check | None:
    """Whether the model fits in free GPU memory with llm.local.n_gpu_layers (None: nothing to check)."""
    from server.gpu_fit import estimate, gguf_block_count, query_gpus

    local = settings.llm.local
    if not local.enabled or local.n_gpu_layers == 0:
        return None
    try:
        gpus = query_gpus()
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        return Check("GPU memory fit", False, f"nvidia-smi failed: {exc}", "check the NVIDIA driver")
    if not gpus:
        return Check(
            "GPU memory fit",
            False,
            f"llm.local.n_gpu_layers={local.n_gpu_layers} but no NVIDIA GPU found",
            "run with the NVIDIA container runtime (compose: deploy.resources.reservations.devices), "
            "or set llm.local.n_gpu_layers: 0",
        )
    try:
        from core.llm.llama_cpp import bundled_model_path

        path = local.model_path or bundled_model_path()
    except Exception as exc:  # noqa: BLE001 - reported by the model check too
        return Check("GPU memory fit", False, f"no model file to measure: {exc}", "set llm.local.model_path")
    if not path.is_file():
        return Check("GPU memory fit", False, f"no model file at {path}", "set llm.local.model_path")
    best = max(gpus, key=lambda g: g.free_mb)
    fit = estimate(
        path.stat().st_size / 2**20, gguf_block_count(path), local.n_gpu_layers, local.n_ctx, best.free_mb
    )
    fix = (
        f"set llm.local.n_gpu_layers: {fit.max_layers} (the rest runs on CPU) or use a smaller quantization"
        if fit.max_layers is not None
        else "use a smaller model or quantization"
    )
    return Check("GPU memory fit", fit.ok, f"{fit.detail} on {best.name} (estimate)", fix)


def _model(settings: Settings, load: bool) -> Check:
    from core.errors import HearthError
    from core.llm.llama_cpp import LlamaCppBackend, bundled_model_path
    from core.llm.llama_server import LlamaServerBackend

    if not settings.llm.local.enabled:
        return Check("local model", True, "disabled (llm.local.enabled: false)", required=False)
    try:
        path = settings.llm.local.model_path or bundled_model_path()
    except HearthError as exc:
        return Check("local model", False, str(exc), "set llm.local.model_path")
    if not path.is_file():
        return Check("local model", False, f"no file at {path}", "set llm.local.model_path to a GGUF file")
    size = path.stat().st_size / 1e6
    if not load:
        return Check("local model", True, f"{path} ({size:.0f} MB), not loaded (--no-load)")
    server = settings.llm.local.engine == "server"
    backend = LlamaServerBackend(settings.llm.local) if server else LlamaCppBackend(settings.llm.local)

    async def load_and_close() -> None:
        try:
            await backend.load()
        finally:
            await backend.aclose()

    try:
        asyncio.run(load_and_close())
    except HearthError as exc:
        return Check("local model", False, str(exc), "point llm.local.model_path at a complete GGUF file")
    fmt = "chat template" if backend.uses_chat_template else "completion prompts (base model)"
    engine = f"llama-server, {settings.llm.local.parallel} slots" if server else "in-process"
    return Check(
        "local model",
        True,
        f"{path} ({size:.0f} MB) loads in {backend.load_seconds or 0:.2f}s ({engine}); {fmt}",
    )


def _remote(settings: Settings) -> Check:
    remote = settings.llm.remote
    if not remote.base_url:
        return Check("remote API", True, "not configured (llm.remote.base_url)", required=False)
    import httpx

    headers = {"Authorization": f"Bearer {remote.api_key.get_secret_value()}"} if remote.api_key else {}
    try:
        resp = httpx.get(
            remote.base_url.rstrip("/") + "/models", headers=headers, timeout=remote.connect_timeout_s + 5
        )
    except httpx.HTTPError as exc:
        return Check(
            "remote API",
            False,
            f"{remote.base_url} unreachable: {type(exc).__name__}",
            "check llm.remote.base_url and the network",
            required="remote" in settings.llm.routing.order[:1],
        )
    if resp.status_code in (401, 403):
        return Check(
            "remote API",
            False,
            f"{remote.base_url} rejected the key (HTTP {resp.status_code})",
            "check llm.remote.api_key",
        )
    return Check(
        "remote API",
        resp.status_code < 500,
        f"{remote.base_url} answered HTTP {resp.status_code}",
        "check the remote server",
    )


def _writable(label: str, path: Path) -> Check:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            label, False, f"{path} is not writable: {exc.strerror}", f"fix permissions or set {label}"
        )
    free = shutil.disk_usage(path).free / 1e9
    return Check(label, True, f"{path} writable, {free:.1f} GB free")


def local_in_use(settings: Settings) -> bool:
    """Whether any answer can come from the local model (enabled and in routing.order)."""
    return settings.llm.local.enabled and "local" in settings.llm.routing.order


def _sandbox(settings: Settings) -> list[Check]:
    """A probe run through the code sandbox: one line per isolation property."""
    from core.code.sandbox_probe import probe_sandbox
    from core.errors import SandboxError

    try:
        lines = asyncio.run(probe_sandbox(settings.sandbox, home=settings.home))
    except SandboxError as exc:
        # Runs are refused, never unsandboxed: a warning for the editor's Run tests, not a broken install.
        return [Check("sandbox", False, str(exc), "see the README's sandbox section", required=False)]
    fix = "see the README's sandbox section (Run tests is refused until this passes)"
    return [Check(f"sandbox: {line.name}", line.ok, line.detail, fix) for line in lines]


def run_checks(settings: Settings, *, load: bool = True) -> list[Check]:
    """Every doctor check, in display order."""
    local = [*_build(settings), *_gpu(settings)]
    fit = _vram_fit(settings)
    if fit is not None:
        local.append(fit)
    local.append(_model(settings, load))
    if not local_in_use(settings):
        # A remote-only setup (routing.order without 'local') needs no llama.cpp build, GPU or model
        # file: their problems are shown as warnings, never as a failed doctor.
        why = f"not used: llm.routing.order is {settings.llm.routing.order}"
        for check in local:
            check.required = False
            if check.ok is False:
                check.detail = f"{check.detail} ({why})"
    checks = [_versions(settings.embed.backend), *local]
    checks += [_remote(settings), _writable("home", settings.home)]
    if settings.store.url is None:
        checks.append(_writable("store.path", settings.store_path))
    checks.append(_store(settings))
    checks.append(rerank_check(settings, load=load))
    checks += _sandbox(settings)
    return checks


def _store(settings: Settings) -> Check:
    """The vector store in use, its size, and whether the README's size guidance says to move."""
    from core.errors import HearthError
    from core.retrieval.migrate import size_advice
    from server.cli.store_cmd import store_info

    try:
        info = asyncio.run(store_info(settings))
    except HearthError as exc:
        return Check("vector store", False, str(exc), "see the message", required=False)
    size = f", {info.disk_bytes / 1e6:.1f} MB" if info.disk_bytes is not None else ""
    fine, advice = size_advice(info)
    detail = f"{info.kind} at {info.location}: {info.points} chunks{size}; {advice}"
    if info.points == 0:
        return Check("vector store", True, detail + " (empty: run 'hearth index')", required=False)
    return Check("vector store", fine, detail, "hearth store migrate --to URL", required=False)


@click.command()
@json_option("Print the checks as JSON.")
@click.option("--no-load", is_flag=True, help="Do not load the model (faster; checks the file only).")
@click.option(
    "--ready", is_flag=True, help="Quiet readiness probe: exit 0 only when every required check passes."
)
@click.option(
    "--server",
    "server_url",
    default=None,
    metavar="URL",
    help="With --ready: ask a running `hearth serve` at URL for /readyz instead (container healthcheck).",
)
@pass_state
def doctor(state: State, as_json: bool, no_load: bool, ready: bool, server_url: str | None) -> None:
    """Check the installation: packages, GPU, model file, remote API, data directories, reranker, sandbox."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if server_url is not None:
        sys.exit(_probe_server(server_url, quiet=ready and not as_json))
    checks = run_checks(state.settings, load=not no_load)
    failed = [c for c in checks if not c.ok and c.required]
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in checks], indent=2))
    elif not ready:
        for c in checks:
            mark = "OK  " if c.ok else ("FAIL" if c.required else "WARN")
            click.echo(f"{mark} {c.name:<22} {c.detail}")
            if not c.ok and c.fix:
                click.echo(f"     {'':<22} fix: {c.fix}")
        click.echo(
            "All required checks passed." if not failed else f"{len(failed)} required check(s) failed."
        )
    sys.exit(1 if failed else 0)


def _probe_server(url: str, *, quiet: bool) -> int:
    """GET URL/readyz; print the failing checks; 0 when ready."""
    import httpx

    try:
        resp = httpx.get(url.rstrip("/") + "/readyz", timeout=10)
        body = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        click.echo(f"not ready: {url} did not answer /readyz ({type(exc).__name__})", err=True)
        return 1
    failing = {k: v["detail"] for k, v in body.get("checks", {}).items() if not v.get("ok")}
    if not quiet or failing:
        for name, check in body.get("checks", {}).items():
            click.echo(
                f"{'OK  ' if check.get('ok') else 'FAIL'} {name:<22} {check.get('detail', '')}",
                err=bool(failing),
            )
    return 0 if resp.status_code == 200 and body.get("ready") else 1
