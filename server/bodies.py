"""The JSON bodies of the REST API under /v1, and reading them: every malformed body is a 400 sentence.

The OpenAPI document (:mod:`server.openapi`) is generated from these models, so what it declares is
what :func:`read_body` enforces: required fields, bounds, the text fields' pattern (some text, no
NUL), the languages code generation takes, the ``X-Hearth-Surface`` enum. Beyond the schema a body
is refused, with one plain sentence, when it is not JSON sent as JSON or not an object, or when
the core's reading of untrusted JSON (:func:`core.jsontypes.load_json`) refuses it: not UTF-8,
nested deeper than :data:`MAX_DEPTH`, a number no field could take (5000 digits, 1e999, NaN), an
unpaired surrogate escape; 408 when it trickles in, 413 beyond ``server.max_body_bytes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.code.context import RUNNABLE, require_runnable
from core.errors import InputError
from core.jsontypes import MAX_DEPTH as MAX_DEPTH
from core.jsontypes import load_json
from core.refusals import ENGLISH, Reason, Refusal, check_text
from server.observability import ApiError
from server.state import SETTINGS

# Callers may say which client they are (the editor plugin sends "lsp"); the header is optional.
SURFACE_HEADER = "X-Hearth-Surface"
SURFACES = frozenset({"rest", "lsp", "cli", "web"})
# Some text that is not only whitespace, and no NUL: the intake refuses the rest (core.refusals).
TEXT_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"
# The table service's own cap on a question (core.tables.service refuses longer ones).
TABLE_QUESTION_CHARS = 2000

M = TypeVar("M", bound=BaseModel)


# --- field types ------------------------------------------------------------------------------
def _refusal(reason: Reason, **values: int) -> PydanticCustomError:
    """The intake's own sentence for ``reason`` (core.refusals), so REST words it as every surface."""
    return _sentence(Refusal(reason, values).text(ENGLISH))


def _sentence(text: str) -> PydanticCustomError:
    # As a context value, so braces in it (a file name can hold them) are not a template.
    return PydanticCustomError("refusal", "{sentence}", {"sentence": text})


def _text(empty: Reason, limit: int | None = None) -> Callable[[str], str]:
    """The intake's check of a text (core.refusals.check_text) as a field validator; ``empty`` words
    a text of only whitespace (Python's, as strip() and TEXT_PATTERN under Python's re see it)."""

    def check(value: str) -> str:
        refusal = check_text(value, len(value) if limit is None else limit)
        if refusal is not None:
            raise _sentence((Refusal(empty) if refusal.reason is Reason.EMPTY else refusal).text(ENGLISH))
        return value

    return check


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise _refusal(Reason.BINARY)
    return value


def _integer(value: object) -> object:
    # JSON has integers only: true and "5" are not one (pydantic's lax mode would take both).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "must be an integer")
    return value


_TEXT_SCHEMA: dict[str, Any] = {"minLength": 1, "pattern": TEXT_PATTERN}
# A question or query: some text, no NUL (the intake's EMPTY and BINARY refusals otherwise).
Text = Annotated[str, AfterValidator(_text(Reason.EMPTY)), Field(json_schema_extra=_TEXT_SCHEMA)]
# The same for code (EMPTY_CODE when there is none).
CodeText = Annotated[str, AfterValidator(_text(Reason.EMPTY_CODE)), Field(json_schema_extra=_TEXT_SCHEMA)]
TableQuestion = Annotated[
    str,
    AfterValidator(_text(Reason.EMPTY, TABLE_QUESTION_CHARS)),
    Field(json_schema_extra=_TEXT_SCHEMA | {"maxLength": TABLE_QUESTION_CHARS}),
]
# Checked with the path it comes with by RunnableBody (the core's sentence names the file).
Runnable = Annotated[str, Field(json_schema_extra={"enum": sorted(RUNNABLE)})]
# Lax only for 5.0, which JSON Schema counts as an integer too; _integer refuses true and "5".
Integer = Annotated[int, Field(strict=False), BeforeValidator(_integer)]
NoNul = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": r"^[^\x00]*$"})]


# --- request bodies ---------------------------------------------------------------------------
class Body(BaseModel):
    """Base of the request bodies: JSON types as the schema says them (strict: 0 is not false, "5"
    not 5); unknown fields are ignored so older servers accept newer clients."""

    model_config = ConfigDict(extra="ignore", strict=True)


class TurnBody(Body):
    """An earlier message of the conversation."""

    role: Literal["user", "assistant"] = Field(description="Who said it.")
    text: str = Field(description="What was said.")


class AskBody(Body):
    """POST /v1/ask."""

    question: Text = Field(description="The question.")
    history: list[TurnBody] = Field(default_factory=list, description="Earlier turns, oldest first.")


class SearchBody(Body):
    """POST /v1/search."""

    query: Text = Field(description="What to search for.")
    k: Integer = Field(5, ge=1, le=50, description="How many hits to return.")


class TablesAskBody(Body):
    """POST /v1/tables/ask."""

    question: TableQuestion = Field(description="A question about the configured tables.")
    source: str | None = Field(None, description="Limit the question to this table source.")


class ExplainBody(Body):
    """POST /v1/code/explain."""

    code: CodeText = Field(description="The code to explain.")
    language: str = Field(min_length=1, description="Its language, e.g. python.")
    path: str | None = Field(None, description="The file it comes from (for context).")
    context: str | None = Field(None, description="Related code from the workspace.")


