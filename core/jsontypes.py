"""JSON as it comes from ``json.loads``, a JSON column or an HTTP API: one named recursive type,
and :func:`load_json` for JSON an untrusted client sent.

Read a value by narrowing it, never by trusting its shape::

    data: JsonValue = json.loads(text)
    tokens = data.get("tokens") if isinstance(data, dict) else None

A request body (the REST API, a chat platform's callback) goes through :func:`load_json`, which
refuses with one sentence (an ``InputError``) what ``json.loads`` would crash on or take too far:
bytes that are not UTF-8, nesting deeper than :data:`MAX_DEPTH` (``json.loads`` raises
RecursionError near 1000 levels), numbers no field could hold (5000 digits, 1e999, NaN) and
unpaired surrogate escapes (``"\\ud800"``, which no text field can store or print)::

    try:
        payload = load_json(await request.read())
    except InputError as exc:
        return web.json_response({"error": str(exc)}, status=400)
"""

from __future__ import annotations

import json
from typing import Any, TypeAlias

from core.errors import InputError

JsonValue: TypeAlias = "str | int | float | bool | None | list[JsonValue] | dict[str, JsonValue]"
JsonObject: TypeAlias = "dict[str, JsonValue]"

# The bodies Hearth takes nest a few levels (history -> turn -> text); far deeper is an attack or a bug.
MAX_DEPTH = 32
# No field takes a number longer than this; json would build a 4300-digit int, then fail.
MAX_NUMBER_CHARS = 40


class _Unusable(ValueError):
    """A JSON value a body may not hold; its message is the sentence for the client."""


def _number(text: str, convert: type[int] | type[float]) -> int | float:
    if len(text.lstrip("-")) > MAX_NUMBER_CHARS:
        raise _Unusable(f"A number in the request body is too long ({len(text)} characters).")
    value = convert(text)
    if value in (float("inf"), float("-inf")):
        raise _Unusable(f"A number in the request body is too large ({text}).")
    return value


def _constant(name: str) -> object:
    raise _Unusable(f"{name} is not a JSON number; send a finite number.")


def _check_values(data: object) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings that are not Unicode text (lone surrogates)."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise _Unusable(f"The request body is nested too deeply (more than {MAX_DEPTH} levels).")
        items: list[Any] = list(value.values()) if isinstance(value, dict) else value
        if isinstance(value, dict):
            for key in value:
                _check_text(key)
        stack.extend((item, depth + 1) for item in items)


def _check_text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Unusable(
            "The request body holds an unpaired surrogate escape (e.g. \\ud800), which is not text."
        ) from None


def load_json(raw: bytes) -> JsonValue:
    """The JSON value of the untrusted ``raw``; an ``InputError`` whose message says what is wrong."""
    if not raw.strip():
        raise InputError("The request body is empty; send a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"The request body is not UTF-8 text (invalid byte at {exc.start}).") from None
    try:
        data = json.loads(
            text,
            parse_int=lambda t: _number(t, int),
            parse_float=lambda t: _number(t, float),
            parse_constant=_constant,
        )
        _check_values(data)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"The request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})."
        ) from None
    except _Unusable as exc:
        raise InputError(str(exc)) from None
    except RecursionError:
        raise InputError(f"The request body is nested too deeply (more than {MAX_DEPTH} levels).") from None
    value: JsonValue = data
    return value
