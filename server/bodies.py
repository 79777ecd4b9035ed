"""The JSON bodies of the REST API under /v1, and reading them: 400 names the field, 408 a trickle.

The OpenAPI document (:mod:`server.openapi`) is generated from these models, so it cannot drift.
"""

from __future__ import annotations

import asyncio
import json
from typing import Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.observability import ApiError

BODY_TIMEOUT_S = 30.0
# Callers may say which client they are (the editor plugin sends "lsp"); anything else counts as "rest".
SURFACES = {"rest", "lsp", "cli", "web"}

M = TypeVar("M", bound=BaseModel)


# --- request bodies ---------------------------------------------------------------------------
class Body(BaseModel):
    """Base of the request bodies: unknown fields are ignored so older servers accept newer clients."""

    model_config = ConfigDict(extra="ignore")


class TurnBody(Body):
    """An earlier message of the conversation."""

    role: Literal["user", "assistant"] = Field(description="Who said it.")
    text: str = Field(description="What was said.")


class AskBody(Body):
    """POST /v1/ask."""

    question: str = Field(min_length=1, description="The question.")
    history: list[TurnBody] = Field(default_factory=list, description="Earlier turns, oldest first.")


class SearchBody(Body):
    """POST /v1/search."""

    query: str = Field(min_length=1, description="What to search for.")
    k: int = Field(5, ge=1, le=50, description="How many hits to return.")


class TablesAskBody(Body):
    """POST /v1/tables/ask."""

    question: str = Field(min_length=1, description="A question about the configured tables.")
    source: str | None = Field(None, description="Limit the question to this table source.")


class ExplainBody(Body):
    """POST /v1/code/explain."""

    code: str = Field(min_length=1, description="The code to explain.")
    language: str = Field(min_length=1, description="Its language, e.g. python.")
    path: str | None = Field(None, description="The file it comes from (for context).")
    context: str | None = Field(None, description="Related code from the workspace.")


class GenerateBody(Body):
    """POST /v1/code/generate."""

    code: str = Field(min_length=1, description="The comment, docstring, TODO or function head to implement.")
    language: str = Field(min_length=1, description="Target language, e.g. python.")
    path: str | None = Field(None, description="The file being edited.")
    context: str | None = Field(None, description="Related code from the workspace.")
    failures: str | None = Field(None, description="Errors from an earlier attempt, for a repair round.")


class TestsBody(Body):
    """POST /v1/code/tests."""

    code: str = Field(min_length=1, description="The code to write tests for.")
    language: str = Field(min_length=1, description="Its language, e.g. python.")
    path: str | None = Field(None, description="The file it comes from (workspace-relative).")
    context: str | None = Field(None, description="Related code from the workspace.")
    failures: str | None = Field(None, description="Failures of the previous tests, for a repair round.")
    previous: str | None = Field(None, description="The previous test file, for a repair round.")


BODIES: dict[str, type[Body]] = {
    "/v1/ask": AskBody,
    "/v1/search": SearchBody,
    "/v1/tables/ask": TablesAskBody,
    "/v1/code/explain": ExplainBody,
    "/v1/code/generate": GenerateBody,
    "/v1/code/tests": TestsBody,
}


class BadRequest(ApiError):
    """A 400 that says what is wrong with the body."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_request", message)


def _field_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    if err["type"] == "missing":
        return f"Field '{where}' is required."
    return f"Field '{where}': {err['msg']}."


async def read_body(request: web.Request, model: type[M]) -> M:
    """Parse the JSON body into ``model``; 400 names the bad field, 413 when too large."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):  # a client trickling its body must not hold a slot
            raw = await request.read()  # aiohttp raises 413 beyond server.max_body_bytes
    except TimeoutError:
        raise ApiError(
            408, "timeout", f"The request body did not arrive within {BODY_TIMEOUT_S:.0f}s."
        ) from None
    if not raw.strip():
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest("The request body is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"The request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})."
        ) from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_field_error(exc)) from None
