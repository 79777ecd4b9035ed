"""One registry shape: built-ins come from entry points like any plugin, fakes register the same way."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from connectors.files import FilesConnector
from core import registry as registry_module
from core.config import load_settings
from core.errors import ConfigError
from core.llm.fake import FakeBackend
from core.llm.llama_cpp import LlamaCppBackend
from core.llm.llama_server import LlamaServerBackend
from core.llm.openai_compat import OpenAICompatBackend
from core.llm.registry import LLM_BACKENDS, build_router
from core.registry import Registry
from core.retrieval.config import EmbedSettings
from core.retrieval.connectors import CONNECTORS
from core.retrieval.embedders import EMBEDDERS, OnnxEmbedder, SentenceTransformersEmbedder, get_embedder
from core.tables.sources import TABLE_SOURCES, make_source
from tests.fixtures.core import make_settings
from tests.fixtures.retrieval import HashEmbedder


def test_every_built_in_is_registered_through_its_entry_point_group() -> None:
    assert CONNECTORS.names() == ["files", "git", "http"]
    assert EMBEDDERS.names() == ["llama_cpp", "onnx", "openai", "sentence_transformers"]
    assert TABLE_SOURCES.names() == ["csv", "parquet", "postgres", "sqlite"]
    assert LLM_BACKENDS.names() == ["in_process", "openai", "server"]
    assert CONNECTORS.get("files") is FilesConnector
    assert EMBEDDERS.get("sentence_transformers") is SentenceTransformersEmbedder
    assert EMBEDDERS.get("onnx") is OnnxEmbedder


@pytest.mark.parametrize(
    ("reg", "name", "message"),
    [
        (CONNECTORS, "jira", "Unknown connector 'jira'; available: files, git, http"),
        (
            TABLE_SOURCES,
            "mongo",
            "Unknown table source type 'mongo'; available: csv, parquet, postgres, sqlite",
        ),
        (LLM_BACKENDS, "vllm", "Unknown LLM backend 'vllm'; available: in_process, openai, server"),
    ],
)
def test_an_unknown_name_lists_the_known_ones(reg: Registry[object], name: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        reg.get(name)
    assert str(info.value) == message


def plugin_registry(monkeypatch: pytest.MonkeyPatch, *eps: EntryPoint) -> Registry[object]:
    """A registry whose group holds ``eps``, as a third-party package's pyproject would add them."""
    real = registry_module.entry_points

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return (
            [ep for ep in eps if ep.group == group]
            if group == "hearth.test_plugins"
            else list(real(group=group))
        )

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    return Registry("test plugin", "hearth.test_plugins")


def test_a_third_party_entry_point_loads_when_first_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint("hash", "tests.fixtures.retrieval:HashEmbedder", "hearth.test_plugins")
    plugins = plugin_registry(monkeypatch, ep)
    assert plugins.names() == ["hash"]
    assert plugins.get("hash") is HashEmbedder


def test_a_broken_plugin_is_a_config_error_naming_it_and_the_rest_still_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugins = plugin_registry(
        monkeypatch,
        EntryPoint("broken", "hearth_no_such_plugin:Thing", "hearth.test_plugins"),
        EntryPoint("hash", "tests.fixtures.retrieval:HashEmbedder", "hearth.test_plugins"),
    )
    with pytest.raises(
        ConfigError, match=r"test plugin 'broken' \(hearth_no_such_plugin:Thing\) could not be loaded"
    ):
        plugins.get("broken")
    assert plugins.get("hash") is HashEmbedder


def test_a_registry_with_no_entry_points_says_hearth_may_not_be_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugins = plugin_registry(monkeypatch)
    with pytest.raises(ConfigError, match="available: none .*is Hearth installed"):
        plugins.get("anything")


def test_a_fake_registered_in_code_serves_its_name_and_the_built_in_comes_back() -> None:
    settings = EmbedSettings()
    with EMBEDDERS.registered("onnx", lambda s: HashEmbedder()):
        assert isinstance(get_embedder(settings), HashEmbedder)
    assert isinstance(get_embedder(settings), OnnxEmbedder)
    with EMBEDDERS.registered("hash", lambda s: HashEmbedder()):
        assert "hash" in EMBEDDERS.names() and isinstance(get_embedder(settings, "hash"), HashEmbedder)
    assert "hash" not in EMBEDDERS.names()


