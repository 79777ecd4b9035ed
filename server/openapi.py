"""The OpenAPI 3.1 document served at /v1/openapi.json, built from what the mounts declare.

A mount adds each endpoint with :func:`expose`, which routes the handler and declares its
:class:`Operation` in one call, so the document lists exactly the routes the server answers, each
with its request body (generated from the pydantic models in :mod:`server.bodies`) and every
status it can give (the JSON error shape for all but 200)::

    INDEX = Operation(
        "POST", "/v1/index", "Index one source now.",
        ok=ok("The sync report.", {"type": "object"}), body=IndexBody, errors=(404,),
    )

    def mount(app: web.Application, services: Services) -> None:
        expose(app, INDEX, index_handler)

The operations outside /v1 (``/healthz``, ``/readyz``, ``/metrics``: server/health.py) are declared
the same way; a GET also answers HEAD (RFC 9110), which the document leaves implied.

The response shapes answers share (Answer, Citation, Hit, TableAnswer, Error) are written out once,
in :data:`SCHEMAS`: when the Answer contract grows, add the field there (a unit test compares
``Answer.as_dict()`` with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from server.bodies import MAX_DEPTH, SURFACE_HEADER, SURFACES

# A piece of the OpenAPI document (a JSON object as we build it).
Schema = dict[str, object]


def json_content(schema: Schema) -> Schema:
    """A ``content`` map with one application/json schema."""
    return {"application/json": {"schema": schema}}


def ref(name: str) -> Schema:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def ok(description: str, schema: Schema, *, stream: bool = False) -> Schema:
    """The 200 response: ``schema`` as JSON, and as Server-Sent Events too when ``stream``."""
    content = json_content(schema)
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    return {"description": description, "content": content}


def text_ok(description: str, media_type: str = "text/plain") -> Schema:
    """A 200 response whose body is text, not JSON (Prometheus's exposition format)."""
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def _object(required: tuple[str, ...], **properties: Schema) -> Schema:
    return {"type": "object", "required": list(required), "properties": properties}


_STR: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}
_NUM: Schema = {"type": "number"}
_STRS: Schema = {"type": "array", "items": _STR}
_TIMINGS: Schema = {"type": "object", "additionalProperties": _NUM}
_CELL: Schema = {"type": ["string", "number", "boolean", "null"]}
# A file's name, never a path on the server (a client cannot read it; it would show the layout).
_FILE_NAME = r"^[^/\\]+$"

# What a citation and a search hit both say about the chunk they point at.
_CHUNK: dict[str, Schema] = {
    "score": _NUM,
    "doc_id": _STR,
    "uri": _STR,
    "title": _STR,
    "chunk_id": _STR,
    "location": _STR,
}

# --- the response shapes, in one place ----------------------------------------------------------
SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        ("error", "message", "request_id"),
        error=_object(("code", "message"), code=_STR, message=_STR),
        message={"type": "string", "description": "The same sentence as error.message."},
        request_id=_STR,
    ),
    "Citation": _object(("number", *_CHUNK), number=_INT, **_CHUNK),
    # core.contracts.Answer.as_dict: the JSON of /v1/ask and /v1/code/*, and of the SSE `answer` event.
    "Answer": _object(
        ("answer", "citations", "backend", "model", "usage", "timings_ms", "notices", "request_id"),
        answer=_STR,
        citations={"type": "array", "items": ref("Citation")},
        backend={"type": "string", "description": "local, remote, or none (nothing relevant found)."},
        model=_STR,
        usage=_object(("prompt_tokens", "completion_tokens"), prompt_tokens=_INT, completion_tokens=_INT),
        timings_ms=_TIMINGS,
        notices=_STRS,
        request_id=_STR,
        table={
            "type": "object",
            "description": "Present when the answer came from a table query: its SQL and rows.",
        },
        grounding=ref("Grounding"),
    ),
    # core.contracts.Grounding.as_dict: present when the answer was checked against its sources.
    "Grounding": _object(
        ("mode", "not_found", "removed", "sentences"),
        mode={"type": "string", "description": "drop (unsupported sentences removed) or mark (kept)."},
        not_found={"type": "boolean", "description": "Nothing was supported: the not-found sentence."},
        removed=_STRS,
        sentences={
            "type": "array",
            "items": _object(
                ("text", "supported", "support", "citation", "kind", "missing"),
                text=_STR,
                supported={"type": "boolean"},
                support={"type": "number", "description": "0-1: how well the best chunk supports it."},
                citation={"type": ["integer", "null"], "description": "The supporting citation's number."},
                kind={"type": "string", "description": "quote (from a source) or answer (the model's)."},
                missing={"type": "array", "items": _STR, "description": "Numbers, names… no chunk has."},
            ),
        },
    ),
    "Hit": _object(("rank", *_CHUNK, "text", "source"), rank=_INT, **_CHUNK, text=_STR, source=_STR),
    "SearchResult": _object(("query", "hits"), query=_STR, hits={"type": "array", "items": ref("Hit")}),
    # core.tables.service.table_json plus the request id and the chart inline.
    "TableAnswer": _object(
        ("sql", "columns", "rows", "answer", "chart", "csv", "source", "notices", "backend", "model"),
        sql=_STR,
        columns=_STRS,
        rows={"type": "array", "items": {"type": "array", "items": _CELL}},
        answer=_STR,
        chart={
            "type": ["string", "null"],
            "pattern": _FILE_NAME,
            "description": "The chart's file name on the server (the PNG itself is chart_png_base64).",
        },
        chart_png_base64={"type": ["string", "null"], "description": "The chart as a base64 PNG."},
        csv={
            "type": ["string", "null"],
            "pattern": _FILE_NAME,
            "description": "The CSV's file name on the server, written when the result is longer than a "
            "chat shows (table_limits.chat_rows); `rows` holds every row.",
        },
        source=_STR,
        notices=_STRS,
        backend=_STR,
        model=_STR,
        timings_ms=_TIMINGS,
        request_id=_STR,
    ),
}

