"""A batch of rows inserted on SQLite by one statement, so the insert runs without the GIL.

``executemany`` binds each row's parameters in Python, holding the interpreter lock, between
``sqlite3_step`` calls that release it: one hand-over of the lock per row. While another thread
runs Python (the application's event loop, a thread logging), each hand-back waits for that
thread to let go, up to the interpreter's switch interval (5 ms). Measured: 50,000 log rows in
batches of 1,000 went in at 143,000 rows/s on a quiet process and at 540 rows/s beside a busy
thread. Here the batch travels as one JSON array, built by orjson in one call, and SQLite takes
it apart in C (``json_each``) inside one statement: 171,000 rows/s quiet, 49,000 beside the
busy thread, and the logging handler's writer runs beside the threads that log. Quiet, a batch
of 2 rows is about 10% slower this way, one of 10 already 13% faster; beside the busy thread no
size is slower.

A batch goes this way only when JSON carries each value exactly; otherwise it is inserted with
``executemany`` as before:
- not for columns of floats: SQLite's own text-to-double conversion may differ from Python's in
  the last bit, and the two engines must store the same numbers;
- not when a value cannot be JSON (bytes, a lone surrogate, a datetime, an integer past 53
  bits: orjson is told to refuse them) or holds NUL, which SQLite's ``json_extract`` cuts a
  string at;
- not with a SQLite built without its JSON functions (optional before 3.38).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from functools import cache
from typing import Any

import orjson

from ..tables import FLOAT_FIELDS
from .base import insert_statement

# Values the driver would refuse or bind otherwise make orjson refuse too: times, dataclasses,
# and integers past 53 bits (it writes up to 2**64 - 1; json_extract reads past 2**63 as a float).
_AS_DRIVER = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
              | orjson.OPT_STRICT_INTEGER)
_NUL = b"\\u0000"  # how orjson writes NUL (a text's literal "\u0000" is escaped: also matched)


@cache
def json_functions() -> bool:
    """Whether the SQLite library this process uses has its JSON functions (one for all)."""
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        try:
            conn.execute("SELECT value FROM json_each('[1]')").fetchall()
        except sqlite3.OperationalError:
            return False
    return True


@cache
def _statements(table: str, columns: tuple[str, ...], skip_existing: bool
                ) -> tuple[str, str | None]:
    """Return the one-row INSERT and the JSON batch INSERT (None for columns of floats)."""
    one = insert_statement(table, columns, f"VALUES ({', '.join('?' for _ in columns)})",
                           skip_existing=skip_existing)
    if FLOAT_FIELDS.intersection(columns):
        return one, None
    # json_each yields the elements in array order, so the rows get their rowids (and their
    # change rows, their positions) in the batch's order. "WHERE true": SQLite reads an ON
    # CONFLICT after a bare FROM as a join's ON.
    values = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))
    batch = insert_statement(table, columns, f"SELECT {values} FROM json_each(?) WHERE true",
                             skip_existing=skip_existing)
    return one, batch


def insert_rows(conn: sqlite3.Connection, table: str, columns: Sequence[str],
                rows: Sequence[Sequence[Any]], *, skip_existing: bool = False) -> None:
    """Insert ``rows`` (driver parameters in ``columns`` order) in the caller's transaction."""
    one, batch = _statements(table, tuple(columns), skip_existing)
    if batch is not None and len(rows) > 1 and json_functions():
        try:
            payload = orjson.dumps(rows, option=_AS_DRIVER)
        except orjson.JSONEncodeError:
            pass
        else:
            if _NUL not in payload:
                # As text: SQLite 3.45 and later read a BLOB argument as its binary JSONB.
                conn.execute(batch, (payload.decode(),))
                return
    conn.executemany(one, rows)


def delete_ids(conn: sqlite3.Connection, table: str, ids: Sequence[str]) -> int:
    """Delete the rows of ``table`` with these ids (in the caller's transaction); return how
    many went. One statement over the ids as a JSON array: clear of SQLite's limit on
    parameters, and one step, not one an id."""
    if not json_functions():
        return conn.executemany(f"DELETE FROM {table} WHERE id = ?", [(i,) for i in ids]).rowcount
    # As text: SQLite 3.45 and later read a BLOB argument as its binary JSONB.
    return conn.execute(f"DELETE FROM {table} WHERE id IN (SELECT value FROM json_each(?))",
                        (orjson.dumps(list(ids)).decode(),)).rowcount


__all__ = ["delete_ids", "insert_rows", "json_functions"]