def test_build_router_takes_each_backend_from_the_registry(tmp_path: Path) -> None:
    local, remote = FakeBackend(name="local-fake"), FakeBackend(name="remote-fake")
    settings = make_settings(
        tmp_path, llm={"local": {"engine": "in_process"}, "remote": {"base_url": "http://x/v1"}}
    )
    with (
        LLM_BACKENDS.registered("in_process", lambda llm: local),
        LLM_BACKENDS.registered("openai", lambda llm: remote),
    ):
        router = build_router(settings.llm)
    assert router.local is local and router.backends.get("remote") is remote and router.queue.capacity == 1


def test_build_router_uses_the_built_in_backends(tmp_path: Path) -> None:
    router = build_router(make_settings(tmp_path, llm={"remote": {"base_url": "http://127.0.0.1:9/v1"}}).llm)
    assert isinstance(router.local, LlamaServerBackend) and isinstance(
        router.backends.get("remote"), OpenAICompatBackend
    )
    router = build_router(
        make_settings(tmp_path, llm={"local": {"engine": "in_process", "enabled": True}}).llm
    )
    assert isinstance(router.local, LlamaCppBackend) and "remote" not in router.backends
    router = build_router(make_settings(tmp_path, llm={"local": {"enabled": False}}).llm)
    assert router.local is None


def test_the_core_imports_no_connector_and_no_driver_until_one_is_used() -> None:
    code = (
        "import sys\n"
        "import core.retrieval.connectors, core.retrieval.embedders, core.tables.sources, core.llm.registry\n"
        "loaded = [m for m in ('connectors', 'duckdb', 'psycopg', 'llama_cpp', 'openai', 'sentence_transformers')"
        " if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert out.stdout.strip() == ""


def _load(tmp_path: Path, text: str) -> object:
    config = tmp_path / "hearth.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\n{text}", encoding="utf-8")
    return load_settings(config)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "tables:\n  - {name: erp, type: oracle, url: 'oracle://db/erp'}\n",
            "tables.0.type: Unknown table source type 'oracle'; available: csv, parquet, postgres, sqlite",
        ),
        (
            "embed:\n  backend: cohere\n",
            "embed.backend: Unknown embedder 'cohere'; available: llama_cpp, onnx, openai, sentence_transformers",
        ),
        (
            "llm:\n  local:\n    engine: vllm\n",
            "llm.local.engine: Unknown local LLM engine 'vllm'; available: in_process, server",
        ),
        # The remote API's backend is not a local engine.
        (
            "llm:\n  local:\n    engine: openai\n",
            "llm.local.engine: Unknown local LLM engine 'openai'; available: in_process, server",
        ),
    ],
)
def test_an_unknown_plugin_name_in_hearth_yaml_names_the_key_and_the_known_ones(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, yaml_text)
    assert message in str(info.value).splitlines()[1]


class OracleSource:
    """A third-party table source: only what the settings and make_source need."""

    dialect = "oracle"

    def __init__(self, spec: object, settings: object) -> None:
        self.spec = spec


def test_a_plugin_registered_through_the_registry_becomes_nameable_in_hearth_yaml(tmp_path: Path) -> None:
    tables = "tables:\n  - {name: erp, type: oracle, url: 'oracle://db/erp'}\n"
    with (
        TABLE_SOURCES.registered("oracle", OracleSource),
        EMBEDDERS.registered("hash", lambda s: HashEmbedder()),
        LLM_BACKENDS.registered("vllm", lambda llm: FakeBackend(name="vllm")),
    ):
        settings = _load(tmp_path, tables + "embed:\n  backend: hash\nllm:\n  local:\n    engine: vllm\n")
        assert isinstance(settings, type(make_settings(tmp_path)))
        assert settings.tables[0].type == "oracle"
        assert isinstance(make_source(settings.tables[0], settings), OracleSource)
        assert isinstance(get_embedder(settings.embed), HashEmbedder)
        local = build_router(settings.llm).local
        assert isinstance(local, FakeBackend) and local.name == "vllm"
    with pytest.raises(ConfigError, match="Unknown table source type 'oracle'"):
        _load(tmp_path, tables)


def test_a_plugin_source_needs_a_path_or_a_url(tmp_path: Path) -> None:
    with (
        TABLE_SOURCES.registered("oracle", OracleSource),
        pytest.raises(ConfigError, match="needs 'path' or 'url'"),
    ):
        _load(tmp_path, "tables:\n  - {name: erp, type: oracle}\n")


def test_the_built_in_defaults_stay(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert (settings.llm.local.engine, settings.embed.backend) == ("server", "onnx")
