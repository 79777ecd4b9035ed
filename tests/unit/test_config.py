"""Settings: file + environment, unknown keys named, secrets masked, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from core.config import load_settings
from core.errors import ConfigError
from server.cli import main


def write(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "hearth.yaml"
    cfg.write_text(text)
    return cfg


def test_defaults_without_any_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None)
    assert settings.llm.local.model_path is None  # the bundled model
    assert settings.home == tmp_path / "home"  # HEARTH_HOME from the isolation fixture
    assert settings.database_url.startswith("sqlite:///") and str(tmp_path) in settings.database_url
    assert settings.store_path == tmp_path / "home" / "qdrant"


def test_tests_never_read_a_developers_hearth_yaml() -> None:
    """The isolation fixture runs every test in an empty directory, so ./hearth.yaml is never found."""
    repo = Path(__file__).resolve().parents[2]
    assert Path.cwd() != repo and not any(Path.cwd().iterdir())


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = write(tmp_path, "llm:\n  local:\n    n_gpu_layers: 10\n    n_ctx: 2048\n")
    monkeypatch.setenv("HEARTH_LLM__LOCAL__N_GPU_LAYERS", "-1")
    settings = load_settings(cfg)
    assert settings.llm.local.n_gpu_layers == -1
    assert settings.llm.local.n_ctx == 2048


def test_config_path_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = write(tmp_path, "llm:\n  max_tokens: 99\n")
    monkeypatch.setenv("HEARTH_CONFIG", str(cfg))
    assert load_settings(None).llm.max_tokens == 99


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "llm:\n  local:\n    modle_path: /x.gguf\n",
            "llm.local.modle_path: unknown key — did you mean 'model_path'",
        ),
        ("lmm:\n  local: {}\n", "lmm: unknown key — did you mean 'llm'"),
        ("llm:\n  local:\n    n_ctx: lots\n", "llm.local.n_ctx"),
        ("slack:\n  mode: carrier-pigeon\n", "slack.mode"),
        ("tables:\n  - name: t\n    type: postgres\n", "needs 'url'"),
        (
            "sources:\n  - {name: a, type: files, path: x}\n  - {name: a, type: files, path: y}\n",
            "used twice",
        ),
        ("- just\n- a list\n", "mapping"),
        ("llm: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert needle in str(err.value)


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config PATH or set HEARTH_CONFIG"):
        load_settings(tmp_path / "nope.yaml")


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    cfg = tmp_path / "conf" / "hearth.yaml"
    cfg.write_text("llm:\n  local:\n    model_path: models/m.gguf\nprompts:\n  dir: ./prompts\n")
    settings = load_settings(cfg)
    assert settings.llm.local.model_path == tmp_path / "conf" / "models" / "m.gguf"
    assert settings.prompts.dir == tmp_path / "conf" / "prompts"


def test_config_show_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(
        tmp_path, "llm:\n  remote:\n    base_url: http://127.0.0.1:9/v1\n    api_key: sk-very-secret\n"
    )
    monkeypatch.setenv("HEARTH_SLACK__BOT_TOKEN", "xoxb-also-secret")
    result = CliRunner().invoke(main, ["--config", str(cfg), "config", "show"])
    assert result.exit_code == 0, result.output
    assert "sk-very-secret" not in result.output and "xoxb-also-secret" not in result.output
    assert "api_key: '**********'" in result.output
    assert "base_url: http://127.0.0.1:9/v1" in result.output


def test_cli_reports_config_errors_in_one_line_with_exit_2(tmp_path: Path) -> None:
    cfg = write(tmp_path, "llm:\n  local:\n    modle_path: /x.gguf\n")
    result = CliRunner().invoke(main, ["--config", str(cfg), "config", "show"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "llm.local.modle_path" in result.output


def test_an_environment_error_names_the_variable_not_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path, "llm:\n  local:\n    n_ctx: 2048\n")
    monkeypatch.setenv("HEARTH_LLM__LOCAL__N_GPU_LAYERS", "all")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    text = str(err.value)
    assert "(from environment variable HEARTH_LLM__LOCAL__N_GPU_LAYERS)" in text
    assert "Invalid configuration (the environment)" in text and str(cfg) not in text


def test_a_file_error_beside_an_environment_one_blames_each_on_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path, "llm:\n  local:\n    n_ctx: lots\n")
    monkeypatch.setenv("HEARTH_LLM__LOCAL__N_GPU_LAYERS", "all")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    lines = str(err.value).splitlines()
    assert str(cfg) in lines[0]
    assert any(line.strip().startswith("llm.local.n_ctx:") for line in lines)  # no env origin on it
    assert any("n_gpu_layers (from environment variable" in line for line in lines)


def test_a_typo_inside_a_source_fails_at_load_not_at_index(tmp_path: Path) -> None:
    cfg = write(tmp_path, "sources:\n  - name: docs\n    type: files\n    path: .\n    include: ['*.md']\n    exclud: ['x']\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "sources.0: Source 'docs' (type files)" in str(err.value) and "exclud: unknown key" in str(err.value)
    result = CliRunner().invoke(main, ["--config", str(cfg), "config", "show"])
    assert result.exit_code == 2 and "exclud: unknown key" in result.output


def test_an_unknown_source_type_fails_at_load(tmp_path: Path) -> None:
    cfg = write(tmp_path, "sources:\n  - name: docs\n    type: filez\n")
    with pytest.raises(ConfigError, match="Unknown connector 'filez'"):
        load_settings(cfg)
