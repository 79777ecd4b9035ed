"""The REST API through aiohttp's test client: auth, limits, errors, JSON and SSE answers."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from core.assistant import Assistant
from core.audit import recent
from core.contracts import Answer
from core.llm.fake import FakeBackend
from core.llm.router import Router
from core.refusals import ENGLISH, Reason, Refusal
from server import api, bodies
from server.app import ASSISTANT, AUDIT, DATABASE, INTAKE, SETTINGS, create_app
from server.auth import PUBLIC_PATHS, TOKENS
from server.bodies import TABLE_QUESTION_CHARS
from server.openapi import CONTRACT, SCHEMAS
from tests.fixtures.core import make_settings


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a Server-Sent Events body."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def start(aiohttp_client: Any, tmp_path: Path, backend: FakeBackend, **server: Any) -> Any:
    settings = make_settings(tmp_path, server=server) if server else make_settings(tmp_path)
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    client = await aiohttp_client(create_app(settings, assistant=assistant))
    _, token = await client.app[TOKENS].create("alice", ["group:eng"])
    client.token = token
    client.backend = backend
    client.auth = {"Authorization": f"Bearer {token}"}
    return client


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    return await start(aiohttp_client, tmp_path, FakeBackend(reply="Hearth fake answer."))


async def test_ask_json_returns_the_answer_contract(client: Any) -> None:
    resp = await client.post("/v1/ask", json={"question": "What is Hearth?"}, headers=client.auth)
    assert resp.status == 200
    body = await resp.json()
    assert body["answer"] == "Hearth fake answer."
    assert body["backend"] == "local" and body["model"] == "fake-model"
    assert set(body) >= {"citations", "usage", "timings_ms", "notices", "request_id"}
    assert resp.headers["X-Request-Id"] == body["request_id"]


async def test_ask_streams_server_sent_events(client: Any) -> None:
    headers = client.auth | {"Accept": "text/event-stream", "X-Request-Id": "req-123"}
    resp = await client.post(
        "/v1/ask", json={"question": "Hi", "history": [{"role": "user", "text": "x"}]}, headers=headers
    )
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    events = parse_sse(await resp.text())
    deltas = [d["text"] for e, d in events if e == "delta"]
    assert len(deltas) == 3 and "".join(deltas) == "Hearth fake answer."
    assert events[-1][0] == "answer" and events[-1][1]["request_id"] == "req-123"


async def test_history_reaches_the_prompt(client: Any) -> None:
    body = {
        "question": "And the second?",
        "history": [{"role": "user", "text": "first question about llamas"}],
    }
    assert (await client.post("/v1/ask", json=body, headers=client.auth)).status == 200
    prompt = " ".join(m.content for m in client.backend.calls[-1].messages)
    assert "llamas" in prompt


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer hth_000000000000_wrongwrongwrongwrongwrong"},
        {"Authorization": "Basic abc"},
    ],
)
async def test_missing_or_wrong_token_is_401(client: Any, headers: dict[str, str]) -> None:
    resp = await client.post("/v1/ask", json={"question": "x"}, headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert client.backend.calls == []


async def test_revoked_token_is_401(client: Any) -> None:
    assert await client.app[TOKENS].revoke(user="alice") == 1
    resp = await client.post("/v1/ask", json={"question": "x"}, headers=client.auth)
    assert resp.status == 401


async def test_token_acl_becomes_the_request_acl(client: Any) -> None:
    seen: list[frozenset[str] | None] = []

    class Retriever:
        async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> list[Any]:
            seen.append(acl)
            return []

    client.app[ASSISTANT].retriever = Retriever()
    resp = await client.post("/v1/search", json={"query": "leave policy", "k": 3}, headers=client.auth)
    assert resp.status == 200 and (await resp.json())["hits"] == []
    assert seen == [frozenset({"public", "user:alice", "group:eng"})]


async def test_search_without_retrieval_is_501(client: Any) -> None:
    resp = await client.post("/v1/search", json={"query": "x"}, headers=client.auth)
    assert resp.status == 501
    assert "not available" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/code/generate", {"code": "# add two numbers", "language": "python"}),
        ("/v1/code/tests", {"code": "def f(): pass", "language": "python"}),
        ("/v1/tables/ask", {"question": "how many?"}),
    ],
)
async def test_capabilities_not_wired_are_501(client: Any, path: str, body: dict[str, Any]) -> None:
    resp = await client.post(path, json=body, headers=client.auth)
    assert resp.status == 501, await resp.text()
    assert declared(client, path, 501)  # /v1/tables/ask answered an undeclared 501 before issue 23


async def test_code_explain_streams_through_the_explain_template(client: Any) -> None:
    body = {"code": "def add(a, b):\n    return a + b", "language": "python", "path": "calc.py"}
    resp = await client.post("/v1/code/explain", json=body, headers=client.auth | {"X-Hearth-Surface": "lsp"})
    assert resp.status == 200
    assert (await resp.json())["answer"] == "Hearth fake answer."
    prompt = " ".join(m.content for m in client.backend.calls[-1].messages)
    assert "return a + b" in prompt and "calc.py" in prompt
    assert client.backend.calls[-1].options.priority == 0  # editor requests jump the queue


# What a model writes for code: a fenced module with a test in it (usable for generate and tests).
CODE_REPLY = "```python\ndef test_add():\n    assert 1 + 2 == 3\n```"


@pytest.fixture
async def coder(aiohttp_client: Any, tmp_path: Path) -> Any:
    """A client whose model writes code, with the code service wired."""
    from core.code.service import CodeService

    client = await start(aiohttp_client, tmp_path, FakeBackend(reply=CODE_REPLY))
    client.app[ASSISTANT].code = CodeService(client.app[ASSISTANT])
    return client


async def test_code_generate_and_tests_stream_through_the_code_service(coder: Any) -> None:
    client = coder
    assert client.app[ASSISTANT].code is not None
    body = {"code": 'def add(a, b):\n    """Add two numbers."""\n', "language": "python", "path": "calc.py"}
    sse = client.auth | {"Accept": "text/event-stream", "X-Hearth-Surface": "lsp"}
    resp = await client.post("/v1/code/generate", json=body, headers=sse)
    events = parse_sse(await resp.text())
    assert events[-1][0] == "answer" and "def test_add():" in events[-1][1]["answer"]
    assert "Add two numbers." in " ".join(m.content for m in client.backend.calls[-1].messages)
    resp = await client.post(
        "/v1/code/tests",
        json=body | {"failures": "AssertionError: 3 != 4", "previous": "def test_add(): ..."},
        headers=client.auth,
    )
    assert resp.status == 200 and "assert 1 + 2 == 3" in (await resp.json())["answer"]
    module = (await resp.json())["answer"]  # a whole pytest module a client can save and run
    assert module.startswith("import pytest\nfrom calc import add\n") and ast.parse(module)
    assert "3 != 4" in " ".join(m.content for m in client.backend.calls[-1].messages)
    calls = len(client.backend.calls)
    resp = await client.post("/v1/code/tests", json=body | {"language": "cobol"}, headers=sse)
    assert resp.status == 400 and resp.headers["Content-Type"].startswith("application/json")
    assert "for Python only" in (await resp.json())["message"] and len(client.backend.calls) == calls
    rows = await _audit_rows(client)
    # A language outside the declared enum is a malformed request (400), refused before the intake.
    assert [(r["action"], r["surface"], r["status"]) for r in rows[:2]] == [
        ("code.tests", "rest", "ok"),
        ("code.generate", "lsp", "ok"),
    ]


async def test_tables_ask_answers_with_sql_over_a_csv(aiohttp_client: Any, tmp_path: Path) -> None:
    from core.tables.service import TableService

    csv = tmp_path / "sales.csv"
    csv.write_text("region,units\neast,3\nwest,4\n", encoding="utf-8")
    settings = make_settings(
        tmp_path, tables=[{"name": "sales", "type": "csv", "path": str(csv), "acl": ["group:eng"]}]
    )
    backend = FakeBackend(reply="SELECT SUM(units) AS total FROM sales")
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    assistant.tables = TableService(settings, assistant.router, assistant.prompts)
    client = await aiohttp_client(create_app(settings, assistant=assistant))
    _, token = await client.app[TOKENS].create("alice", ["group:eng"])
    _, outsider = await client.app[TOKENS].create("mallory", [])
    resp = await client.post(
        "/v1/tables/ask",
        json={"question": "How many units in total?"},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert body["rows"] == [[7]] and "SUM(units)" in body["sql"] and body["source"] == "sales"
    resp = await client.post(
        "/v1/tables/ask",
        json={"question": "How many units in total?"},
        headers={"Authorization": f"Bearer {outsider}"},
    )
    body = await resp.json()
    # Someone without the table's grant is refused as if it did not exist: its name never leaks.
    assert resp.status == 403 and body["error"]["code"] == "forbidden", body
    assert "sales" not in json.dumps(body).lower()
    # A source that does not exist, or that the token may not read, is a declared 404 before any SQL.
    calls = len(backend.calls)
    for who, source in ((token, "nope"), (outsider, "sales")):
        resp = await client.post(
            "/v1/tables/ask",
            json={"question": "How many units?", "source": source},
            headers={"Authorization": f"Bearer {who}"},
        )
        body = await resp.json()
        assert resp.status == 404 and declared(client, "/v1/tables/ask", 404), body
        assert f"Unknown table source '{source}'" in body["message"]
    assert len(backend.calls) == calls
    # The table service's own cap on questions is declared and refused at the body.
    doc = client.app[CONTRACT].document(max_question_chars=client.app[INTAKE].limit_for("rest"))
    question = doc["components"]["schemas"]["TablesAskBody"]["properties"]["question"]
    assert question["maxLength"] == min(TABLE_QUESTION_CHARS, client.app[INTAKE].limit_for("rest"))
    resp = await client.post(
        "/v1/tables/ask",
        json={"question": "x" * (question["maxLength"] + 1)},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 400, await resp.text()


async def test_a_table_answer_names_its_files_but_never_the_servers_paths(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    import base64

    from jsonschema import Draft202012Validator

    from core.tables.service import TableService, table_json

    csv = tmp_path / "sales.csv"
    csv.write_text("region,units\neast,3\nwest,4\nnorth,5\n", encoding="utf-8")
    settings = make_settings(
        tmp_path,
        tables=[{"name": "sales", "type": "csv", "path": str(csv)}],
        table_limits={"chat_rows": 2},  # three rows: more than a chat shows, so a CSV is written
    )
    backend = FakeBackend(reply="SELECT region, units FROM sales ORDER BY region")
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    assistant.tables = TableService(settings, assistant.router, assistant.prompts)
    client = await aiohttp_client(create_app(settings, assistant=assistant))
    _, token = await client.app[TOKENS].create("alice", [])
    resp = await client.post(
        "/v1/tables/ask", json={"question": "Units per region?"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200, await resp.text()
    text = await resp.text()
    body = json.loads(text)
    results = settings.path("results")
    assert str(tmp_path) not in text and str(results) not in text  # no server path anywhere
    assert body["rows"] == [["east", 3], ["north", 5], ["west", 4]]  # all of them, not chat's two
    assert body["csv"] and "/" not in body["csv"] and (results / body["csv"]).is_file()
    assert body["csv"] in " ".join(body["notices"])  # the notice names the same file
    assert body["chart"] and "/" not in body["chart"] and (results / body["chart"]).is_file()
    assert base64.b64decode(body["chart_png_base64"]).startswith(b"\x89PNG")
    doc = client.app[CONTRACT].document()
    schema = doc["paths"]["/v1/tables/ask"]["post"]["responses"]["200"]["content"]["application/json"]
    validator = Draft202012Validator(schema["schema"] | {"components": doc["components"]})
    assert list(validator.iter_errors(body)) == []
    # The schema says so: a path would not validate.
    assert list(validator.iter_errors(body | {"csv": str(results / body["csv"])}))
    # The local CLI (`hearth tables ask --json`) keeps the full path: it runs where the files are.
    answer = await assistant.tables.ask("Units per region?", source=None, acl=None)
    local = table_json(answer)
    assert local["csv"].startswith(str(results)) and local["chart"].startswith(str(results))
    await assistant.aclose()


def test_the_table_question_cap_is_the_table_services() -> None:
    from core.tables import service

    assert service._MAX_QUESTION_CHARS == TABLE_QUESTION_CHARS


@pytest.mark.parametrize(
    "raw,needle",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"", "empty"),
        (b'{"history": []}', "Field 'question' is required"),
        (b'{"question": "x", "history": [{"role": "robot", "text": "x"}]}', "history.0.role"),
    ],
)
async def test_malformed_bodies_are_400_naming_the_problem(client: Any, raw: bytes, needle: str) -> None:
    resp = await client.post("/v1/ask", data=raw, headers=client.auth | {"Content-Type": "application/json"})
    assert resp.status == 400
    body = await resp.json()
    assert needle in body["error"]["message"] and body["request_id"]


def declared(client: Any, path: str, status: int) -> bool:
    """Whether the served document lists ``status`` for POST ``path``."""
    op = client.app[CONTRACT].document()["paths"][path]["post"]
    return str(status) in op["responses"]


NESTED = b'{"question": "x", "history": ' + b"[" * 40 + b"]" * 40 + b"}"


@pytest.mark.parametrize(
    "path,raw,content_type,needle",
    [
        ("/v1/ask", b"[" * 100_000 + b"]" * 100_000, "application/json", "nested too deeply"),
        ("/v1/ask", NESTED, "application/json", "nested too deeply"),
        ("/v1/ask", b'{"question": "x", "n": ' + b"9" * 5000 + b"}", "application/json", "too long"),
        ("/v1/search", b'{"query": "x", "k": 1e999}', "application/json", "too large"),
        ("/v1/search", b'{"query": "x", "k": NaN}', "application/json", "NaN is not a JSON number"),
        ("/v1/search", b'{"query": "x", "k": true}', "application/json", "Field 'k': must be an integer"),
        ("/v1/search", b'{"query": "x", "k": "5"}', "application/json", "Field 'k': must be an integer"),
        ("/v1/ask", b'{"question": "caf\xe9"}', "application/json", "not UTF-8"),
        ("/v1/ask", '{"question": "x"}'.encode("utf-16"), "application/json", "not UTF-8"),
        ("/v1/ask", b'{"question": "\\ud800"}', "application/json", "unpaired surrogate"),
        ("/v1/ask", b'{"question": "x"}', "text/plain", "Content-Type: application/json"),
        ("/v1/ask", b"question=x", "application/x-www-form-urlencoded", "not application/x-www-form"),
        ("/v1/ask", b'{"question": "x"}', "application/json; charset=latin-1", "charset=latin-1"),
        ("/v1/ask", b'"a question"', "application/json", "JSON object, not a string"),
        ("/v1/ask", b"null", "application/json", "JSON object, not null"),
        ("/v1/ask", b'{"question": "   \\n"}', "application/json", "Please ask a question"),
        ("/v1/code/explain", b'{"code": "a\\u0000b", "language": "c"}', "application/json", "binary data"),
    ],
    ids=[
        "deep-array",
        "deep-field",
        "5000-digits",
        "1e999",
        "nan",
        "bool-for-int",
        "string-for-int",
        "latin-1-bytes",
        "utf-16",
        "lone-surrogate",
        "text-plain",
        "form",
        "latin-1-charset",
        "string",
        "null",
        "whitespace-question",
        "nul-in-code",
    ],
)
async def test_malformed_bodies_beyond_the_schema_are_400(
    client: Any, path: str, raw: bytes, content_type: str, needle: str
) -> None:
    resp = await client.post(path, data=raw, headers=client.auth | {"Content-Type": content_type})
    body = await resp.json()
    assert resp.status == 400 and declared(client, path, 400), body
    assert body["error"]["code"] == "bad_request" and needle in body["message"], body
    assert client.backend.calls == []


async def test_a_body_without_content_type_is_read_as_json(client: Any) -> None:
    resp = await client.post(
        "/v1/ask", data=b'{"question": "x"}', headers=client.auth, skip_auto_headers=["Content-Type"]
    )
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("path,body", [("/v1/ask", {"question": "x"}), ("/v1/search", {"query": "x"})])
async def test_the_surface_header_is_the_declared_enum(client: Any, path: str, body: dict[str, str]) -> None:
    op = client.app[CONTRACT].document()["paths"][path]["post"]
    (param,) = [p for p in op["parameters"] if p["name"] == "X-Hearth-Surface"]
    assert set(param["schema"]["enum"]) == bodies.SURFACES
    client.app[ASSISTANT].retriever = EmptyRetriever()
    for bad in ("bogus", "LSP", "slack", ""):
        resp = await client.post(path, json=body, headers=client.auth | {"X-Hearth-Surface": bad})
        assert resp.status == 400, (bad, await resp.text())
        assert "X-Hearth-Surface must be one of cli, lsp, rest, web" in (await resp.json())["message"]
    for good in sorted(bodies.SURFACES):
        resp = await client.post(path, json=body, headers=client.auth | {"X-Hearth-Surface": good})
        assert resp.status == 200, (good, await resp.text())
    rows = await _audit_rows(client)
    assert [r["surface"] for r in rows[:4]] == sorted(bodies.SURFACES, reverse=True)
    assert client.backend.calls == [] or path == "/v1/ask"


@pytest.mark.parametrize("path", ["/v1/code/generate", "/v1/code/tests"])
async def test_code_generation_declares_the_languages_it_takes(coder: Any, path: str) -> None:
    from core.code.context import RUNNABLE

    client = coder
    doc = client.app[CONTRACT].document()
    ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    language = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["language"]
    assert language["enum"] == sorted(RUNNABLE)
    for lang in ("cobol", "Python", "javascript"):
        resp = await client.post(path, json={"code": "def f(): pass", "language": lang}, headers=client.auth)
        body = await resp.json()
        assert (
            resp.status == 400
            and f"a {lang} file: Hearth generates and runs code for Python only" in body["message"]
        )
    for lang in language["enum"]:
        resp = await client.post(path, json={"code": "def f(): pass", "language": lang}, headers=client.auth)
        assert resp.status == 200, await resp.text()
    # Explain takes any language, and says so.
    explain = doc["components"]["schemas"]["ExplainBody"]["properties"]["language"]
    assert "enum" not in explain
    resp = await client.post(
        "/v1/code/explain",
        json={"code": "IDENTIFICATION DIVISION.", "language": "cobol"},
        headers=client.auth,
    )
    assert resp.status == 200


class EmptyRetriever:
    """A retriever with nothing indexed."""

    async def search(self, query: str, *, acl: frozenset[str] | None, k: int) -> list[Any]:
        return []


async def test_oversized_body_is_413(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path, FakeBackend(), max_body_bytes=2048)
    resp = await client.post("/v1/ask", json={"question": "x" * 5000}, headers=client.auth)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "too_large"
    assert client.backend.calls == []


async def test_rate_limit_is_429_with_retry_after(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path, FakeBackend(), rate_limit_per_minute=2)
    for _ in range(2):
        assert (await client.post("/v1/ask", json={"question": "x"}, headers=client.auth)).status == 200
    resp = await client.post("/v1/ask", json={"question": "x"}, headers=client.auth)
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1


async def test_unknown_route_and_method_are_json(client: Any) -> None:
    resp = await client.get("/v1/nope", headers=client.auth)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.get("/nowhere")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.get("/v1/ask", headers=client.auth)
    assert resp.status == 405 and "POST" in resp.headers["Allow"]


async def test_engine_errors_become_clean_json_without_tracebacks(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, tmp_path, FakeBackend(error=RuntimeError("secret internal detail")))
    resp = await client.post("/v1/ask", json={"question": "x"}, headers=client.auth)
    assert resp.status == 500
    text = await resp.text()
    assert "secret internal detail" not in text and "Traceback" not in text
    assert json.loads(text)["request_id"] == resp.headers["X-Request-Id"]
    assert (await _audit_rows(client))[0]["status"] == "error"


async def test_backend_failure_before_the_first_token_is_an_error_event(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    from core.errors import BackendUnavailable

    client = await start(aiohttp_client, tmp_path, FakeBackend(error=BackendUnavailable("model gone")))
    resp = await client.post(
        "/v1/ask", json={"question": "x"}, headers=client.auth | {"Accept": "text/event-stream"}
    )
    events = parse_sse(await resp.text())
    assert [e for e, _ in events] == ["error"]
    assert "No model could answer" in events[0][1]["message"]


async def test_backend_failure_mid_stream_ends_with_an_error_event(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    from core.errors import BackendUnavailable

    died = "The local model stopped mid-answer; run 'hearth doctor'."
    backend = FakeBackend(
        reply="The VPN guide lives in the wiki", error=BackendUnavailable(died), fail_after=3
    )
    client = await start(aiohttp_client, tmp_path, backend)
    resp = await client.post(
        "/v1/ask", json={"question": "x"}, headers=client.auth | {"Accept": "text/event-stream"}
    )
    events = parse_sse(await resp.text())
    # The deltas already sent stay sent; the stream then ends with one error event, no answer.
    assert [e for e, _ in events] == ["delta", "delta", "delta", "error"]
    assert "".join(d["text"] for e, d in events if e == "delta") == "The VPN guide"
    # Tokens were already sent, so the router does not fall back: the engine's own sentence ends it.
    assert events[-1][1] == {"code": "unavailable", "message": died}
    assert (await _audit_rows(client))[0]["status"] == "error"
    metrics = await (await client.get("/metrics")).text()
    assert 'hearth_answers_total{action="ask",status="error",surface="rest"}' in metrics


async def test_client_disconnect_mid_stream_cancels_generation(aiohttp_client: Any, tmp_path: Path) -> None:
    backend = FakeBackend(reply=" ".join(["word"] * 200), token_delay=0.05)
    client = await start(aiohttp_client, tmp_path, backend)
    resp = await client.post(
        "/v1/ask", json={"question": "x"}, headers=client.auth | {"Accept": "text/event-stream"}
    )
    assert (await resp.content.readline()).startswith(b"event: delta")
    resp.close()  # the client goes away
    queue = client.app[ASSISTANT].router.queue
    for _ in range(200):
        if backend.cancelled and not queue.busy:
            break
        await asyncio.sleep(0.01)
    assert backend.cancelled == 1
    assert not queue.busy
    rows = await _audit_rows(client)
    assert rows[0]["status"] == "cancelled"


async def _audit_rows(client: Any) -> list[dict[str, Any]]:
    await client.app[AUDIT].flush()
    return await recent(client.app[DATABASE])


async def test_audit_rows_record_who_asked_what(client: Any) -> None:
    resp = await client.post("/v1/ask", json={"question": "Where is the wiki?"}, headers=client.auth)
    rid = (await resp.json())["request_id"]
    rows = await _audit_rows(client)
    row = rows[0]
    assert (row["user_name"], row["surface"], row["action"], row["question"]) == (
        "alice",
        "rest",
        "ask",
        "Where is the wiki?",
    )
    assert (row["backend"], row["model"], row["status"], row["request_id"]) == (
        "local",
        "fake-model",
        "ok",
        rid,
    )
    assert client.token not in json.dumps(rows)


async def test_metrics_count_requests_by_route(client: Any) -> None:
    await client.post("/v1/ask", json={"question": "x"}, headers=client.auth)
    text = await (await client.get("/metrics")).text()
    assert 'hearth_http_requests_total{route="/v1/ask",status="200",surface="rest"}' in text
    assert "hearth_http_request_seconds_bucket" in text and "hearth_local_queue_wait_seconds" in text


async def test_readyz_reports_each_check(client: Any) -> None:
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200 and body["ready"] is True
    assert set(body["checks"]) == {"model", "store", "database", "assistant", "shutdown"}


async def test_readyz_is_503_with_the_reason_when_the_database_is_down(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database={"url": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    assistant = Assistant(settings, Router(local=FakeBackend(), remote=None))
    client = await aiohttp_client(create_app(settings, assistant=assistant))
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503 and body["ready"] is False
    assert not body["checks"]["database"]["ok"] and "database.url" in body["checks"]["database"]["detail"]
    assert (
        await client.post("/v1/ask", json={"question": "x"}, headers={"Authorization": "Bearer x"})
    ).status == 401


async def test_openapi_describes_every_route_of_the_api_and_the_probes(client: Any) -> None:
    doc = await (await client.get("/v1/openapi.json")).json()  # no token needed
    limit = client.app[INTAKE].limit_for("rest")
    body_bytes = client.app[SETTINGS].server.max_body_bytes
    assert doc == json.loads(
        json.dumps(client.app[CONTRACT].document(max_question_chars=limit, max_body_bytes=body_bytes))
    )
    assert f"{body_bytes:,} bytes" in doc["paths"]["/v1/ask"]["post"]["requestBody"]["description"]
    described = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    # Every route the app serves but the chat platforms' own callbacks (signed by Slack or DingTalk,
    # not part of this API); HEAD comes with every GET, as HTTP has it.
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in client.app.router.routes()
        if r.resource is not None
        and r.method != "HEAD"
        and not r.resource.canonical.startswith(("/slack", "/dingtalk"))
    }
    probes = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}
    assert routes == described and described - probes and probes <= described
    assert len(described) == len(api.ENDPOINTS) + len(probes)
    public = {p for p, ops in doc["paths"].items() for op in ops.values() if op["security"] == []}
    assert public == PUBLIC_PATHS | {p for _, p in probes}
    for path, body in bodies.BODIES.items():
        ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert set(schema.get("required", [])) == {n for n, f in body.model_fields.items() if f.is_required()}
    # The question bound is the intake's: one character more is refused.
    assert doc["components"]["schemas"]["AskBody"]["properties"]["question"]["maxLength"] == limit
    resp = await client.post("/v1/ask", json={"question": "x" * (limit + 1)}, headers=client.auth)
    assert resp.status == 400 and "limit" in (await resp.json())["message"]


async def test_the_probes_answer_as_the_document_declares(client: Any) -> None:
    from jsonschema import Draft202012Validator

    doc = await (await client.get("/v1/openapi.json")).json()

    def shape(name: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})

    ready = await client.get("/readyz")
    declared = doc["paths"]["/readyz"]["get"]["responses"]
    assert str(ready.status) in declared and set(declared) == {"200", "503"}
    shape("Readiness").validate(await ready.json())
    assert ready.headers["X-Request-Id"]
    metrics = await client.get("/metrics")
    [media] = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert metrics.status == 200 and metrics.content_type == media == "text/plain"
    assert "hearth_http_requests_total" in await metrics.text()
    health = await client.get("/healthz")
    assert await health.json() == {"status": "ok"} and (await client.head("/healthz")).status == 200


def test_openapi_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate

    app = create_app(make_settings(Path("/tmp/unused")))
    validate(app[CONTRACT].document())
    validate(app[CONTRACT].document(max_question_chars=1000))


# The JSON Schema keywords the body schemas may use: a pydantic bound that lands under another name
# ("ge" on a union) would be a bound the document does not declare.
SCHEMA_WORDS = {
    "$ref", "type", "properties", "required", "items", "anyOf", "allOf", "oneOf", "enum", "const",
    "default", "description", "title", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "additionalProperties", "format",
}  # fmt: skip


def _schema_words(schema: Any, where: str) -> list[str]:
    if not isinstance(schema, dict):
        return []
    bad = [f"{where}.{k}" for k in schema if k not in SCHEMA_WORDS]
    for name, sub in (schema.get("properties") or {}).items():
        bad += _schema_words(sub, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        bad += _schema_words(schema.get(key), f"{where}.{key}")
    for key in ("anyOf", "allOf", "oneOf"):
        for i, sub in enumerate(schema.get(key) or []):
            bad += _schema_words(sub, f"{where}.{key}[{i}]")
    return bad


def test_every_schema_bound_is_declared_in_json_schema_words() -> None:
    doc = create_app(make_settings(Path("/tmp/unused")))[CONTRACT].document(max_question_chars=100)
    bad = [w for name, s in doc["components"]["schemas"].items() for w in _schema_words(s, name)]
    assert bad == []


async def test_a_completion_needs_some_code_around_the_cursor(client: Any) -> None:
    for body, needle in [
        ({"language": "python"}, "Nothing to work on"),
        ({"language": "python", "prefix": " \n", "suffix": "\t"}, "Nothing to work on"),
        ({"language": "python", "prefix": "x = \u0000"}, "binary data"),
        ({"language": "python", "suffix": "x", "max_tokens": 513}, "Field 'max_tokens'"),
        ({"language": "python", "suffix": "x", "max_tokens": "5"}, "Field 'max_tokens': must be an integer"),
    ]:
        resp = await client.post("/v1/code/complete", json=body, headers=client.auth)
        assert resp.status == 400 and needle in (await resp.json())["message"], (body, await resp.text())
    assert client.backend.calls == []
    schema = client.app[CONTRACT].document()["components"]["schemas"]["CompleteBody"]
    assert schema["properties"]["max_tokens"]["anyOf"][0]["maximum"] == 512
    assert [a["required"] for a in schema["anyOf"]] == [["prefix"], ["suffix"]]


async def test_completion_without_a_model_that_takes_its_prompts_is_a_declared_501(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    chat_only = FakeBackend(raw_prompts=False)  # what a remote chat API is to the router
    assistant = Assistant(settings, Router(local=None, remote=chat_only, routing=settings.llm.routing))
    client = await aiohttp_client(create_app(settings, assistant=assistant))
    _, token = await client.app[TOKENS].create("alice", [])
    resp = await client.post(
        "/v1/code/complete",
        json={"prefix": "def add(a, b):\n    return ", "language": "python"},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = await resp.json()
    assert resp.status == 501 and declared(client, "/v1/code/complete", 501), body
    # The intake's own refusal (core.intake), worded from the core catalogue as for the editor.
    assert body["message"] == ENGLISH[Reason.COMPLETION_UNAVAILABLE] and chat_only.calls == []
    assert "llm.local" in body["message"]


@pytest.mark.parametrize(
    "local,order,refused",
    [
        (None, ["local", "remote"], True),  # a chat API only
        (True, ["remote"], True),  # a local model the routing never uses
        (True, ["remote", "local"], False),
    ],
)
async def test_the_intake_refuses_completion_when_no_routed_model_takes_its_prompts(
    tmp_path: Path, local: bool | None, order: list[str], refused: bool
) -> None:
    from core.contracts import Completion, Request
    from core.intake import Ask, Intake, Kind

    settings = make_settings(tmp_path, llm={"routing": {"order": order}})
    chat_only, engine = FakeBackend(raw_prompts=False, reply="x"), FakeBackend(reply="return a + b")
    router = Router(local=engine if local else None, remote=chat_only, routing=settings.llm.routing)
    assistant = Assistant(settings, router)
    ask = Ask(
        Kind.COMPLETE, Request(text="complete", surface="lsp"), completion=Completion("x = ", "", "python")
    )
    events = [e async for e in Intake(settings, lambda: assistant).run(ask)]
    if refused:
        assert events == [Refusal(Reason.COMPLETION_UNAVAILABLE)]
        assert engine.calls == [] and chat_only.calls == []
    else:
        assert isinstance(events[-1], Answer) and events[-1].text == "return a + b"
    await assistant.aclose()


def _follow_prompt(messages: Any) -> str:
    """A model that does what the template asks: SQL for sql_*.j2, a test module for tests.j2."""
    prompt = " ".join(m.content for m in messages)
    if "pytest" in prompt:
        return CODE_REPLY
    return (
        "SELECT region, SUM(units) AS units FROM sales GROUP BY region" if "SQL" in prompt else "Prose [1]."
    )


GOOD_BODIES: dict[str, dict[str, Any]] = {
    "/v1/ask": {"question": "What is Hearth?", "history": [{"role": "user", "text": "hi"}]},
    "/v1/search": {"query": "vacation", "k": 3},
    "/v1/tables/ask": {"question": "Units per region?", "source": "sales"},
    "/v1/code/explain": {"code": "x = 1", "language": "python"},
    "/v1/code/generate": {"code": "# add two numbers", "language": "python", "path": "calc.py"},
    "/v1/code/tests": {"code": "def add(a, b):\n    return a + b\n", "language": "python", "path": "calc.py"},
    "/v1/code/complete": {"prefix": "def add(a, b):\n    return ", "suffix": "\n", "language": "python"},
}


async def test_every_operation_answers_what_its_200_declares(aiohttp_client: Any, tmp_path: Path) -> None:
    from jsonschema import Draft202012Validator

    from core.code.service import CodeService
    from core.tables.service import TableService

    csv = tmp_path / "sales.csv"
    csv.write_text("region,units\neast,3\nwest,4\n", encoding="utf-8")
    settings = make_settings(tmp_path, tables=[{"name": "sales", "type": "csv", "path": str(csv)}])
    backend = FakeBackend(reply=_follow_prompt)
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    assistant.tables = TableService(settings, assistant.router, assistant.prompts)
    assistant.code = CodeService(assistant)
    assistant.retriever = EmptyRetriever()
    client = await aiohttp_client(create_app(settings, assistant=assistant))
    _, token = await client.app[TOKENS].create("alice", [])
    doc = client.app[CONTRACT].document()
    served = {op.path for op, _ in api.ENDPOINTS if op.body is not None}
    assert served == set(GOOD_BODIES)
    for path, body in GOOD_BODIES.items():
        for accept in ("application/json", "text/event-stream"):
            resp = await client.post(
                path, json=body, headers={"Authorization": f"Bearer {token}", "Accept": accept}
            )
            assert resp.status == 200, (path, await resp.text())
            declared_200 = doc["paths"][path]["post"]["responses"]["200"]
            kind = resp.content_type
            assert kind in declared_200["content"], (path, kind)
            assert resp.headers["X-Request-Id"]
            if kind == "text/event-stream":
                data = parse_sse(await resp.text())[-1][1]  # the answer event carries the declared JSON
            else:
                data = await resp.json()
            schema = declared_200["content"]["application/json"]["schema"] | {"components": doc["components"]}
            errors = [e.message for e in Draft202012Validator(schema).iter_errors(data)]
            assert errors == [], (path, accept, errors, data)


async def test_the_lsp_remote_client_speaks_only_the_documented_contract(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    """`hearth lsp --server URL` against the real app: each request it sends is a documented
    operation whose body validates against the document, and each answer comes back."""
    from jsonschema import Draft202012Validator

    from core.code.service import CodeService
    from core.contracts import Code, Completion, Snippet
    from lsp.remote import RemoteBackend

    settings = make_settings(tmp_path)
    backend = FakeBackend(reply=_follow_prompt)
    assistant = Assistant(settings, Router(local=backend, remote=None, routing=settings.llm.routing))
    assistant.code = CodeService(assistant)
    app = create_app(settings, assistant=assistant)
    sent: list[tuple[str, str, dict[str, str], Any]] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        sent.append((request.method, request.path, dict(request.headers), json.loads(await request.read())))
        return await handler(request)

    app.middlewares.append(record)
    server = await aiohttp_server(app)
    _, token = await app[TOKENS].create("dev", [])
    client = RemoteBackend(str(server.make_url("")), token)
    code = Code("def add(a, b):\n    return a + b\n", "python", "calc.py", "import math", "boom", "x = 1")
    completion = Completion(
        "def add(a, b):\n    return ", "\n", "python", "calc.py", (Snippet("m.py", "y"),), 32
    )
    try:
        for stream in (
            client.ask_stream("What is Hearth?"),
            client.explain_stream(code),
            client.generate_stream(code),
            client.tests_stream(code),
            client.complete_stream(completion),
        ):
            events = [e async for e in stream]
            assert isinstance(events[-1], Answer) and events[-1].text, events
    finally:
        await client.aclose()
    doc = app[CONTRACT].document()
    assert [p for _, p, _, _ in sent] == [
        "/v1/ask",
        "/v1/code/explain",
        "/v1/code/generate",
        "/v1/code/tests",
        "/v1/code/complete",
    ]
    for method, path, headers, body in sent:
        op = doc["paths"][path][method.lower()]
        schema = op["requestBody"]["content"]["application/json"]["schema"] | {
            "components": doc["components"]
        }
        assert [e.message for e in Draft202012Validator(schema).iter_errors(body)] == [], (path, body)
        assert headers["X-Hearth-Surface"] in op["parameters"][0]["schema"]["enum"]
        assert headers["Content-Type"].startswith("application/json")


def test_the_answer_schema_is_the_answer_contract() -> None:
    from core.contracts import Answer, Citation, Grounding, Support, TablePart
    from core.llm.base import Usage

    answer = Answer(
        "text",
        [Citation(1, "T", "file:///a", "a", "a:0", "", 0.5)],
        "local",
        "m",
        Usage(1, 2),
        table=TablePart("SELECT 1", "s", ["n"], [[1]], chat_rows=1),
        grounding=Grounding("mark", [Support("text", True, 0.9, 1)]),
    )
    data = answer.as_dict()
    assert set(data) == set(SCHEMAS["Answer"]["properties"])  # type: ignore[arg-type]
    grounding = SCHEMAS["Grounding"]["properties"]
    assert set(data["grounding"]) == set(grounding)  # type: ignore[arg-type]
    assert set(data["grounding"]["sentences"][0]) == set(grounding["sentences"]["items"]["properties"])  # type: ignore[index]
    assert set(data["citations"][0]) == set(SCHEMAS["Citation"]["properties"])  # type: ignore[arg-type]
    assert set(data["usage"]) == set(SCHEMAS["Answer"]["properties"]["usage"]["properties"])  # type: ignore[index]


def test_a_mount_declares_its_operations_with_expose() -> None:
    from server.openapi import Operation, contract, expose, ok

    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    op = Operation("POST", "/v1/index", "Index now.", ok("Report.", {"type": "object"}), bodies.SearchBody)
    expose(app, op, handler)
    doc = contract(app).document()
    assert doc["paths"]["/v1/index"]["post"]["requestBody"]  # type: ignore[index]
    assert {r.resource.canonical for r in app.router.routes() if r.resource} == {"/v1/index"}
    with pytest.raises(ValueError, match="twice"):
        contract(app).add(op)


def test_api_handlers_are_coroutines() -> None:
    assert all(asyncio.iscoroutinefunction(h) for _, h in api.ENDPOINTS)
    assert isinstance(create_app(make_settings(Path("/tmp/unused"))), web.Application)


async def test_a_client_trickling_its_body_gets_408(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path, FakeBackend(), body_timeout_s=0.2)

    async def slow_body() -> Any:
        yield b'{"question": '
        await asyncio.sleep(2)
        yield b'"late"}'

    headers = client.auth | {"Content-Type": "application/json"}
    resp = await client.post("/v1/ask", data=slow_body(), headers=headers)
    assert resp.status == 408 and "server.body_timeout_s" in (await resp.json())["message"]
    assert client.backend.calls == []


async def test_chat_surfaces_are_audited_through_the_shared_intake(client: Any) -> None:
    from core.contracts import Answer, Request
    from core.intake import Ask, Code, Kind

    intake = client.app[INTAKE]
    slack = [
        e
        async for e in intake.run(
            Ask(Kind.ASK, Request(text="Where is the VPN guide?", user="U123", surface="slack"))
        )
    ]
    code = Code("print(1)", "python")
    explain = Ask(Kind.EXPLAIN, Request(text="x", user="d1", surface="dingtalk"), code=code)
    events = [e async for e in intake.run(explain)]
    assert isinstance(slack[-1], Answer) and slack[-1].text == "Hearth fake answer."
    assert isinstance(events[-1], Answer)
    await client.post("/v1/ask", json={"question": "rest one"}, headers=client.auth)
    rows = await _audit_rows(client)
    assert [(r["surface"], r["user_name"], r["action"]) for r in rows] == [
        ("rest", "alice", "ask"),
        ("dingtalk", "d1", "code.explain"),
        ("slack", "U123", "ask"),
    ]
    assert rows[2]["question"] == "Where is the VPN guide?" and rows[2]["backend"] == "local"
    metrics = await (await client.get("/metrics")).text()
    assert 'hearth_answers_total{action="ask",status="ok",surface="slack"}' in metrics
    assert 'hearth_answer_seconds_count{action="code.explain",surface="dingtalk"}' in metrics


async def test_draining_server_refuses_new_answers_and_finishes_running_ones(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    from server.state import LIFECYCLE

    backend = FakeBackend(reply="slow but complete answer", token_delay=0.05)
    client = await start(aiohttp_client, tmp_path, backend)
    sse = client.auth | {"Accept": "text/event-stream"}
    resp = await client.post("/v1/ask", json={"question": "x"}, headers=sse)
    assert (await resp.content.readline()).startswith(b"event: delta")
    life = client.app[LIFECYCLE]
    drain = asyncio.create_task(life.drain(5.0))  # what SIGTERM does: running answers get to finish
    await asyncio.sleep(0)
    refused = await client.post("/v1/ask", json={"question": "y"}, headers=client.auth)
    assert refused.status == 503 and "restarting" in (await refused.json())["message"]
    assert (await client.get("/readyz")).status == 503
    events = parse_sse((await resp.content.read()).decode().split("\n", 1)[1])
    assert events[-1][0] == "answer" and events[-1][1]["answer"] == "slow but complete answer"
    assert await drain == 0  # nothing had to be cancelled


async def test_drain_cancels_answers_that_outlive_the_grace(aiohttp_client: Any, tmp_path: Path) -> None:
    from server.state import LIFECYCLE

    backend = FakeBackend(reply=" ".join(["word"] * 500), token_delay=0.05)
    client = await start(aiohttp_client, tmp_path, backend)
    resp = await client.post(
        "/v1/ask", json={"question": "x"}, headers=client.auth | {"Accept": "text/event-stream"}
    )
    assert (await resp.content.readline()).startswith(b"event: delta")
    assert await client.app[LIFECYCLE].drain(0.2) == 1
    rest = (await resp.content.read()).decode()
    assert "event: error" in rest and "restarting" in rest
    assert backend.cancelled == 1 and not client.app[ASSISTANT].router.queue.busy


@pytest.mark.parametrize("fail_after", [None, 2], ids=["before-first-token", "after-two-deltas"])
async def test_a_bug_mid_stream_ends_with_a_generic_error_event(
    aiohttp_client: Any, tmp_path: Path, fail_after: int | None
) -> None:
    from core.refusals import ENGLISH, Reason

    backend = FakeBackend(
        reply="one two three four", error=RuntimeError("secret internal detail"), fail_after=fail_after
    )
    client = await start(aiohttp_client, tmp_path, backend)
    resp = await client.post(
        "/v1/ask", json={"question": "x"}, headers=client.auth | {"Accept": "text/event-stream"}
    )
    text = await resp.text()
    assert "secret internal detail" not in text and "Traceback" not in text
    events = parse_sse(text)
    assert [e for e, _ in events] == ["delta"] * (fail_after or 0) + ["error"]
    assert events[-1] == ("error", {"code": "internal", "message": ENGLISH[Reason.ERROR]})
    rows = await _audit_rows(client)
    assert rows[0]["status"] == "error"


async def test_tests_the_model_could_not_write_are_a_422_not_the_clients_fault(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    from core.code.service import CodeService

    client = await start(aiohttp_client, tmp_path, FakeBackend(reply="I am not sure what to test here."))
    client.app[ASSISTANT].code = CodeService(client.app[ASSISTANT])
    body = {"code": "def add(a, b):\n    return a + b\n", "language": "python", "path": "calc.py"}
    resp = await client.post("/v1/code/tests", json=body, headers=client.auth)
    assert resp.status == 422, await resp.text()
    error = await resp.json()
    assert error["error"]["code"] == "unusable_output" and "no test function" in error["message"]
    declared = client.app[CONTRACT].document()["paths"]["/v1/code/tests"]["post"]["responses"]
    assert "422" in declared
