"""How JSON fields are encoded for storage and decoded on the way out, the same on both engines."""

from __future__ import annotations

import json
import json.scanner
import re
from typing import Any


class JsonText(str):
    """JSON already encoded and checked by a payload model (stored as is, encoded once)."""

    __slots__ = ()


# One encoder, built once: json.dumps() with any option builds a new encoder on every call.
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
# A float Python writes with an exponent ("1e+16"), outside of any string literal.
_EXPONENT_FLOAT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?\d+(?:\.\d+)?e\+\d+)')


def _fraction(match: re.Match[str]) -> str:
    number = match.group(1)
    return match.group(0) if number is None else format(float(number), ".1f")


def dumps_json(value: Any) -> str:
    """Encode a JSON value the way both engines store it (no NaN, floats stay floats).

    PostgreSQL's jsonb keeps numbers as ``numeric`` and prints 1e+16 back as 10000000000000000,
    which would decode as an int; written with a fraction (10000000000000000.0) both engines
    decode the same float.
    """
    text = _encoder.encode(value)
    if "e+" in text:  # rare: only then is the text scanned again
        text = _EXPONENT_FLOAT.sub(_fraction, text)
    return text


_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def decode_json(text: str) -> Any:
    """Decode stored JSON text (the C scanner directly: json.loads costs 2x on small values)."""
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)  # raises the usual JSONDecodeError
    if end != len(text):
        return json.loads(text)  # surrounding whitespace, from another writer
    return value
