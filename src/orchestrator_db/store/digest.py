"""An order-free digest of a table's rows that both engines compute alike, PostgreSQL in SQL.

``copy`` verifies without reading the destination back through Python: PostgreSQL hashes its
side in one parallel scan (``PostgresStore.table_digests``); a SQLite side is hashed here, by
``RowDigest``, in a process of its own (``sqlite_bulk.py``), the source's while it is copied.

Each row becomes one line: the JSON array (separators ``", "``) of its values in column order,
JSON columns last, as PostgreSQL's ``json_build_array`` prints it: timestamps in the package's
one shape (``to_char`` on PostgreSQL), floats as the hex of their 8 IEEE-754 bytes
(``float8send``: exact, no float printing to agree on) and JSON values as ``jsonb`` prints them
(keys ordered by length then bytes, numbers as ``numeric`` writes them). The digest is the
number of rows and the exact sum of the first 60 bits of each line's MD5 (60, so that SQL
reads each as a ``bigint``): a changed row goes unnoticed only if its new line's hash starts
with the same 60 bits (one chance in 10^18), row order does not matter, so PostgreSQL scans in
parallel, and SQLite's rows are summed as they are read. MD5 serves as a checksum here, not as
a defence against someone forging rows.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from json.scanner import make_scanner
from operator import itemgetter
from typing import Any

from ..jsoncodec import JsonText
from ..models import format_ts, parse_ts
from ..tables import JSON_FIELDS, TIME_FIELDS, UUID_FIELDS

HASH_BITS = 60  # of each line's MD5, summed: SQL reads 60 bits as a bigint, never negative


def _unencodable(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


# The C encoder itself, built once: json.dumps() with options, and JSONEncoder.encode(), build a
# new one on every call. No circular check: the values come from JSON or from a row.
_encode_chunks = c_make_encoder(None, _unencodable, encode_basestring, None, ": ", ", ",
                                False, False, True)
# The C scanner with numbers that keep their spelling (Decimal), as jsonb keeps them.
_scan = make_scanner(json.JSONDecoder(parse_float=Decimal))  # type: ignore[arg-type]
_NUMBER_TOKEN = re.compile(r'"\\u0000(\d+)"')  # a placeholder string: "\u0000<n>"
_SPACE = re.compile(r"[ \t\n\r]*")
_pack_double = struct.Struct(">d").pack


def _encode(value: Any) -> str:
    return "".join(_encode_chunks(value, 0))


class InvalidJsonError(ValueError):
    """A JSON column holds text that is not JSON (written by another tool)."""

    def __init__(self, row_id: Any, column: str, reason: str, table: str | None = None) -> None:
        super().__init__(f"row {row_id} holds invalid JSON in {column} ({reason})")
        self.row_id, self.column, self.reason, self.table = row_id, column, reason, table

    def __reduce__(self) -> tuple[Any, ...]:  # it crosses from the digest's process
        return (InvalidJsonError, (self.row_id, self.column, self.reason, self.table))


def _byte_length(key: str) -> int:
    return len(key.encode())


def _numeric(value: Decimal | float) -> str:
    # numeric prints a number in plain notation, keeping the digits after the point it was
    # written with ("1e-07" → 0.0000001, "2.50" → 2.50, "1e+20" → 100000000000000000000);
    # it has no negative zero. A decoded float is written as Python spells it (repr).
    number = value if isinstance(value, Decimal) else Decimal(repr(value))
    if number.is_zero():
        number = number.copy_abs()
    return format(number, "f")


def _reorder(value: Any, numbers: list[str]) -> Any:
    """Return ``value`` with object keys in jsonb's order and numbers swapped for tokens."""
    kind = value.__class__
    if kind is dict:
        # jsonb orders keys by length in bytes, then bytewise (= code point order in UTF-8):
        # a stable sort by length of the sorted keys.
        keys = sorted(value)
        keys.sort(key=len if "".join(keys).isascii() else _byte_length)
        out = {}
        for key in keys:
            item = value[key]
            kind = item.__class__
            out[key] = (_reorder(item, numbers) if kind is dict or kind is list
                        or kind is Decimal or kind is float else item)
        return out
    if kind is list:
        return [_reorder(v, numbers) for v in value]
    if kind is Decimal or kind is float:
        numbers.append(_numeric(value))
        # NUL never appears in a stored JSON string (both engines refuse it), so the encoded
        # token "\u0000<n>" cannot be mistaken for data.
        return f"\x00{len(numbers) - 1}"
    return value


