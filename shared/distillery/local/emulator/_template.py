"""Type checks of the ``distillation/v1.0.0`` template's input parameters.

The parameters themselves (names, KFP types, defaults, and where the list comes from) are facts:
:data:`distillery.facts.TEMPLATE_PARAMETERS`. JSON has one number type and the official client
sends every number as a float (``"train_steps": 300.0``), so an integral float is a
``NUMBER_INTEGER``; a boolean is never a number.
"""

from __future__ import annotations

import math
from typing import Any

from distillery.facts import BOOLEAN, NUMBER_DOUBLE, NUMBER_INTEGER, STRING

_DESCRIPTIONS = {
    STRING: "a string",
    NUMBER_INTEGER: "an integer",
    NUMBER_DOUBLE: "a number",
    BOOLEAN: "a boolean (true or false)",
}


def typed_value(kind: str, value: Any) -> Any:
    """``value`` as the template's ``kind`` holds it: an ``int`` for an integral number, a
    ``float`` for a number, the value itself for a string or a boolean.

    Raises:
        ValueError: ``value`` is not of ``kind`` (the text says what was expected and got).
    """
    ok = False
    if kind == STRING:
        ok = isinstance(value, str)
    elif kind == BOOLEAN:
        ok = isinstance(value, bool)
    elif not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value):
        if kind == NUMBER_DOUBLE:
            return float(value)
        if kind == NUMBER_INTEGER and (isinstance(value, int) or value.is_integer()):
            return int(value)
    if not ok:
        raise ValueError(f"must be {_DESCRIPTIONS[kind]} ({kind}), got {value!r}")
    return value
