"""Log rows in PostgreSQL's binary COPY format, encoded ahead of their write.

A big ``create_*_logs`` batch is validated slice by slice while the server writes the slice
before (``Store.encode_many``). Given parameter rows, asyncpg encodes them inside the COPY, when
the server has finished the previous slice and waits; encoded here, with the validation, the
server only waits for the bytes to arrive. Measured with 20,000 rows, 12 runs of each in
shuffled order: 13.3 µs a row against 14.3 (one asyncpg COPY of ready-made tuples: 10.4).

Only the log tables are encoded here: their columns are ids (uuid), JSON (jsonb), times
(timestamptz) and text, and their rows come validated (canonical ids, JSON text, aware times,
text without NUL or lone surrogates); a value of any other shape is a bug, and raises.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..tables import JSON_FIELDS, LOG_TABLES, TIME_FIELDS, UUID_FIELDS

# The signature, no flags, no header extension; and the trailer: a tuple of -1 fields.
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_UUID_SIZE = b"\x00\x00\x00\x10"
_JSONB_VERSION = b"\x01"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # timestamptz counts microseconds from here
_int32 = struct.Struct("!i").pack
_timestamp = struct.Struct("!iq").pack  # its size (8), then the microseconds


def _uuid(value: str) -> bytes:
    return _UUID_SIZE + bytes.fromhex(value.replace("-", ""))


def _text(value: str) -> bytes:
    data = value.encode()
    return _int32(len(data)) + data


def _jsonb(value: str) -> bytes:
    data = value.encode()
    return _int32(len(data) + 1) + _JSONB_VERSION + data


def _timestamptz(value: datetime) -> bytes:
    if value.tzinfo is None:
        raise TypeError(f"a naive datetime cannot be written as timestamptz: {value!r}")
    delta = value - _EPOCH
    return _timestamp(8, (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


# Columns whose values repeat within a batch (a few agents, levels and types; one default
# time): each distinct value is encoded once a batch. Measured on 20,000 agent_logs rows:
# 1.3 µs a row against 2.3 with every value encoded.
_REPEATING = frozenset({"agent_id", "log_level", "log_type", "source", "created_at"})


def copy_encoder(table: str, columns: Sequence[str]
                 ) -> Callable[[Sequence[Sequence[Any]]], bytes] | None:
    """Return a function encoding parameter rows of ``columns`` as one binary COPY stream, or
    None for a table this module does not encode."""
    if table not in LOG_TABLES:
        return None
    fields = [_uuid if c in UUID_FIELDS else _jsonb if c in JSON_FIELDS
              else _timestamptz if c in TIME_FIELDS else _text for c in columns]
    repeating = [c in _REPEATING for c in columns]
    count = struct.pack("!h", len(columns))

    def encode(rows: Sequence[Sequence[Any]]) -> bytes:
        parts = [HEADER]
        append = parts.append
        encoders: list[tuple[Callable[[Any], bytes], dict[Any, bytes] | None]] = [
            (field, {} if repeats else None)
            for field, repeats in zip(fields, repeating, strict=True)]
        for row in rows:
            append(count)
            for (field, seen), value in zip(encoders, row, strict=True):
                if value is None:
                    append(_NULL)
                elif seen is None:
                    append(field(value))
                else:
                    data = seen.get(value)
                    if data is None:
                        data = seen[value] = field(value)
                    append(data)
        append(TRAILER)
        return b"".join(parts)

    return encode


__all__ = ["copy_encoder"]