def _decode(text: str) -> Any:
    try:
        value, end = _scan(text, 0)
        if end == len(text):  # the usual case: no white space around the value
            return value
    except StopIteration:
        pass
    try:
        value, end = _scan(text, _SPACE.match(text).end())  # type: ignore[union-attr]
    except StopIteration as exc:
        raise ValueError(f"expecting a value at {exc.value}") from None
    if _SPACE.match(text, end).end() != len(text):  # type: ignore[union-attr]
        raise ValueError(f"extra data at {end}")
    return value


def jsonb_text(value: Any, *, text: bool = False) -> str:
    """Return a JSON value as PostgreSQL's ``jsonb`` prints it.

    ``value`` is JSON text (``JsonText``, or any string when ``text``) or a decoded value.
    Raises ValueError when the text is not JSON.
    """
    if value is None:
        return "null"
    if text or value.__class__ is JsonText:
        value = _decode(value)
    numbers: list[str] = []
    printed = _encode(_reorder(value, numbers))
    if numbers:
        printed = _NUMBER_TOKEN.sub(lambda m: numbers[int(m.group(1))], printed)
    return printed


def _invalid(record: Sequence[Any], columns: Sequence[str], jsons: Sequence[int],
             json_text: bool) -> InvalidJsonError:
    """Say which JSON column of ``record`` holds text that is not JSON."""
    for i in jsons:
        try:
            jsonb_text(record[i], text=json_text)
        except ValueError as exc:
            return InvalidJsonError(record[0], columns[i], str(exc))
    return InvalidJsonError(record[0], ", ".join(columns[i] for i in jsons), "unknown")


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


@cache
def layout(columns: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...],
                                              tuple[int, ...]]:
    """Return the positions of: the plain columns (line order), and within that list the
    timestamps and the values that may be floats (not ids); then the JSON columns."""
    plain = tuple(i for i, c in enumerate(columns) if c not in JSON_FIELDS)
    times = tuple(j for j, i in enumerate(plain) if columns[i] in TIME_FIELDS)
    others = tuple(j for j, i in enumerate(plain)
                   if columns[i] not in TIME_FIELDS and columns[i] not in UUID_FIELDS)
    jsons = tuple(i for i, c in enumerate(columns) if c in JSON_FIELDS)
    return plain, times, others, jsons


@dataclass
class RowDigest:
    """The digest of a set of rows: how many, and the sum of their lines' hashes."""

    rows: int = 0
    total: int = 0

    def add(self, records: Iterable[Sequence[Any]], columns: Sequence[str], *,
            json_text: bool = False, floats: Collection[str] | None = None) -> None:
        """Add records (values in ``columns`` order; JSON as ``JsonText`` or decoded).

        With ``json_text`` every JSON column holds JSON text (SQLite's rows, as read).
        ``floats`` names the columns that may hold floats (default: any but ids and times).

        Raises:
            InvalidJsonError: a JSON column holds text that is not JSON.
        """
        plain, times, others, jsons = layout(tuple(columns))
        if floats is not None:
            others = tuple(j for j in others if columns[plain[j]] in floats)
        pick = itemgetter(*plain) if len(plain) > 1 else lambda r: (r[plain[0]],)
        md5, from_bytes, shift = hashlib.md5, int.from_bytes, 64 - HASH_BITS
        total, rows = self.total, self.rows
        for record in records:
            values = pick(record)
            fixed = None
            for j in times:
                value = values[j]
                if value is not None and not (len(value) == 32 and value.endswith("+00:00")):
                    fixed = fixed or list(values)
                    fixed[j] = canon_time(value)
            for j in others:
                value = values[j]
                if value.__class__ is float:
                    fixed = fixed or list(values)
                    fixed[j] = _pack_double(value).hex()
            line = _encode(fixed or values)
            if jsons:
                try:
                    parts = ", ".join([jsonb_text(record[i], text=json_text) for i in jsons])
                except ValueError:
                    raise _invalid(record, columns, jsons, json_text) from None
                line = f"{line[:-1]}, {parts}]"
            total += from_bytes(md5(line.encode()).digest()[:8], "big") >> shift
            rows += 1
        self.total, self.rows = total, rows

    def hexdigest(self) -> str:
        """Return a SHA-256 of the digest, to show and compare."""
        return hashlib.sha256(f"{self.rows}:{self.total}".encode()).hexdigest()


__all__ = ["HASH_BITS", "InvalidJsonError", "RowDigest", "canon_time", "jsonb_text", "layout"]