SSE_DOC = (
    "With `Accept: text/event-stream` the answer streams as Server-Sent Events: `event: delta` with "
    '`{"text": …}` (repeated), then `event: answer` with the Answer object, or `event: error` with '
    '`{"code": …, "message": …}`. Closing the connection cancels the generation.'
)

ERROR_TEXT: dict[int, str] = {
    400: "A malformed request: the body is not a JSON object sent as application/json in UTF-8, "
    f"is nested deeper than {MAX_DEPTH} levels, holds an unusable number or string, or a field or "
    "header is invalid (the message names it).",
    401: "Missing or invalid bearer token.",
    403: "The token may not use what the request names.",
    404: "The table source the request names does not exist (or the token may not read it).",
    408: "The request body did not arrive in time.",
    413: "Body larger than server.max_body_bytes.",
    422: "The SQL was refused by the guard or failed on the data.",
    429: "Rate limited; see Retry-After.",
    501: "The capability is not configured on this server.",
    503: "No model, store or state database available now; see Retry-After.",
}
# Every authenticated operation can answer these; one with a body also 400, 408 and 413.
_AUTH_ERRORS = (401, 429, 503)
_BODY_ERRORS = (400, 408, 413)

_HEADERS: dict[str, Schema] = {
    "X-Request-Id": {
        "description": "This request's id, also in the log and the audit row.",
        "required": True,
        "schema": _STR,
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "WWW-Authenticate": {"description": "The bearer challenge.", "required": True, "schema": _STR},
}


def _header_refs(*names: str) -> Schema:
    return {n: {"$ref": f"#/components/headers/{n}"} for n in names}


def _error(status: int) -> Schema:
    headers = ["X-Request-Id"]
    if status in (429, 503):
        headers.append("Retry-After")
    if status == 401:
        headers.append("WWW-Authenticate")
    return {
        "description": ERROR_TEXT[status],
        "headers": _header_refs(*headers),
        "content": json_content(ref("Error")),
    }


@dataclass(frozen=True)
class Operation:
    """One endpoint as the document declares it: what it takes and every status it can answer."""

    method: str
    path: str
    summary: str
    ok: Schema  # the 200 response (see :func:`ok`)
    body: type[BaseModel] | None = None  # the JSON body, read with server.bodies.read_body
    errors: tuple[int, ...] = ()  # beyond those every authenticated call (and body) can give
    public: bool = False  # no token needed (a /v1 path is also listed in server.auth.PUBLIC_PATHS)
    surface: bool = False  # takes the X-Hearth-Surface header
    description: str = ""
    schemas: Mapping[str, Schema] = field(default_factory=dict)  # extra component schemas it refers to
    links: Mapping[str, Schema] = field(default_factory=dict)  # from its 200 to other operations
    # Statuses it answers with a body of its own instead of the Error (/readyz's 503 names each check).
    responses: Mapping[int, Schema] = field(default_factory=dict)

    def statuses(self) -> list[int]:
        """Every status but 200 that this operation can answer."""
        codes = set(self.errors) | set(self.responses)
        if not self.public:
            codes.update(_AUTH_ERRORS)
        if self.body is not None:
            codes.update(_BODY_ERRORS)
        return sorted(codes)

    @property
    def operation_id(self) -> str:
        """The document's name for this operation, e.g. ``post_v1_ask`` (what links point at)."""
        return self.method.lower() + self.path.replace("/", "_").replace(".", "_")

    def as_openapi(self, max_body_bytes: int | None = None) -> Schema:
        """The OpenAPI operation object (``max_body_bytes``: server.max_body_bytes, when known)."""
        ok = dict(self.ok)
        ok["headers"] = _header_refs("X-Request-Id")
        if self.links:
            ok["links"] = dict(self.links)
        op: Schema = {
            "operationId": self.operation_id,
            "summary": self.summary,
            "security": [] if self.public else [{"bearer": []}],
            "responses": {"200": ok, **{str(c): self._response(c) for c in self.statuses()}},
        }
        if self.description:
            op["description"] = self.description
        if self.surface:
            op["parameters"] = [
                {
                    "name": SURFACE_HEADER,
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "enum": sorted(SURFACES)},
                    "description": "Which client asks (recorded in the audit log); default rest.",
                }
            ]
        if self.body is not None:
            op["requestBody"] = {
                "required": True,
                "description": f"A JSON object of at most {max_body_bytes:,} bytes (server.max_body_bytes)."
                if max_body_bytes
                else "A JSON object, at most server.max_body_bytes.",
                "content": json_content(ref(self.body.__name__)),
            }
        return op

    def _response(self, status: int) -> Schema:
        if status not in self.responses:
            return _error(status)
        return {**self.responses[status], "headers": _header_refs("X-Request-Id")}


