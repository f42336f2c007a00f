"""How JSON fields are encoded for storage and decoded on the way out, the same on both engines."""

from __future__ import annotations

import json
import json.scanner
import re
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any


class JsonText(str):
    """JSON already encoded and checked by a payload model (stored as is, encoded once)."""

    __slots__ = ()


# One encoder, built once: json.dumps() with any option builds a new encoder on every call.
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
# The C encoder that _encoder.encode() builds on every call (1-2 µs, a quarter of validating a
# log row), built once with the same settings, as store/digest.py does: the same text. It has
# no circular check (a shared one would not be thread-safe): a cycle ends in RecursionError,
# and _encode() then asks _encoder, whose message names the cycle. None without the C module.
_encode_chunks = (c_make_encoder(None, _encoder.default, encode_basestring, None, ": ", ", ",
                                 False, False, False) if c_make_encoder is not None else None)


def _encode(value: Any) -> str:
    if _encode_chunks is None:  # pragma: no cover - CPython has the C encoder
        return _encoder.encode(value)
    try:
        return "".join(_encode_chunks(value, 0))
    except RecursionError:
        return _encoder.encode(value)  # "Circular reference detected", or RecursionError again
# Outside of any string literal: a float Python writes with an exponent ("1e+16"), or -0.0.
_NUMBER_TO_REWRITE = re.compile(r'"(?:[^"\\]|\\.)*"|(-?\d+(?:\.\d+)?e\+\d+)|(-0\.0(?!\d))')


def _written_out(number: str) -> str:
    """"-1.5e+300" -> "-15000…0.0": the same decimal, so it decodes to the same float.

    String work, not ``format(float, ".1f")``, which spells out the double's exact binary value
    (40 µs for 1e308): a 1 MB body of such numbers would hold the event loop for seconds.
    """
    mantissa, _, exponent = number.partition("e+")
    sign = "-" if mantissa.startswith("-") else ""
    whole, _, fraction = mantissa.lstrip("-").partition(".")
    zeros = int(exponent) - len(fraction)
    if zeros < 0:  # never from float.__repr__ (exponent ≥ 16, ≤ 17 digits), but be exact
        return format(float(number), ".1f")
    return f"{sign}{whole}{fraction}{'0' * zeros}.0"


def _rewrite(match: re.Match[str]) -> str:
    exponent, negative_zero = match.group(1, 2)
    if exponent is not None:
        return _written_out(exponent)
    return "0.0" if negative_zero is not None else match.group(0)


def dumps_json(value: Any) -> str:
    """Encode a JSON value the way both engines store it (no NaN, floats stay floats).

    PostgreSQL's jsonb keeps numbers as ``numeric`` and prints 1e+16 back as 10000000000000000,
    which would decode as an int; written with a fraction (10000000000000000.0) both engines
    decode the same float. ``numeric`` has no negative zero either: -0.0 is written as 0.0, as
    a -0.0 cost is.
    """
    text = _encode(value)
    if "e+" in text or "-0.0" in text:  # rare: only then is the text scanned again
        text = _NUMBER_TO_REWRITE.sub(_rewrite, text)
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
