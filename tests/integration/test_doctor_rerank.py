"""`hearth doctor`'s reranker line on real parts: a cross-encoder directory through the graph cache,
and a reranking GGUF under the engine supervisor (a stand-in llama-server, as the pipeline tests)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from server.cli.doctor_rerank import rerank_check
from tests.fixtures.core import make_settings
from tests.fixtures.rerank_server import write_stand_in
from tests.integration.test_rerank_cross_encoder import make_cross_encoder

pytestmark = pytest.mark.slow


def gguf(path: Path, arch: str, pooling: int | None) -> Path:
    """A GGUF header with ``general.architecture`` and, if given, ``<arch>.pooling_type`` (no tensors)."""

    def text(s: str) -> bytes:
        return struct.pack("<Q", len(s.encode())) + s.encode()

    entries = [text("general.architecture") + struct.pack("<I", 8) + text(arch)]
    if pooling is not None:
        entries.append(text(f"{arch}.pooling_type") + struct.pack("<II", 4, pooling))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries)) + b"".join(entries))
    return path


def test_a_cross_encoder_loads_through_the_graph_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = make_cross_encoder(tmp_path / "ms-marco-like")
    settings = make_settings(
        tmp_path, retrieval={"rerank": {"backend": "cross_encoder", "model_path": str(model)}}
    )
    quick = rerank_check(settings, load=False)
    assert quick.ok and re.search(r"bert, 22\.\dM parameters \(9\d MB\), not loaded", quick.detail), quick
    first = rerank_check(settings, load=True)
    assert first.ok and "built its graph (cached for the next start) in" in first.detail, first
    assert re.search(r"one pair scores in \d+ ms", first.detail)
    assert list((tmp_path / "cache" / "hearth" / "onnx").glob("*cross_encoder*.onnx"))
    again = rerank_check(settings, load=True)
    assert again.ok and "opens its cached graph in" in again.detail, again

    for name in ("tokenizer.json", "vocab.txt"):
        (model / name).unlink(missing_ok=True)
    broken = rerank_check(settings, load=True)
    assert not broken.ok and broken.required and "retrieval.rerank.model_path" in broken.fix, broken


@pytest.mark.parametrize("fail", [False, True])
def test_a_reranking_gguf_starts_under_the_supervisor_and_is_stopped(tmp_path: Path, fail: bool) -> None:
    pids = tmp_path / "pids.txt"
    server = write_stand_in(tmp_path / "llama-server", starts=pids, fail=fail)
    model = gguf(tmp_path / "bge-reranker-v2-m3-Q8_0.gguf", "bert", 4)
    settings = make_settings(
        tmp_path,
        llm={"local": {"server_path": str(server), "restart_backoff_max_s": 0}},
        retrieval={"rerank": {"backend": "llama_cpp", "model_path": str(model)}},
    )
    assert rerank_check(settings, load=False).detail.endswith("(bert, 0 MB), engine not started (--no-load)")
    line = rerank_check(settings, load=True)
    if fail:
        assert not line.ok and line.required and "corrupted file" in line.detail, line
        assert "llm.local.server_path" in line.fix
    else:
        assert line.ok, line
        assert re.search(r"engine starts in \d+\.\d\ds, one document reranks in \d+ ms", line.detail)
    for pid in pids.read_text().split():  # the doctor leaves no engine running
        assert not Path(f"/proc/{pid}").exists() or "(Z)" in Path(f"/proc/{pid}/stat").read_text()
    chat = gguf(tmp_path / "gemma.gguf", "gemma3", None)
    settings = make_settings(
        tmp_path, retrieval={"rerank": {"backend": "llama_cpp", "model_path": str(chat)}}
    )
    warn = rerank_check(settings, load=True)
    assert not warn.ok and not warn.required and "no rank pooling" in warn.detail
