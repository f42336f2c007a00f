"""Read a table in (created_at, id) order, turn its rows into the destination's, write them.

Every engine difference is the store's: the batch reads go through ``fetch_records`` (off the
event loop, JSON the engine keeps as text left as ``JsonText``), the writes through
``insert_many`` (COPY on PostgreSQL, ``executemany`` on SQLite).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from ..errors import SchemaError
from ..manager import CoreManager
from ..models import parse_ts
from ..tables import COLUMNS
from .checksums import canon_time, field_indexes

Row = dict[str, Any]
# A position in a table's (created_at, id) order: the key of the last row read or written.
Key = tuple[str, str]


def _select_sql(db: CoreManager, table: str, after: Key | None, limit: int
                ) -> tuple[str, list[Any]]:
    store = db.store
    q = store.query()
    sql = f"SELECT {', '.join(COLUMNS[table])} FROM {table}"
    if after is not None:
        created_at, row_id = after
        ts = store.ts(parse_ts(created_at))
        sql += f" WHERE (created_at, id) > ({q.p(ts)}, {q.p(row_id)})"
    sql += f" ORDER BY created_at, id LIMIT {q.p(limit)}"
    return sql, q.params


async def read(db: CoreManager, table: str, after: Key | None, limit: int) -> list[Row]:
    """Read the next batch after ``after`` as public rows (JSON decoded)."""
    sql, params = _select_sql(db, table, after, limit)
    # heavy: on SQLite the batch is read on the store's thread, so it overlaps the writes.
    return await db.store.fetch(sql, params, heavy=True)


async def read_records(db: CoreManager, table: str, after: Key | None, limit: int
                       ) -> list[list[Any]]:
    """Read the next batch after ``after`` as records: lists in ``COLUMNS[table]`` order.

    This is the copy's fast path: the store reads them off the event loop, and JSON the engine
    keeps as text (SQLite) comes back as ``JsonText``, which goes to the destination as it is,
    never decoded and encoded again (only hashed).
    """
    sql, params = _select_sql(db, table, after, limit)
    return await db.store.fetch_records(sql, params)


async def scan(db: CoreManager, table: str, batch_size: int) -> AsyncIterator[list[Row]]:
    """Yield every row in (created_at, id) order, in batches; the next one is read meanwhile."""
    pending = asyncio.ensure_future(read(db, table, None, batch_size))
    try:
        while True:
            rows = await pending
            if not rows:
                return
            if len(rows) == batch_size:
                after = (rows[-1]["created_at"], rows[-1]["id"])
                pending = asyncio.ensure_future(read(db, table, after, batch_size))
            yield rows
            if len(rows) < batch_size:
                return
    finally:
        if not pending.done():
            pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)


async def count(db: CoreManager, table: str) -> int:
    """Return how many rows ``table`` holds."""
    rows = await db.store.fetch(f"SELECT count(*) AS n FROM {table}", heavy=True)
    return int(rows[0]["n"])


async def has_table(db: CoreManager, table: str) -> bool:
    """Whether the database has ``table`` (an older schema may lack it)."""
    try:
        await count(db, table)
    except SchemaError:
        return False
    return True


async def last_key(db: CoreManager, table: str) -> Key | None:
    """Return the (created_at, id) of the table's last row, or None when it is empty."""
    row = await db.store.fetchone(
        f"SELECT created_at, id FROM {table} ORDER BY created_at DESC, id DESC LIMIT 1"
    )
    return None if row is None else (row["created_at"], row["id"])


async def is_prefix(src: CoreManager, table: str, dst_rows: int, last: Key) -> bool:
    """Whether the destination's rows can be the first ``dst_rows`` rows of the source."""
    store = src.store
    q = store.query()
    ts = store.ts(parse_ts(last[0]))
    found = await store.fetchone(
        f"SELECT created_at FROM {table} WHERE id = {q.p(last[1])}", q.params
    )
    if found is None or canon_time(found["created_at"]) != canon_time(last[0]):
        return False
    q = store.query()
    rows = await store.fetch(
        f"SELECT count(*) AS n FROM {table} WHERE (created_at, id) <= ({q.p(ts)}, {q.p(last[1])})",
        q.params, heavy=True,
    )
    return int(rows[0]["n"]) == dst_rows


def _to_datetime(value: str) -> datetime:
    # The fixed shape every stored timestamp has: no need for parse_ts's general path.
    if len(value) == 32 and value.endswith("+00:00"):
        return datetime.fromisoformat(value)
    return parse_ts(value)


def converter(db: CoreManager, table: str) -> Callable[[list[Any]], list[Any]]:
    """Return a function turning a source record into the destination driver's parameters.

    The destination store's own ``json``/``ts`` encoders are used, as for every other write;
    JSON still held as text (``JsonText``) is kept as it is by ``store.json``.
    """
    store = db.store
    to_json, to_ts = store.json, store.ts
    times, jsons = field_indexes(COLUMNS[table])

    def convert(record: list[Any]) -> list[Any]:
        values = list(record)
        for i in jsons:
            value = values[i]
            if value is not None:
                values[i] = to_json(value)
        for i in times:
            if values[i] is not None:
                values[i] = to_ts(_to_datetime(values[i]))
        return values
    return convert


async def write(db: CoreManager, table: str, rows: list[list[Any]], *, merge: bool,
                columns: Sequence[str] | None = None) -> None:
    """Insert converted records in one transaction; with ``merge``, skip ids already there."""
    await db.store.insert_many(table, columns or COLUMNS[table], rows, skip_existing=merge)


__all__ = [
    "Key",
    "Row",
    "converter",
    "count",
    "has_table",
    "is_prefix",
    "last_key",
    "read",
    "read_records",
    "scan",
    "write",
]
