"""The OpenAPI 3 document served at /v1/openapi.json.

Request schemas come from the pydantic bodies in :mod:`server.bodies`, so they cannot drift; the
response shapes are written out here (a test checks every /v1 route is described).
"""

from __future__ import annotations

from server import bodies

# A piece of the OpenAPI document (a JSON object as we build it).
Schema = dict[str, object]


def _flat(*fields: tuple[str, str]) -> Schema:
    """An object schema of scalar properties: ``(name, JSON type)`` pairs."""
    return {"type": "object", "properties": {k: {"type": t} for k, t in fields}}


def _json(schema: Schema) -> Schema:
    """A ``content`` map with one application/json schema."""
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_ERROR = {
    "type": "object",
    "required": ["error", "message", "request_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
        "message": {"type": "string", "description": "The same sentence as error.message."},
        "request_id": {"type": "string"},
    },
}
# What a citation and a search hit both say about the chunk they point at.
_CHUNK = (
    ("score", "number"),
    ("doc_id", "string"),
    ("uri", "string"),
    ("title", "string"),
    ("chunk_id", "string"),
    ("location", "string"),
)
_CITATION = _flat(("number", "integer"), *_CHUNK)
_ANSWER = {
    "type": "object",
    "required": ["answer", "citations", "backend", "model", "usage", "timings_ms", "notices", "request_id"],
    "properties": {
        "answer": {"type": "string"},
        "citations": {"type": "array", "items": {"$ref": "#/components/schemas/Citation"}},
        "backend": {"type": "string", "description": "local, remote, or none (nothing relevant found)."},
        "model": {"type": "string"},
        "usage": {
            "type": "object",
            "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}},
        },
        "timings_ms": {"type": "object", "additionalProperties": {"type": "number"}},
        "notices": {"type": "array", "items": {"type": "string"}},
        "request_id": {"type": "string"},
    },
}
_HIT = _flat(("rank", "integer"), *_CHUNK, ("text", "string"), ("source", "string"))
_TABLE_ANSWER = {
    "type": "object",
    "properties": {
        "sql": {"type": "string"},
        "columns": {"type": "array", "items": {"type": "string"}},
        "rows": {"type": "array", "items": {"type": "array"}},
        "answer": {"type": "string"},
        "chart": {"type": ["string", "null"], "description": "Path of the chart on the server."},
        "chart_png_base64": {"type": ["string", "null"]},
        "csv": {"type": ["string", "null"]},
        "source": {"type": "string"},
        "notices": {"type": "array", "items": {"type": "string"}},
        "backend": {"type": "string"},
        "model": {"type": "string"},
        "timings_ms": {"type": "object", "additionalProperties": {"type": "number"}},
        "request_id": {"type": "string"},
    },
}
_SSE_DOC = (
    "With `Accept: text/event-stream` the answer streams as Server-Sent Events: `event: delta` with "
    '`{"text": …}` (repeated), then `event: answer` with the Answer object, or `event: error` with '
    '`{"code": …, "message": …}`. Closing the connection cancels the generation.'
)


_ERROR_TEXT = {
    400: "Malformed JSON or a bad field (the message names it).",
    401: "Missing or invalid bearer token.",
    413: "Body larger than server.max_body_bytes.",
    422: "The SQL was refused by the guard or failed on the data.",
    429: "Rate limited; see Retry-After.",
    501: "The capability is not configured on this server.",
    503: "No model or store available now.",
}


def _answer_op(
    summary: str, body: str, *, stream: bool = True, ok: Schema | None = None, errors: tuple[int, ...] = ()
) -> Schema:
    """A POST operation: ``body`` in, the Answer (or ``ok``) out, and the error responses it can give."""
    content = _json(_ref("Answer"))
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    codes = sorted({400, 401, 413, 429, 503, *errors})
    return {
        "summary": summary,
        "description": _SSE_DOC if stream else "",
        "security": [{"bearer": []}],
        "parameters": [
            {
                "name": "X-Hearth-Surface",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "enum": sorted(bodies.SURFACES)},
                "description": "Which client asks (recorded in the audit log); default rest.",
            }
        ],
        "requestBody": {"required": True, "content": _json(_ref(body))},
        "responses": {
            "200": ok or {"description": "The answer.", "content": content},
            **{str(c): {"description": _ERROR_TEXT[c], "content": _json(_ref("Error"))} for c in codes},
        },
    }


def document() -> Schema:
    """The whole OpenAPI 3.1 document."""
    schemas: Schema = {"Error": _ERROR, "Answer": _ANSWER, "Citation": _CITATION, "Hit": _HIT}
    for model in bodies.BODIES.values():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = schema
    schemas["TableAnswer"] = _TABLE_ANSWER
    hits: Schema = {
        "type": "object",
        "properties": {"query": {"type": "string"}, "hits": {"type": "array", "items": _ref("Hit")}},
    }
    search = _answer_op(
        "Hybrid search over the documents the token may read.",
        "SearchBody",
        stream=False,
        ok={"description": "Hits, best first.", "content": _json(hits)},
        errors=(501,),
    )
    tables = _answer_op(
        "Answer a question over the configured tables with guarded SQL.",
        "TablesAskBody",
        stream=False,
        ok={
            "description": "The answer, the SQL that produced it and the rows (the `hearth tables ask --json` "
            "shape), plus the chart inline as base64 PNG.",
            "content": _json(_ref("TableAnswer")),
        },
        errors=(501, 422),
    )
    generate = _answer_op(
        "Implement a comment, docstring or function head; the answer streams the model's code.",
        "GenerateBody",
        errors=(501,),
    )
    tests = _answer_op(
        "Write a pytest module for a piece of code; the answer streams the file.", "TestsBody", errors=(501,)
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hearth REST API",
            "version": "1",
            "description": "Ask, search, tables and code over one self-hosted assistant. "
            "Create a token with `hearth tokens create --user NAME --acl TOKEN`.",
        },
        "paths": {
            "/v1/ask": {
                "post": _answer_op("Ask a question; the answer cites the documents it used.", "AskBody")
            },
            "/v1/search": {"post": search},
            "/v1/tables/ask": {"post": tables},
            "/v1/code/explain": {"post": _answer_op("Explain a piece of code in Markdown.", "ExplainBody")},
            "/v1/code/generate": {"post": generate},
            "/v1/code/tests": {"post": tests},
            "/v1/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3 document."}},
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `hearth tokens create`.",
                }
            },
        },
    }