class Contract:
    """The operations the mounts declared, and the document they make."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def add(self, op: Operation) -> None:
        """Declare ``op`` (one operation per method and path)."""
        if any((o.method, o.path) == (op.method, op.path) for o in self.operations):
            raise ValueError(f"{op.method} {op.path} is declared twice")
        self.operations.append(op)

    def document(self, *, max_question_chars: int | None = None, max_body_bytes: int | None = None) -> Schema:
        """The OpenAPI 3.1 document; ``max_question_chars`` (the engine's limit) bounds the questions,
        ``max_body_bytes`` the bodies (both left out when not known)."""
        schemas: Schema = dict(SCHEMAS)
        paths: dict[str, Schema] = {}
        for op in self.operations:
            schemas.update(op.schemas)
            if op.body is not None:
                schemas.update(_body_schemas(op.body, max_question_chars))
            paths.setdefault(op.path, {})[op.method.lower()] = op.as_openapi(max_body_bytes)
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "Hearth REST API",
                "version": "1",
                "description": "Ask, search, tables and code over one self-hosted assistant. "
                "Create a token with `hearth tokens create --user NAME --acl TOKEN`.",
            },
            "paths": paths,
            "components": {
                "schemas": schemas,
                "headers": _HEADERS,
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "A token from `hearth tokens create`.",
                    }
                },
            },
        }


def _body_schemas(model: type[BaseModel], max_question_chars: int | None) -> Schema:
    """The component schemas of a body model (its own and the models it nests)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    found: Schema = dict(schema.pop("$defs", {}))
    question = schema.get("properties", {}).get("question")
    if max_question_chars is not None and isinstance(question, dict):
        # The intake refuses longer ones (core.refusals), whatever the body's own bound.
        question["maxLength"] = min(max_question_chars, int(question.get("maxLength", max_question_chars)))
    found[model.__name__] = schema
    return found


CONTRACT = web.AppKey("openapi_contract", Contract)


def contract(app: web.Application) -> Contract:
    """The app's contract (created by the first mount that declares an operation)."""
    if CONTRACT not in app:
        app[CONTRACT] = Contract()
    return app[CONTRACT]


def expose(app: web.Application, op: Operation, handler: Handler) -> None:
    """Route ``handler`` for ``op`` and declare ``op`` in the document: the one way to add an endpoint."""
    if op.method == "GET":
        app.router.add_get(op.path, handler)  # and HEAD, as HTTP has it
    else:
        app.router.add_route(op.method, op.path, handler)
    contract(app).add(op)
