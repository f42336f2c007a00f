"""Request-body limits of the record routes, derived from their body models.

A route that takes a record admits the largest body its schema (the one ``/openapi.json``
publishes) accepts: every string at its ``maxLength`` (``models.MAX_*_CHARS``) written the
costliest way JSON allows, every JSON field at ``models.MAX_JSON_BYTES`` likewise, its field
names, and room for whitespace. A larger body is refused with 413 by ``security.BodyLimit``
before it is read; a body within the limit whose field is too long is then refused by the model
(422, or 400 from the library, naming the field).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.routing import BaseRoute

from ..models import MAX_JSON_BYTES, MAX_SHORT_CHARS

# The most bytes one character can take in a JSON string: outside the BMP, written as an escaped
# surrogate pair ("\ud83d\ude00", 12 bytes, what Python's json.dumps writes by default). An
# escaped BMP character takes 6 ("\u00e9"), a raw one at most 4 in UTF-8. maxLength counts
# characters (code points), so a field of emoji at its limit takes 12 bytes a character.
MAX_BYTES_PER_CHAR = 12
# JSON fields hold at most MAX_JSON_BYTES of UTF-8 as the library encodes them; a client writes
# each of those bytes as at most 6 (an ASCII character in a string escaped as "\u0041"). Deeply
# indented JSON can take more: a client sends such details compact.
MAX_BYTES_PER_JSON_BYTE = 6
# Whitespace between a body's own fields and tokens (a client may pretty-print it).
WHITESPACE_BYTES = 64 * 1024


def text_bytes(chars: int) -> int:
    """The most bytes a JSON string of ``chars`` characters takes, quotes included."""
    return 2 + MAX_BYTES_PER_CHAR * chars


JSON_BYTES = MAX_BYTES_PER_JSON_BYTE * MAX_JSON_BYTES
# Ids, times, numbers and enums have no maxLength in the schema; the library refuses any of them
# long before a short text field's room.
SCALAR_BYTES = text_bytes(MAX_SHORT_CHARS)


def _value_bytes(schema: dict[str, Any], defs: dict[str, Any]) -> int:
    """The most bytes a value that ``schema`` accepts takes in a JSON body."""
    if "$ref" in schema:
        return _value_bytes(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return max(_value_bytes(option, defs) for option in options)
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        return 2 + sum(text_bytes(len(name)) + 2 + _value_bytes(field, defs)  # ':' and ','
                       for name, field in schema["properties"].items())
    if kind == "string" and "maxLength" in schema:
        return text_bytes(int(schema["maxLength"]))
    if kind in ("string", "integer", "number", "boolean", "null"):
        return SCALAR_BYTES
    if kind == "array" and "maxItems" in schema:
        return 2 + int(schema["maxItems"]) * (_value_bytes(schema.get("items", {}), defs) + 1)
    # Any JSON value (details, metadata) or an array of any length (capabilities, stored as a
    # JSON field like them): the room of a JSON field.
    return JSON_BYTES


def body_bytes(body: Any) -> int:
    """The body limit of a route whose body is validated as ``body`` (a model or a type).

    A batch (a list of records) has no largest body: it gets the room of its largest record, so
    whatever may be sent alone may be sent as a batch of one, and more records as more requests
    of the same bounded size. No REST route takes a batch today; the OTLP receivers, which do,
    have their own limit (``create_app(max_otlp_body_bytes=)``).
    """
    schema = TypeAdapter(body).json_schema()
    defs = schema.get("$defs", {})
    if schema.get("type") == "array":
        schema = schema.get("items", {})
    return _value_bytes(schema, defs) + WHITESPACE_BYTES


def _collection(path: str) -> str:
    """The path ``BodyLimit`` looks a route's limit up by: its own, or its collection's."""
    if "{" not in path:
        return path
    collection, _, last = path.rpartition("/")
    if last.startswith("{") and "{" not in collection:
        return collection  # "/api/prompts/{record_id}" -> "/api/prompts"
    raise ValueError(f"no body limit can be looked up for {path!r}: BodyLimit knows exact paths "
                     "and '<collection>/<id>'")


def body_limits(routes: Iterable[BaseRoute], floor: int) -> dict[str, int]:
    """The body limit of each path of ``routes`` that takes a body: at least ``floor``.

    ``"/api/prompts"`` covers ``"/api/prompts/{record_id}"`` too (the larger of the two).
    """
    limits: dict[str, int] = {}
    for route in routes:
        if isinstance(route, APIRoute) and route.body_field is not None:
            path = _collection(route.path_format)
            limits[path] = max(limits.get(path, floor),
                               body_bytes(route.body_field.field_info.annotation))
    return limits
