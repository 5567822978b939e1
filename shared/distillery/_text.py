"""Short, specific descriptions of values for finding messages."""

from __future__ import annotations

import json
from typing import Any

_PREVIEW_CHARS = 40


def describe_json_value(value: Any) -> str:
    """``a number (42)``: the JSON type of ``value`` and a short preview of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({preview(value)})"
    kind = "an array" if isinstance(value, list) else "an object"
    return f"{kind} ({preview(json.dumps(value, ensure_ascii=False))})"


def preview(text: str, limit: int = _PREVIEW_CHARS) -> str:
    """``text`` quoted and cut to ``limit`` characters, for messages."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return json.dumps(cut, ensure_ascii=False)
