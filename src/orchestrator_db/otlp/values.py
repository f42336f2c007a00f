"""OTLP values as Python: attributes as dicts, ids as hex, times as datetimes, stable row ids."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ..models import clean_text

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
# Nested OTLP values deeper than this become their JSON text (no real attribute comes near).
MAX_DEPTH = 20
# Longest text kept in one attribute of a log's details; the rest is cut with a marker.
MAX_ATTRIBUTE_CHARS = 65_536


def any_value(value: Any, depth: int = 0) -> Any:
    """Return an OTLP ``AnyValue`` as plain Python (str, int, float, bool, list, dict, None)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)  # JSON has no NaN
    if kind == "bool_value":
        return value.bool_value
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if depth >= MAX_DEPTH:
        return "…"
    if kind == "array_value":
        return [any_value(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return None


def attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    """Return repeated ``KeyValue`` as a dict (a repeated key: the last one wins)."""
    out: dict[str, Any] = {}
    for kv in pairs:
        value = kv.value
        kind = value.WhichOneof("value")
        # The common scalar cases inline: this runs for every attribute of every span.
        if kind == "string_value":
            out[kv.key] = value.string_value
        elif kind == "int_value":
            out[kv.key] = value.int_value
        else:
            out[kv.key] = any_value(value)
    return out


def hex_id(raw: bytes) -> str | None:
    """Return a trace or span id as lowercase hex, or None when absent (empty or all zero)."""
    if not raw or not any(raw):
        return None
    return raw.hex()


def from_nanos(nanos: int) -> datetime | None:
    """Return a UNIX time in nanoseconds as an aware UTC datetime (None for 0, unknown)."""
    if nanos <= 0:
        return None
    try:
        return EPOCH + timedelta(microseconds=nanos // 1000)
    except OverflowError:
        return None


def first(attrs: Mapping[str, Any], *keys: str) -> Any:
    """Return the value of the first of ``keys`` present (and not empty) in ``attrs``."""
    get = attrs.get
    for key in keys:
        value = get(key)
        if value is not None and value != "":
            return value
    return None


def as_text(value: Any) -> str | None:
    """Return a value as text: strings as they are, anything else as its JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def as_int(value: Any) -> int | None:
    """Return a token count as an int ≥ 0 (numbers may arrive as text), or None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(float(value)) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number >= 0 else None


def as_float(value: Any) -> float | None:
    """Return a cost as a finite float ≥ 0 (it may arrive as text), or None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def clean_value(value: Any, limit: int = MAX_ATTRIBUTE_CHARS) -> Any:
    """Return a details value that every write path accepts: no NUL, bounded text."""
    if isinstance(value, str):
        return clean_text(value, limit)
    if isinstance(value, dict):
        return {clean_text(str(k), 1000): clean_value(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_value(v, limit) for v in value]
    return value


def stable_id(seed: bytes, when: datetime | None) -> str:
    """Return a UUIDv7-shaped id that is always the same for the same ``seed``.

    Time-ordered like every other id (its first 48 bits are ``when`` in milliseconds), so rows
    made from one span or log record get one id however often it is sent: a retry inserts
    nothing new.
    """
    ms = (when - EPOCH) // _MILLISECOND if when is not None else 0
    raw = bytearray((ms & 0xFFFF_FFFF_FFFF).to_bytes(6, "big"))
    raw += hashlib.blake2b(seed, digest_size=10).digest()
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


__all__ = ["EPOCH", "MAX_ATTRIBUTE_CHARS", "any_value", "as_float", "as_int", "as_text",
           "attributes", "clean_value", "first", "from_nanos", "hex_id", "stable_id"]
