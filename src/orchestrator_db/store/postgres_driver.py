"""What the asyncpg driver needs from us: type codecs, value conversion, error translation."""

from __future__ import annotations

import asyncio
import json
import re
import struct
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from .. import errors
from ..jsoncodec import decode_json, dumps_json
from ..models import format_ts

_UNIQUE_KEY = re.compile(r"Key \(([^)]*)\)=")
# OSError: a connection the pool opens (or reopens) that the server refuses or drops.
DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                 OSError)
# The server cannot serve now, but may later: connection exceptions (08), insufficient
# resources such as a full disk or too many connections (53), an operator's or a crash's
# shutdown (57P), a database not accepting connections (55000 on connect).
_UNAVAILABLE_STATES = ("08", "53", "57P")
# A deadlock or a serialization failure: the server rolled this transaction back so that
# another could go on; the same work may succeed when tried again.
_CONFLICT_STATES = ("40P01", "40001")
# The pool's next connection was refused after the manager had connected: the database was
# dropped or renamed (3D000), the role or password changed (28): not the caller's fault.
_REFUSED_STATES = ("3D000", "28")
# The errors of a migration statement that mean a table of ours is there with other columns or
# types (or is not a table): another program's database, never something `upgrade` would fix.
CLASH_ERRORS = (asyncpg.UndefinedColumnError, asyncpg.UndefinedTableError,
                asyncpg.DuplicateTableError, asyncpg.DuplicateObjectError,
                asyncpg.DatatypeMismatchError, asyncpg.WrongObjectTypeError,
                asyncpg.InvalidForeignKeyError)


def translate_error(exc: Exception) -> errors.OrchestratorDBError:
    """Turn an asyncpg error into the orchestrator-db error it means."""
    msg = str(exc)
    if isinstance(exc, OSError):
        return errors.UnavailableError(f"cannot reach PostgreSQL: {exc}")
    state = getattr(exc, "sqlstate", None) or ""
    if state.startswith(_UNAVAILABLE_STATES) or "not currently accepting connections" in msg:
        return errors.UnavailableError(f"PostgreSQL cannot serve this now: {msg}")
    if state in _CONFLICT_STATES:
        return errors.UnavailableError(
            f"PostgreSQL ended this transaction to resolve a conflict with another ({msg}); "
            "retrying may succeed")
    if state.startswith(_REFUSED_STATES):
        return errors.UnavailableError(
            f"PostgreSQL refused a new connection of the pool: {msg} (was the database "
            "dropped, or the role or its password changed?)")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return errors.ForeignKeyError("a referenced record does not exist")
    if isinstance(exc, asyncpg.UniqueViolationError):
        detail = getattr(exc, "detail", None) or msg
        # "Key (trace_id, span_id)=(…) already exists.": the columns, named as SQLite's message
        # names them (the values are left out), the last one being the field.
        key = _UNIQUE_KEY.search(detail)
        table = getattr(exc, "table_name", None)
        if key and table:
            columns = [c.strip() for c in key.group(1).split(",")]
            return errors.DuplicateError(errors.duplicate_message(table, columns),
                                         field=columns[-1])
        return errors.DuplicateError(f"duplicate value ({detail})")
    if isinstance(exc, asyncpg.NotNullViolationError):
        column, table = getattr(exc, "column_name", None), getattr(exc, "table_name", None)
        if column and table:  # not the failing row, which the DETAIL would show
            return errors.ConstraintError(errors.not_null_message(table, column), field=column)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return errors.ConstraintError(f"constraint failed: {msg}")
    if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError):
        return errors.SchemaError(
            f"the database schema is missing or outdated ({msg}); run `orchestrator-db upgrade`"
        )
    if isinstance(exc, asyncpg.DataError):
        return errors.ValidationError(f"invalid value: {msg}")
    if isinstance(exc, asyncpg.InterfaceError) and ("closed" in msg or "closing" in msg):
        return errors.NotConnectedError(f"the connection to the database is closed ({msg}): "
                                        "the manager was closed, or the server dropped it")
    if isinstance(exc, asyncpg.InternalClientError | asyncpg.InterfaceError) and (
            "another operation is in progress" in msg or "cannot switch to state" in msg):
        # A pool connection the server dropped, found when it is used (it is replaced).
        return errors.UnavailableError(f"the connection to PostgreSQL was lost: {msg}")
    return errors.OrchestratorDBError(f"PostgreSQL error: {msg}")


def rowcount(status: str) -> int:
    """Return the rows a command status touched: "INSERT 0 1", "UPDATE 3", "DELETE 0"."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def translated(exc: BaseException) -> BaseException:
    """Return the error a group write's caller gets for ``exc``, the driver's error chained."""
    if isinstance(exc, DRIVER_ERRORS):
        error = translate_error(exc)
        error.__cause__ = exc
        return error
    if isinstance(exc, asyncio.CancelledError):
        return errors.OrchestratorDBError("the group commit was cancelled")
    return exc


def _value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def rows_of(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """Return records as public-shape dicts (UUID strings, timestamp text, plain numbers)."""
    return [{k: _value(v) for k, v in record.items()} for record in records]


def _jsonb_encode(value: Any) -> bytes:
    # Strings are JSON text already encoded by the manager (store.json); anything else is a
    # Python value to encode here. jsonb's binary format is a version byte, then the text.
    text = value if isinstance(value, str) else dumps_json(value)
    return b"\x01" + text.encode()


def _jsonb_decode(data: bytes) -> Any:
    return decode_json(data[1:].decode())


# date in PostgreSQL's binary format: days from 2000-01-01. asyncpg's own codec sends date.min
# and date.max (the days 0001-01-01 and 9999-12-31) as -infinity and infinity, which compare
# past every real day and have no day to group by (to_char gives NULL): a prune's rollup or a
# cost filter on either day went astray. These are the days themselves.
_DATE_EPOCH = date(2000, 1, 1).toordinal()
_DATE_INFINITIES = {2**31 - 1: date.max, -(2**31): date.min}


def _date_encode(value: date) -> bytes:
    return struct.pack("!i", value.toordinal() - _DATE_EPOCH)


def _date_decode(data: bytes) -> date:
    (days,) = struct.unpack("!i", data)
    found = _DATE_INFINITIES.get(days)  # stored by an older version: the nearest day
    return found if found is not None else date.fromordinal(days + _DATE_EPOCH)


async def init_connection(conn: asyncpg.Connection) -> None:
    """Set up a new pool connection."""
    # jsonb in and out as Python values, so both engines hand back the same dicts. The binary
    # format (a version byte, then the text) is what COPY ... (FORMAT binary) needs.
    await conn.set_type_codec("jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode,
                              schema="pg_catalog", format="binary")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")
    await conn.set_type_codec("date", encoder=_date_encode, decoder=_date_decode,
                              schema="pg_catalog", format="binary")


__all__ = ["CLASH_ERRORS", "DRIVER_ERRORS", "init_connection", "rows_of", "rowcount", "translate_error",
           "translated"]
