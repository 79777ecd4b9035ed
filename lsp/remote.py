"""Thin-client mode: the language server asks a `hearth serve` on the GPU box over REST + SSE.

Contract (``Authorization: Bearer TOKEN``, ``X-Hearth-Surface: lsp``; ``Accept: text/event-stream``
for streaming), each an operation of the server's /v1/openapi.json (a test validates what this
client sends against it)::

    POST /v1/ask           {"question"}
    POST /v1/code/explain  {"code", "language", "path"?, "context"?}
    POST /v1/code/generate {"code", "language": "python", "path"?, "context"?, "failures"?}
    POST /v1/code/tests    {"code", "language": "python", "path"?, "context"?, "failures"?, "previous"?}
    POST /v1/code/complete {"prefix", "suffix", "language", "path"?, "snippets", "max_tokens"?}

    event: delta   data: {"text": "..."}       (repeated)
    event: answer  data: {"answer", "citations", "backend", "model", "usage", "timings_ms"}
    event: error   data: {"message": "..."}

Without the Accept header the server answers the Answer JSON directly. A server that goes away, hangs
or answers garbage becomes a one-sentence :class:`BackendUnavailable`, never a hung editor.

The client is a :class:`~core.code.workbench.CodeModel`: the editor's loops (generate, write tests,
run them, repair) run here, beside the workspace, and only the model calls travel.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from core.code.context import CodeContext
from core.code.workbench import CodeModel
from core.contracts import Answer, Code, Completion, Delta, Retriever
from core.errors import BackendError, BackendUnavailable, InputError
from core.llm.base import Usage

log = logging.getLogger(__name__)


def answer_from_json(data: dict[str, Any]) -> Answer:
    """An Answer from the REST JSON form (citations are kept only as their count in notices)."""
    usage = data.get("usage") or {}
    cites = data.get("citations") or []
    notices = list(data.get("notices") or [])
    if cites:
        notices.append("Sources: " + ", ".join(str(c.get("uri") or c.get("title")) for c in cites[:5]))
    return Answer(
        text=str(data.get("answer", "")),
        citations=[],
        backend=str(data.get("backend", "remote")),
        model=str(data.get("model", "")),
        usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
        timings_ms={k: float(v) for k, v in (data.get("timings_ms") or {}).items()},
        notices=notices,
    )


class RemoteBackend:
    """A client of `hearth serve`'s REST API."""

    label = "remote"

    def __init__(
        self, url: str, token: str | None, *, connect_timeout_s: float = 5.0, idle_timeout_s: float = 60.0
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=idle_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _headers(self, stream: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if stream else "application/json", "X-Hearth-Surface": "lsp"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def _stream(self, path: str, payload: Mapping[str, object]) -> AsyncIterator[Delta | Answer]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        where = f"{self.url}{path}"
        got_answer = False
        try:
            async with self._session.post(where, json=payload, headers=self._headers(True)) as resp:
                await _raise_for_status(resp, self.url)
                if not resp.content_type.startswith("text/event-stream"):
                    yield answer_from_json(await resp.json(content_type=None))
                    return
                async for event, data in _sse_events(resp):
                    if event == "delta":
                        text = data.get("text", "")
                        if text:
                            yield Delta(str(text))
                    elif event == "answer":
                        got_answer = True
                        yield answer_from_json(data)
                        return
                    elif event == "error":
                        raise BackendError(f"The Hearth server reported: {data.get('message', 'an error')}")
        except aiohttp.ConnectionTimeoutError as exc:
            raise BackendUnavailable(
                f"Cannot reach the Hearth server at {self.url} — check --server and that it is running."
            ) from exc
        except TimeoutError as exc:
            raise BackendUnavailable(
                f"The Hearth server at {self.url} sent nothing for {self._timeout.sock_read:.0f}s "
                "(lsp.idle_timeout_s) — it may be overloaded; try again later."
            ) from exc
        except (aiohttp.ClientError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            log.info("remote request to %s failed: %r", where, exc)
            raise BackendUnavailable(
                f"Lost the connection to the Hearth server at {self.url} ({type(exc).__name__}) — "
                "check that `hearth serve` is running and reachable, then try again."
            ) from exc
        if not got_answer:
            raise BackendUnavailable(
                f"The Hearth server at {self.url} closed the stream before the answer — try again."
            )

    def explain_stream(self, code: Code) -> AsyncIterator[Delta | Answer]:
        """POST /v1/code/explain."""
        return self._stream("/v1/code/explain", _payload(code))

    def generate_stream(self, code: Code) -> AsyncIterator[Delta | Answer]:
        """POST /v1/code/generate (``code.code`` is the comment/docstring preamble)."""
        return self._stream("/v1/code/generate", _payload(code))

    def tests_stream(self, code: Code) -> AsyncIterator[Delta | Answer]:
        """POST /v1/code/tests (a repair round adds the failures and the previous tests)."""
        return self._stream("/v1/code/tests", _payload(code))

    def ask_stream(self, question: str) -> AsyncIterator[Delta | Answer]:
        """POST /v1/ask."""
        return self._stream("/v1/ask", {"question": question})

    def complete_stream(self, completion: Completion) -> AsyncIterator[Delta | Answer]:
        """POST /v1/code/complete; closing the stream (a newer keystroke) closes the request, which
        stops the generation on the server."""
        payload: dict[str, object] = {
            "prefix": completion.prefix,
            "suffix": completion.suffix,
            "language": completion.language,
            "snippets": [{"path": s.path, "text": s.text} for s in completion.snippets],
        }
        if completion.path:
            payload["path"] = completion.path
        if completion.max_tokens:
            payload["max_tokens"] = completion.max_tokens
        return self._stream("/v1/code/complete", payload)

    async def with_workspace_context(
        self, ctx: CodeContext, retriever: Retriever | None = None
    ) -> CodeContext:
        """The server retrieves on its side; nothing to add here."""
        return ctx

    @property
    def model(self) -> CodeModel:
        """This client: the model calls go over REST."""
        return self

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _payload(code: Code) -> dict[str, str]:
    """The request body; the optional fields (path, context, failures, previous) only when set."""
    optional = {
        "path": code.path,
        "context": code.context,
        "failures": code.failures,
        "previous": code.previous,
    }
    return {"code": code.code, "language": code.language} | {k: v for k, v in optional.items() if v}


async def _raise_for_status(resp: aiohttp.ClientResponse, base: str) -> None:
    if resp.status < 400:
        return
    try:
        body = await resp.json(content_type=None)
        detail = str(body.get("message") or body.get("error") or "") if isinstance(body, dict) else ""
    except (aiohttp.ClientError, ValueError):
        detail = ""
    if resp.status in (401, 403):
        raise BackendUnavailable(
            f"The Hearth server at {base} refused the token ({resp.status}) — check --token."
        )
    if resp.status in (400, 413, 422):
        raise InputError(detail or f"The Hearth server rejected the request ({resp.status}).")
    raise BackendUnavailable(
        f"The Hearth server at {base} answered HTTP {resp.status}{': ' + detail if detail else ''}."
    )


async def _sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Parse a text/event-stream body into (event, JSON data) pairs."""
    event = "message"
    data_lines: list[str] = []
    async for raw in resp.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data_lines:
                data = json.loads("\n".join(data_lines))
                yield event, data if isinstance(data, dict) else {"text": data}
            event, data_lines = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data_lines.append(line[5:].removeprefix(" "))
    if data_lines:
        data = json.loads("\n".join(data_lines))
        yield event, data if isinstance(data, dict) else {"text": data}
