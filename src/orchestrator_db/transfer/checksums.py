"""The canonical form of a row (one line of JSON), to compare two rows whatever their engine.

A row is the JSON list of its values in column order (sorted keys, no ASCII escaping, compact
separators), timestamps in the package's one shape and JSON values decoded. The row-by-row
comparisons (``verify.verify_equal``, ``verify_merge``) and the rollups use it; the digests
the copy verifies with first are ``store/digest.py``'s.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from ..models import is_canonical_ts
from ..store.digest import canon_time
from ..tables import JSON_FIELDS, TIME_FIELDS

# One reusable encoder: json.dumps with options builds a new JSONEncoder for every row.
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
dumps_canonical = _ENCODER.encode


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


@functools.cache
def field_indexes(columns: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """Return the positions of the timestamp columns and of the JSON columns."""
    return ([i for i, c in enumerate(columns) if c in TIME_FIELDS],
            [i for i, c in enumerate(columns) if c in JSON_FIELDS])


def _line(values: list[Any], times: list[int], jsons: list[int]) -> str:
    for i in times:
        value = values[i]
        if value is not None and not is_canonical_ts(value):  # as every row we write is
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


__all__ = ["canon_time", "canonical_line", "dumps_canonical", "field_indexes"]
