"""The OpenAPI 3 document served at /v1/openapi.json.

Request schemas come from the pydantic bodies in :mod:`server.bodies`, so they cannot drift; the
response shapes are written out here (a test checks every /v1 route is described).
"""

from __future__ import annotations

from typing import Any

from server import bodies

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
_CITATION = {
    "type": "object",
    "properties": {
        k: {"type": t}
        for k, t in (
            ("number", "integer"),
            ("title", "string"),
            ("uri", "string"),
            ("doc_id", "string"),
            ("chunk_id", "string"),
            ("location", "string"),
            ("score", "number"),
        )
    },
}
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
_HIT = {
    "type": "object",
    "properties": {
        k: {"type": t}
        for k, t in (
            ("rank", "integer"),
            ("score", "number"),
            ("doc_id", "string"),
            ("uri", "string"),
            ("title", "string"),
            ("text", "string"),
            ("chunk_id", "string"),
            ("location", "string"),
            ("source", "string"),
        )
    },
}
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


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON or a bad field (the message names it).",
        401: "Missing or invalid bearer token.",
        413: "Body larger than server.max_body_bytes.",
        429: "Rate limited; see Retry-After.",
        501: "The capability is not configured on this server.",
        503: "No model or store available now.",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def _answer_op(summary: str, body: str, *, stream: bool = True) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}}
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
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
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        },
        "responses": {
            "200": {"description": "The answer.", "content": content},
            **_errors(400, 401, 413, 429, 503),
        },
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    schemas: dict[str, Any] = {"Error": _ERROR, "Answer": _ANSWER, "Citation": _CITATION, "Hit": _HIT}
    for model in bodies.BODIES.values():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = schema
    search = _answer_op("Hybrid search over the documents the token may read.", "SearchBody", stream=False)
    search["responses"]["200"] = {
        "description": "Hits, best first.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string"},
                        "hits": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
                    },
                }
            }
        },
    }
    search["responses"].update(_errors(501))
    tables = _answer_op(
        "Answer a question over the configured tables with guarded SQL.", "TablesAskBody", stream=False
    )
    tables["responses"]["200"] = {
        "description": "The answer, the SQL that produced it and the rows (the `hearth tables ask --json` "
        "shape), plus the chart inline as base64 PNG.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TableAnswer"}}},
    }
    tables["responses"].update(_errors(501))
    tables["responses"]["422"] = {
        "description": "The SQL was refused by the guard or failed on the data.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    schemas["TableAnswer"] = _TABLE_ANSWER
    generate = _answer_op(
        "Implement a comment, docstring or function head; the answer streams the model's code.",
        "GenerateBody",
    )
    generate["responses"].update(_errors(501))
    tests = _answer_op("Write a pytest module for a piece of code; the answer streams the file.", "TestsBody")
    tests["responses"].update(_errors(501))
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
