"""deploy/: the compose file and the Dockerfile, checked by parsing (Docker cannot run here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from core.config import Settings
from server.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_runs_hearth_qdrant_and_postgres_with_healthchecks(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"hearth", "qdrant", "postgres"}
    for name, svc in services.items():
        test = svc["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    assert services["postgres"]["healthcheck"]["test"][1].startswith("pg_isready")
    assert "/readyz" in " ".join(services["qdrant"]["healthcheck"]["test"])
    assert {k: v["condition"] for k, v in services["hearth"]["depends_on"].items()} == {
        "qdrant": "service_healthy",
        "postgres": "service_healthy",
    }


def test_hearth_reserves_the_gpu_and_mounts_models_and_data(compose: dict) -> None:
    hearth = compose["services"]["hearth"]
    devices = hearth["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    targets = {v.split(":")[1] for v in hearth["volumes"]}
    assert {"/models", "/data", "/etc/hearth"} <= targets
    named = {v.split(":")[0] for v in hearth["volumes"] if not v.startswith(".")}
    assert named <= set(compose["volumes"])
    # Compose must wait longer than Hearth's own drain before it kills the process.
    grace = int(hearth["stop_grace_period"].rstrip("s"))
    assert grace > float(hearth["environment"]["HEARTH_SERVER__SHUTDOWN_TIMEOUT_S"])


def test_hearth_environment_names_real_settings(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    env = compose["services"]["hearth"]["environment"]
    assert "HEARTH_STORE__URL" in env and "HEARTH_DATABASE__URL" in env
    for key, value in env.items():
        assert key.startswith("HEARTH_"), key
        monkeypatch.setenv(key, re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", str(value)))
    settings = Settings()  # extra="forbid": an unknown HEARTH_ key or a bad value fails here
    assert settings.store.url == "http://qdrant:6333"
    assert settings.database_url.startswith("postgresql+psycopg://hearth:hearth@postgres:5432/")
    assert settings.llm.local.n_gpu_layers == -1 and settings.server.host == "0.0.0.0"


def test_healthchecks_use_real_hearth_options(compose: dict) -> None:
    test = compose["services"]["hearth"]["healthcheck"]["test"]
    assert test[1:4] == ["hearth", "doctor", "--ready"]
    help_text = CliRunner().invoke(main, ["doctor", "--help"]).output
    for option in (t for t in test if t.startswith("--")):
        assert option in help_text


def test_dockerfile_is_multi_stage_cuda_and_uses_the_shared_install_script() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages == ["${BUILD_IMAGE}", "${RUNTIME_IMAGE}"]
    # By default the CUDA devel image builds and the CUDA runtime image runs; LLAMA=cpu with other
    # bases is the CPU image (deploy/smoke-image.sh checks a built one).
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    assert defaults["BUILD_IMAGE"].startswith("nvidia/cuda:") and "-devel-" in defaults["BUILD_IMAGE"]
    assert defaults["RUNTIME_IMAGE"].startswith("nvidia/cuda:") and "-runtime-" in defaults["RUNTIME_IMAGE"]
    assert defaults["LLAMA"] == "cuda"
    assert re.search(r"bash deploy/install\.sh --system --cuda", text)
    assert re.search(r"bash deploy/build-llama\.sh --cuda", text)
    # llama.cpp's layer comes before the source is copied, so a code change does not recompile it.
    assert text.index("COPY deploy/build-llama.sh") < text.index("COPY . /src")
    assert "GGML_NATIVE=ON" not in text and "CMAKE_ARGS" not in text, (
        "the image must not bake in the build CPU"
    )
    assert "! grep -q ggml_backend_amx" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    health = re.search(r"^HEALTHCHECK .*\n\s+CMD (\[.*\])", text, re.M)
    assert health and '"doctor", "--ready"' in health.group(1)
    assert "COPY --from=build /opt/venv /opt/venv" in text


def test_install_script_accepts_the_dockerfile_options_and_make_uses_it() -> None:
    script = ROOT / "deploy" / "install.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text(encoding="utf-8")
    assert "--system)" in text and "--cuda)" in text and "deploy/build-llama.sh" in text
    build = (ROOT / "deploy" / "build-llama.sh").read_text(encoding="utf-8")
    subprocess.run(["bash", "-n", str(ROOT / "deploy" / "build-llama.sh")], check=True)
    for flag in (
        "-DGGML_NATIVE=OFF",
        "-DGGML_AMX_INT8=OFF",
        "-DGGML_AMX_TILE=OFF",
        "-DGGML_AVX512=OFF",
        "-DGGML_CUDA=ON",
    ):
        assert flag in build, flag
    # The build cache is keyed by the flags, so a changed flag can never reuse an earlier (native) build.
    assert 'key_src="$VERSION $(uname -m) ${flags[*]} $compiler"' in build
    assert "--no-cache-dir" in text, (
        "pip's wheel cache (keyed by version only) must not hand back a native build"
    )
    assert "deploy/install.sh" in (ROOT / "Makefile").read_text(encoding="utf-8")
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and ".git" in ignored


def _fake_python3(tmp_path: Path, version: tuple[int, int, int], *, venv: bool) -> Path:
    """A `python3` on PATH: the real interpreter, reporting another version, optionally without ensurepip."""
    site = tmp_path / "site"
    site.mkdir()
    blocker = (
        ""
        if venv
        else (
            "class _NoEnsurepip:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'ensurepip':\n"
            "            raise ModuleNotFoundError(\"No module named 'ensurepip'\")\n"
            "sys.meta_path.insert(0, _NoEnsurepip())\n"
        )
    )
    (site / "sitecustomize.py").write_text(
        f"import sys\nsys.version_info = {version + ('final', 0)!r}\n{blocker}", encoding="utf-8"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n', encoding="utf-8")
    fake.chmod(0o755)
    return bin_dir


def _check(tmp_path: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "VENV": str(tmp_path / "new-venv")}
    env.pop("PYTHON3", None)
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "install.sh"), "--check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("version", "venv", "sentence"),
    [
        (
            (3, 10, 12),
            True,
            "Hearth needs Python 3.11 or newer, python3 is 3.10 (Ubuntu 22.04: apt-get install python3.11",
        ),
        (
            (3, 12, 3),
            False,
            "python3 3.12 cannot create virtual environments (Debian/Ubuntu: apt-get install python3.12-venv)",
        ),
    ],
)
def test_install_script_names_a_missing_prerequisite_in_one_sentence(
    tmp_path: Path, version: tuple[int, int, int], venv: bool, sentence: str
) -> None:
    done = _check(tmp_path, _fake_python3(tmp_path, version, venv=venv))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("install.sh: ") and sentence in lines[0], done.stderr
    assert not (tmp_path / "new-venv").exists(), "nothing is installed when a prerequisite is missing"


def test_install_script_check_passes_with_python_3_11_and_venv(tmp_path: Path) -> None:
    done = _check(tmp_path, _fake_python3(tmp_path, (3, 11, 9), venv=True))
    assert done.returncode == 0, done.stderr
    assert ">> prerequisites: ok" in done.stdout


def test_install_script_names_a_half_made_venv(tmp_path: Path) -> None:
    # What `python3 -m venv` leaves behind on Debian without python3-venv: an interpreter, no pip.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "new-venv")], check=True)
    done = _check(tmp_path, _fake_python3(tmp_path, (3, 11, 9), venv=True))
    assert done.returncode == 1
    assert "new-venv has no pip" in done.stderr and "rm -rf" in done.stderr


def test_compose_mounts_docs_tables_and_models_read_only_where_the_readme_says(compose: dict) -> None:
    mounts = {}
    for volume in compose["services"]["hearth"]["volumes"]:
        host, target, *mode = volume.split(":")
        mounts[target] = (host, mode)
    for target, host in {"/models": "./models", "/srv/docs": "./docs", "/srv/tables": "./tables"}.items():
        assert mounts[target] == (host, ["ro"]), target
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for host, target in (("models", "/models"), ("docs", "/srv/docs"), ("tables", "/srv/tables")):
        assert f"| `deploy/{host}/` | `{target}` |" in readme, host
    assert "path: /srv/docs/" in readme and "path: /srv/tables/" in readme
    # A team's files stay out of git and out of the image's build context.
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {"deploy/docs", "deploy/tables", "deploy/models", "deploy/config"} <= set(ignored)


def _stage(text: str, name: str) -> str:
    parts = re.split(r"^FROM ", text, flags=re.M)
    return next(p for p in parts if re.match(rf"\S+ AS {name}\b", p))


def test_runtime_image_has_git_for_git_sources() -> None:
    runtime = _stage(DOCKERFILE.read_text(encoding="utf-8"), "runtime")
    install = re.search(r"apt-get install [^\n]*", runtime)
    assert install and " git" in install.group(0).split("--no-install-recommends", 1)[1]
    assert "safe.directory" in runtime, "mounted repositories belong to a host user, not hearth"
    assert "/srv/docs" in runtime and "/srv/tables" in runtime


def test_cuda_architectures_cover_volta_to_blackwell_with_a_toolkit_that_builds_them() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    build = _stage(text, "build")
    default = re.search(r'^ARG CUDA_ARCHITECTURES="([^"]+)"', build, re.M)
    assert default, "CUDA_ARCHITECTURES is a build argument of the build stage"
    archs = {int(a) for a in default.group(1).split(";")}
    assert {70, 75, 80, 86, 89, 90, 100, 120} <= archs
    assert 'CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}"' in build
    version = re.search(r"^ARG CUDA_VERSION=(\d+)\.(\d+)", text, re.M)
    assert version
    major, minor = int(version.group(1)), int(version.group(2))
    # 100/120 need CUDA 12.8+; CUDA 13 dropped 70.
    assert (12, 8) <= (major, minor) < (13, 0)
    assert "nvcc --list-gpu-arch" in build, "an unsupported architecture fails early, naming the fix"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert default.group(1) in readme and "--build-arg CUDA_ARCHITECTURES=" in readme
    assert "CUDA 12.8" in readme


def test_slack_manifest_asks_only_for_history_the_bot_reads() -> None:
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-manifest.yaml").read_text(encoding="utf-8"))
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    # Thread history of mentions (channels, private channels), DMs (message.im) and digests'
    # channel activity; the bot receives no group-DM events, so it never reads mpim history.
    assert sorted(s for s in scopes if s.endswith(":history")) == [
        "channels:history",
        "groups:history",
        "im:history",
    ]
    assert not any(
        e.startswith("message.mpim") for e in manifest["settings"]["event_subscriptions"]["bot_events"]
    )


def test_readme_walks_through_slack_setup_in_click_order() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Slack\n", 1)[1].split("\n## ", 1)[0]
    steps = [
        "**Create New App**",
        "**Signing Secret**",
        "**Bot User OAuth Token**",
        "start `hearth serve`",
        "**Event Subscriptions**",
        "*Verified*",
    ]
    positions = [section.find(step) for step in steps]
    assert -1 not in positions, dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions), "the URL is verified only once the server has the secret"
