"""An order-free digest of a table's rows that both engines compute alike, PostgreSQL in SQL.

``copy`` verifies without reading the destination back through Python: PostgreSQL hashes its
side in one parallel scan (``PostgresStore.table_digests``); a SQLite side is hashed here, by
``RowDigest``, in a process of its own (``sqlite_bulk.py``), the source's while it is copied.

Each row becomes one line: the compact JSON array (separators ``","``) of its plain values
as text, in column order, as PostgreSQL's ``array_to_json`` of a ``text[]`` prints it and
SQLite's ``json_array`` of ``CAST(… AS TEXT)`` values does (so SQLite builds that part in C), then
each JSON column after a tab, as ``jsonb`` prints it (keys ordered by length then bytes,
numbers as ``numeric`` writes them; ``null`` for NULL). Timestamps are in the package's one shape
(``to_char`` on PostgreSQL), floats the hex of their 8 IEEE-754 bytes (``float8send``: exact, no
float printing to agree on), integers in decimal. The digest is the number of rows and the exact
sum of the first 60 bits of each line's MD5 (60, so that SQL reads each as a ``bigint``): a
changed row goes unnoticed only if its new line's hash starts with the same 60 bits (one chance
in 10^18), row order does not matter, so PostgreSQL scans in parallel, and SQLite's rows are
summed as they are read. MD5 serves as a checksum here, not as a defence against someone
forging rows.
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

import orjson

from ..jsoncodec import JsonText
from ..models import format_ts, is_canonical_ts, parse_ts
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
_orjson_loads = orjson.loads
_OrjsonError = orjson.JSONDecodeError


# The same with compact separators: the plain values' array, as array_to_json prints it.
_encode_compact_chunks = c_make_encoder(None, _unencodable, encode_basestring, None, ":", ",",
                                        False, False, True)


def _encode(value: Any) -> str:
    return "".join(_encode_chunks(value, 0))


def plain_array(values: Sequence[str | None]) -> str:
    """Return text values (or None) as the compact JSON array that starts a digest line."""
    return "".join(_encode_compact_chunks(values, 0))


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


class _HasFloat(Exception):
    """A decoded value holds a float: its spelling in the text matters (``numeric``)."""


# jsonb's key order of each sequence of keys seen (log details repeat a few shapes); None when
# the keys are in that order already.
_KEY_ORDERS: dict[tuple[str, ...], tuple[str, ...] | None] = {}
_KEY_ORDERS_MAX = 4096


def _key_order(keys: tuple[str, ...]) -> tuple[str, ...] | None:
    try:
        return _KEY_ORDERS[keys]
    except KeyError:
        pass
    ordered = sorted(keys)
    ordered.sort(key=len if "".join(ordered).isascii() else _byte_length)
    order = None if tuple(ordered) == keys else tuple(ordered)
    if len(_KEY_ORDERS) < _KEY_ORDERS_MAX:
        _KEY_ORDERS[keys] = order
    return order


def _ordered(value: Any) -> Any:
    """Return a decoded value (no floats) with object keys in jsonb's order.

    Raises _HasFloat when it holds a float, whose spelling only the text knows.
    """
    kind = value.__class__
    if kind is dict:
        keys = tuple(value)
        order = _key_order(keys)
        if order is None:  # already in order: only the values may need work
            for item in value.values():
                kind = item.__class__
                if kind is dict or kind is list or kind is float:
                    break
            else:
                return value
        out = {}
        for key in order or keys:
            item = value[key]
            kind = item.__class__
            if kind is dict or kind is list:
                item = _ordered(item)
            elif kind is float:
                raise _HasFloat
            out[key] = item
        return out
    if kind is list:
        return [_ordered(v) for v in value]
    if kind is float:
        raise _HasFloat
    return value


def jsonb_text(value: Any, *, text: bool = False) -> str:
    """Return a JSON value as PostgreSQL's ``jsonb`` prints it.

    ``value`` is JSON text (``JsonText``, or any string when ``text``) or a decoded value.
    Raises ValueError when the text is not JSON.
    """
    if value is None:
        return "null"
    if text or value.__class__ is JsonText:
        # orjson first (a few times faster); the standard scanner, keeping each number's
        # spelling as a Decimal, for text with floats and for what orjson refuses (it may
        # still be JSON: lone surrogates, for one) or reads as a float (integers > 64 bits).
        try:
            return _encode(_ordered(_orjson_loads(value)))
        except (_HasFloat, _OrjsonError):
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
    # Rows written by this package are already canonical; only rows written by other tools need
    # re-formatting.
    if value is None or (isinstance(value, str) and is_canonical_ts(value)):
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
        ``floats`` names the columns that may hold floats or integers (default: any but ids and
        times); the others must hold text.

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
                if value is not None and not is_canonical_ts(value):
                    fixed = fixed or list(values)
                    value = canon_time(value)
                    fixed[j] = value if value.__class__ is str else str(value)
            for j in others:
                value = values[j]
                kind = value.__class__
                if kind is not str and value is not None:
                    fixed = fixed or list(values)
                    fixed[j] = _pack_double(value).hex() if kind is float else str(value)
            line = plain_array(fixed or values)
            if jsons:
                try:
                    parts = "\t".join([jsonb_text(record[i], text=json_text) for i in jsons])
                except ValueError:
                    raise _invalid(record, columns, jsons, json_text) from None
                line = f"{line}\t{parts}"
            total += from_bytes(md5(line.encode()).digest()[:8], "big") >> shift
            rows += 1
        self.total, self.rows = total, rows

    def add_built(self, rows: Iterable[Sequence[Any]], jsons: int) -> list[Any]:
        """Add rows given as their plain array already built (``plain_array``'s text in UTF-8,
        as SQLite's ``json_array`` builds it in C), their ``jsons`` JSON columns' text, then a
        marker: the rows whose marker is not None are not added, their markers returned.

        Raises:
            ValueError: a JSON column holds text that is not JSON (``add`` says which row).
        """
        md5, from_bytes, shift = hashlib.md5, int.from_bytes, 64 - HASH_BITS
        total, count, skipped = self.total, 0, []
        if jsons == 1:
            for plain, doc, marker in rows:
                if marker is None:
                    line = b"%s\t%s" % (plain, jsonb_text(doc, text=True).encode())
                    total += from_bytes(md5(line).digest()[:8], "big") >> shift
                    count += 1
                else:
                    skipped.append(marker)
        else:
            for row in rows:
                if row[-1] is None:
                    line = b"\t".join([row[0], *[jsonb_text(d, text=True).encode()
                                                  for d in row[1:-1]]])
                    total += from_bytes(md5(line).digest()[:8], "big") >> shift
                    count += 1
                else:
                    skipped.append(row[-1])
        self.total, self.rows = total, self.rows + count
        return skipped

    def hexdigest(self) -> str:
        """Return a SHA-256 of the digest, to show and compare."""
        return hashlib.sha256(f"{self.rows}:{self.total}".encode()).hexdigest()


__all__ = ["HASH_BITS", "InvalidJsonError", "RowDigest", "canon_time", "jsonb_text", "layout",
           "plain_array"]
