"""`hearth doctor`'s reranker line for ``backend: remote`` against a /v1/rerank service on loopback,
and the lines for a stage that is off or misconfigured."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from server.cli import main
from server.cli.doctor_check import Check
from server.cli.doctor_rerank import rerank_check
from tests.fixtures.core import make_settings


@dataclass
class FakeRerankService:
    """A /v1/rerank service in the shape llama-server --reranking, Jina and TEI share.

    Modelled: bearer auth (401 with an ``error`` object, as llama-server), a body check (400 for a
    missing query or empty documents), an unknown model (400, as Jina), ``top_n`` (results sorted by
    score, cut to top_n), 503 while "loading the model", 404 on any other path, and a delay.
    Left out: token limits, truncation and batching; the score is word overlap, not a model.
    """

    key: str | None = "rk-test"
    models: tuple[str, ...] = ("bge-reranker-v2-m3",)
    delay_s: float = 0.0
    loading: bool = False
    shape: str = "results"  # "data": answers in another service's shape
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/rerank", self.rerank)
        return app

    async def rerank(self, request: web.Request) -> web.Response:
        if self.key is not None and request.headers.get("Authorization") != f"Bearer {self.key}":
            error = {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}
            return web.json_response({"error": error}, status=401)
        if self.loading:
            error = {"code": 503, "message": "Loading model", "type": "unavailable_error"}
            return web.json_response({"error": error}, status=503)
        body = await request.json()
        self.requests.append(body)
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            error = {"code": 400, "message": '"query" and a non-empty "documents" are required'}
            return web.json_response({"error": error}, status=400)
        model = body.get("model")
        if model is not None and model not in self.models:
            return web.json_response({"detail": f"Model '{model}' not found"}, status=400)
        await asyncio.sleep(self.delay_s)
        words = set(query.lower().split())
        scored = [(i, len(words & set(str(d).lower().split())) / len(words)) for i, d in enumerate(documents)]
        scored.sort(key=lambda x: -x[1])
        top = scored[: int(body.get("top_n") or len(documents))]
        if self.shape == "data":
            return web.json_response({"data": [{"index": i, "score": s} for i, s in top]})
        return web.json_response({"results": [{"index": i, "relevance_score": s} for i, s in top]})


@pytest.fixture
async def rerank_service() -> AsyncIterator[FakeRerankService]:
    service = FakeRerankService()
    runner = web.AppRunner(service.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    service.url = f"http://127.0.0.1:{port}"
    yield service
    await runner.cleanup()


async def check(tmp_path: Path, **rerank: Any) -> Check:
    settings = make_settings(tmp_path, retrieval={"rerank": {"backend": "remote", **rerank}})
    return await asyncio.to_thread(rerank_check, settings, load=True)  # the doctor's sync client


async def test_a_remote_reranker_that_answers_within_the_budget_is_ok(
    tmp_path: Path, rerank_service: FakeRerankService
) -> None:
    line = await check(
        tmp_path, url=rerank_service.url, api_key="rk-test", model="bge-reranker-v2-m3", budget_ms=2000
    )
    assert line.ok and line.required, line
    assert f"{rerank_service.url}/v1/rerank (bge-reranker-v2-m3): one document reranked in" in line.detail
    assert "budget 2000 ms" in line.detail
    sent = rerank_service.requests[-1]
    assert sent["model"] == "bge-reranker-v2-m3" and len(sent["documents"]) == 1 and sent["top_n"] == 1
    # A URL already ending in /v1 or /v1/rerank reaches the same endpoint.
    for url in (rerank_service.url + "/v1", rerank_service.url + "/v1/rerank"):
        assert (await check(tmp_path, url=url, api_key="rk-test")).ok


async def test_each_remote_failure_is_one_line_naming_the_setting(
    tmp_path: Path, rerank_service: FakeRerankService
) -> None:
    url = rerank_service.url
    no_key = await check(tmp_path, url=url)
    assert not no_key.ok and no_key.required
    assert "rejected the key (HTTP 401: Invalid API Key)" in no_key.detail
    assert no_key.fix == "set retrieval.rerank.api_key"
    wrong_key = await check(tmp_path, url=url, api_key="rk-wrong")
    assert not wrong_key.ok and wrong_key.fix == "check retrieval.rerank.api_key"

    wrong_url = await check(tmp_path, url=url + "/api", api_key="rk-test")
    assert not wrong_url.ok and wrong_url.required and "HTTP 404" in wrong_url.detail
    assert "retrieval.rerank.url" in wrong_url.fix

    model = await check(tmp_path, url=url, api_key="rk-test", model="ms-marco")
    assert not model.ok and "HTTP 400: Model 'ms-marco' not found" in model.detail
    assert "retrieval.rerank.model" in model.fix

    rerank_service.shape = "data"
    shape = await check(tmp_path, url=url, api_key="rk-test")
    assert not shape.ok and "without a 'results' list" in shape.detail and "retrieval.rerank.url" in shape.fix
    rerank_service.shape = "results"

    # Down or slow: a warning (questions keep the fused order), not a failed doctor.
    rerank_service.loading = True
    loading = await check(tmp_path, url=url, api_key="rk-test")
    assert not loading.ok and not loading.required and "HTTP 503: Loading model" in loading.detail
    rerank_service.loading = False
    rerank_service.delay_s = 1.0
    slow = await check(tmp_path, url=url, api_key="rk-test", budget_ms=200)
    assert not slow.ok and not slow.required
    assert "within retrieval.rerank.budget_ms (200 ms)" in slow.detail and "budget_ms" in slow.fix
    rerank_service.delay_s = 0.0

    await rerank_service_gone(tmp_path)


async def rerank_service_gone(tmp_path: Path) -> None:
    """Nothing listens on the port: unreachable, named by the URL setting."""
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await runner.cleanup()  # the port was free a moment ago and now nothing listens on it
    gone = await check(tmp_path, url=f"http://127.0.0.1:{port}", api_key="rk-test")
    assert not gone.ok and not gone.required and "unreachable" in gone.detail
    assert "retrieval.rerank.url" in gone.fix


def test_off_is_an_ok_not_configured_and_a_missing_setting_fails(tmp_path: Path) -> None:
    off = rerank_check(make_settings(tmp_path), load=True)
    assert off.ok and not off.required and "not configured" in off.detail
    no_url = rerank_check(make_settings(tmp_path, retrieval={"rerank": {"backend": "remote"}}), load=True)
    assert not no_url.ok and no_url.fix.startswith("set retrieval.rerank.url")
    absent = tmp_path / "absent"
    for backend in ("cross_encoder", "llama_cpp"):
        settings = make_settings(
            tmp_path, retrieval={"rerank": {"backend": backend, "model_path": str(absent)}}
        )
        line = rerank_check(settings, load=False)
        assert not line.ok and line.required and "retrieval.rerank.model_path" in line.fix, line
    junk = tmp_path / "reranker.gguf"
    junk.write_bytes(b"PK\x03\x04 not a model")
    settings = make_settings(
        tmp_path, retrieval={"rerank": {"backend": "llama_cpp", "model_path": str(junk)}}
    )
    line = rerank_check(settings, load=True)
    assert not line.ok and "is not a GGUF file" in line.detail


async def test_hearth_doctor_prints_the_reranker_line(
    tmp_path: Path, rerank_service: FakeRerankService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HEARTH_RETRIEVAL__RERANK__BACKEND", "remote")
    monkeypatch.setenv("HEARTH_RETRIEVAL__RERANK__URL", rerank_service.url)
    monkeypatch.setenv("HEARTH_RETRIEVAL__RERANK__API_KEY", "rk-wrong")
    result = await asyncio.to_thread(CliRunner().invoke, main, ["doctor", "--no-load", "--json"])
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert not checks["reranker"]["ok"] and "HTTP 401" in checks["reranker"]["detail"]
    assert result.exit_code == 1  # a refused key is a required check
