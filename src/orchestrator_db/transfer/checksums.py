"""The canonical form of a row (one line of JSON) and the checksums built from it.

Both sides of a copy are hashed by this code, whatever their engine: a row is the JSON list of
its values in column order (sorted keys, no ASCII escaping, compact separators), timestamps in
the package's one shape and JSON values decoded. Changing the output changes every checksum.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any, Protocol

from ..jsoncodec import JsonText, decode_json
from ..models import format_ts, parse_ts
from ..tables import JSON_FIELDS, TIME_FIELDS
from .errors import CopyError

# One reusable encoder: json.dumps with options builds a new JSONEncoder for every row.
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
dumps_canonical = _ENCODER.encode


class Hasher(Protocol):
    """What the checksums need of a ``hashlib`` object."""

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


def _canon_json(value: Any) -> Any:
    # PostgreSQL's jsonb keeps numbers as numeric, so a float written as 1e+20 comes back as
    # 100000000000000000000, an int. Python writes every float ≥ 1e16 (all integral) with "e+",
    # so comparing those as ints is the only normalisation needed, and only when "e+" appears.
    if isinstance(value, float):
        return int(value) if abs(value) >= 1e16 else value
    if isinstance(value, dict):
        return {k: _canon_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canon_json(v) for v in value]
    return value


def canon_time(value: Any) -> Any:
    """Return a stored timestamp in the package's one shape (other values as they are)."""
    # Rows written by this package are already canonical (32 characters ending in +00:00); only
    # rows written by other tools need re-formatting.
    if value is None or (isinstance(value, str) and len(value) == 32 and value.endswith("+00:00")):
        return value
    try:
        return format_ts(parse_ts(value))
    except (TypeError, ValueError):
        return value


@functools.cache
def field_indexes(columns: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """Return the positions of the timestamp columns and of the JSON columns."""
    return ([i for i, c in enumerate(columns) if c in TIME_FIELDS],
            [i for i, c in enumerate(columns) if c in JSON_FIELDS])


def _line(values: list[Any], times: list[int], jsons: list[int]) -> str:
    for i in times:
        value = values[i]
        # Rows written by this package are canonical already: 32 characters ending in +00:00.
        if value is not None and not (len(value) == 32 and value.endswith("+00:00")):
            values[i] = canon_time(value)
    text = dumps_canonical(values)
    if "e+" in text:
        for i in jsons:
            values[i] = _canon_json(values[i])
        text = dumps_canonical(values)
    return text


def canonical_line(row: dict[str, Any], columns: Sequence[str]) -> bytes:
    """Return one row as canonical JSON (one line), the unit of the checksums."""
    times, jsons = field_indexes(tuple(columns))
    return _line([row.get(c) for c in columns], times, jsons).encode() + b"\n"


def hash_rows(hasher: Hasher, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """Feed rows to a hasher, as ``canonical_line`` would one by one (but faster)."""
    times, jsons = field_indexes(tuple(columns))
    lines = [_line([row[c] for c in columns], times, jsons) for row in rows]
    lines.append("")
    hasher.update("\n".join(lines).encode())


def hash_records(hasher: Hasher, records: list[list[Any]], columns: Sequence[str]) -> None:
    """``hash_rows`` for records (lists in column order), whose JSON may be ``JsonText``.

    Raises:
        CopyError: a JSON column holds text that is not JSON (written by another tool).
    """
    times, jsons = field_indexes(tuple(columns))
    lines = []
    for record in records:
        values = list(record)
        for i in jsons:
            value = values[i]
            if isinstance(value, JsonText):
                try:
                    values[i] = decode_json(value)
                except ValueError as exc:
                    raise CopyError(
                        f"row {values[0]} holds invalid JSON in {columns[i]} ({exc}); fix or "
                        "delete it, then run the copy again"
                    ) from exc
        lines.append(_line(values, times, jsons))
    lines.append("")
    hasher.update("\n".join(lines).encode())


__all__ = [
    "Hasher",
    "canon_time",
    "canonical_line",
    "dumps_canonical",
    "field_indexes",
    "hash_records",
    "hash_rows",
]
