"""JSON as it comes from ``json.loads``, a JSON column or an HTTP API: one named recursive type.

Read a value by narrowing it, never by trusting its shape::

    data: JsonValue = json.loads(text)
    tokens = data.get("tokens") if isinstance(data, dict) else None
"""

from __future__ import annotations

from typing import TypeAlias

JsonValue: TypeAlias = "str | int | float | bool | None | list[JsonValue] | dict[str, JsonValue]"
JsonObject: TypeAlias = "dict[str, JsonValue]"