class RunnableBody(Body):
    """A body about code Hearth must be able to run: its ``language`` is one of RUNNABLE."""

    language: Runnable
    path: str | None = None

    @model_validator(mode="after")
    def _runnable(self) -> RunnableBody:
        try:
            require_runnable(self.language, self.path or "code")
        except InputError as exc:
            raise _sentence(str(exc)) from None
        return self


class GenerateBody(RunnableBody):
    """POST /v1/code/generate."""

    code: CodeText = Field(description="The comment, docstring, TODO or function head to implement.")
    language: Runnable = Field(description="Target language: one Hearth can run tests for.")
    path: str | None = Field(None, description="The file being edited.")
    context: str | None = Field(None, description="Related code from the workspace.")
    failures: str | None = Field(None, description="Errors from an earlier attempt, for a repair round.")


class TestsBody(RunnableBody):
    """POST /v1/code/tests."""

    code: CodeText = Field(description="The code to write tests for.")
    language: Runnable = Field(description="Its language: one Hearth can run tests for.")
    path: str | None = Field(None, description="The file it comes from (workspace-relative).")
    context: str | None = Field(None, description="Related code from the workspace.")
    failures: str | None = Field(None, description="Failures of the previous tests, for a repair round.")
    previous: str | None = Field(None, description="The previous test file, for a repair round.")


class SnippetBody(Body):
    """Related code the editor sends with a completion (another open file, a workspace-index hit)."""

    path: str = Field(min_length=1, description="Where it comes from (workspace-relative).")
    text: str = Field(description="The code.")


class CompleteBody(Body):
    """POST /v1/code/complete: the code around the cursor, of which prefix or suffix holds some text."""

    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"required": [side], "properties": {side: {"pattern": TEXT_PATTERN}}}
                for side in ("prefix", "suffix")
            ]
        },
    )

    prefix: NoNul = Field("", description="The text before the cursor (the window the editor cut).")
    suffix: NoNul = Field("", description="The text after the cursor.")
    language: str = Field(min_length=1, description="The file's language, e.g. python.")
    path: str | None = Field(None, description="The file being edited (workspace-relative).")
    snippets: list[SnippetBody] = Field(
        default_factory=list, max_length=10, description="Related code, shown to the model first."
    )
    # The bound before the validator, so the schema says minimum/maximum (after it, pydantic says "ge").
    max_tokens: Annotated[int, Field(ge=1, le=512, strict=False), BeforeValidator(_integer)] | None = Field(
        None, description="Longest suggestion, in tokens."
    )

    @model_validator(mode="after")
    def _some_code(self) -> CompleteBody:
        # The intake's rule (core.intake): nothing but whitespace around the cursor is nothing to do.
        if not (self.prefix + self.suffix).strip():
            raise _refusal(Reason.EMPTY_CODE)
        return self


BODIES: dict[str, type[Body]] = {
    "/v1/ask": AskBody,
    "/v1/search": SearchBody,
    "/v1/tables/ask": TablesAskBody,
    "/v1/code/explain": ExplainBody,
    "/v1/code/generate": GenerateBody,
    "/v1/code/tests": TestsBody,
    "/v1/code/complete": CompleteBody,
}


class BadRequest(ApiError):
    """A 400 that says what is wrong with the body."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_request", message)


def _field_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "refusal":  # the intake's own sentence, as the other surfaces say it
        return err["msg"]
    if not where:  # a rule over the whole body: its message is the sentence
        return f"{err['msg']}."
    if err["type"] == "missing":
        return f"Field '{where}' is required."
    return f"Field '{where}': {err['msg']}."


def surface(request: web.Request) -> str:
    """The ``X-Hearth-Surface`` the caller named (default rest); 400 for a value the API does not know."""
    value = request.headers.get(SURFACE_HEADER)
    if value is None:
        return "rest"
    if value not in SURFACES:
        raise BadRequest(
            f"Header {SURFACE_HEADER} must be one of {', '.join(sorted(SURFACES))} (or left out)."
        )
    return value


def _check_content_type(request: web.Request) -> None:
    """JSON only: a body sent as a form, text or anything else is refused (no header: taken as JSON)."""
    if "Content-Type" not in request.headers:
        return
    kind = request.content_type
    if kind != "application/json" and not (kind.startswith("application/") and kind.endswith("+json")):
        raise BadRequest(f"Send the body as JSON with Content-Type: application/json (not {kind}).")
    charset = request.charset
    if charset is not None and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise BadRequest(f"JSON bodies are UTF-8; charset={charset} is not accepted.")


def parse_json(raw: bytes) -> object:
    """The JSON value of ``raw``, or a :class:`BadRequest` whose sentence says what is wrong with it."""
    try:
        return load_json(raw)  # the core's reading of untrusted JSON, shared with the chat callbacks
    except InputError as exc:
        raise BadRequest(str(exc)) from None


async def read_body(request: web.Request, model: type[M]) -> M:
    """The request's headers and JSON body, checked and parsed into ``model``; else a 400/408/413 sentence."""
    surface(request)
    _check_content_type(request)
    deadline = request.app[SETTINGS].server.body_timeout_s
    try:
        async with asyncio.timeout(deadline):  # a client trickling its body must not hold a slot
            raw = await request.read()  # aiohttp raises 413 beyond server.max_body_bytes
    except TimeoutError:
        raise ApiError(
            408, "timeout", f"The request body did not arrive within {deadline:g}s (server.body_timeout_s)."
        ) from None
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise BadRequest(f"The request body must be a JSON object, not {_kind(data)}.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_field_error(exc)) from None


def _kind(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), "that")
