"""Read a table in (created_at, id) order, turn its rows into the destination's, write them.

Every engine difference is the store's: the batch reads go through ``fetch_records`` (off the
event loop, JSON the engine keeps as text left as ``JsonText``), the writes through
``insert_many`` (COPY on PostgreSQL, ``executemany`` on SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..errors import SchemaError
from ..manager import CoreManager
from ..models import parse_ts
from ..store.digest import InvalidJsonError, RowDigest
from ..tables import COLUMNS
from .checksums import canon_time
from .errors import CopyError

T = TypeVar("T")
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


async def prefetched(read: Callable[[Key | None], Awaitable[list[T]]],
                      key: Callable[[T], Key], after: Key | None, batch_size: int
                      ) -> AsyncGenerator[list[T], None]:
    """Yield ``read(after)`` batch after batch; the next one is read while this one is used."""
    pending = asyncio.ensure_future(read(after))
    try:
        while True:
            rows = await pending
            if not rows:
                return
            full = len(rows) == batch_size
            if full:
                pending = asyncio.ensure_future(read(key(rows[-1])))
            yield rows
            if not full:
                return
    finally:
        if not pending.done():
            pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)


async def record_batches(src: CoreManager, table: str, after: Key | None, batch_size: int, *,
                         convert: Callable[[Sequence[Any]], list[Any]] | None = None,
                         recent: deque[list[list[Any]]] | None = None
                         ) -> AsyncGenerator[list[list[Any]], None]:
    """Yield the records after ``after`` in batches, turned by ``convert`` if given.

    The next batch is read (on SQLite in the store's thread) while the caller writes this one.
    The records of the batches yielded last are kept in ``recent``, to say which row a write
    refused.
    """
    created = COLUMNS[table].index("created_at")
    batches = prefetched(lambda a: read_records(src, table, a, batch_size),
                          lambda r: (r[created], r[0]), after, batch_size)
    async with contextlib.aclosing(batches):
        async for records in batches:
            if recent is not None:
                recent.append(records)
            yield records if convert is None else [convert(r) for r in records]


def invalid_json(table: str, batches: Iterable[list[list[Any]]]) -> CopyError | None:
    """Return the error naming the first record whose JSON text is not JSON, if there is one."""
    columns = COLUMNS[table]
    for records in batches:
        try:
            RowDigest().add(records, columns)  # decodes every JSON text it hashes
        except InvalidJsonError as exc:
            return CopyError(f"{exc}; fix or delete it, then run the copy again", table=table)
    return None


def scan(db: CoreManager, table: str, batch_size: int) -> AsyncGenerator[list[Row], None]:
    """Yield every row in (created_at, id) order, in batches; the next one is read meanwhile."""
    return prefetched(lambda a: read(db, table, a, batch_size),
                       lambda r: (r["created_at"], r["id"]), None, batch_size)


async def count(db: CoreManager, table: str) -> int:
    """Return how many rows ``table`` holds."""
    rows = await db.store.fetch(f"SELECT count(*) AS n FROM {table}", heavy=True)
    return int(rows[0]["n"])


async def count_if_present(db: CoreManager, table: str) -> int | None:
    """Return how many rows ``table`` holds, or None when the database lacks it (an older
    schema)."""
    try:
        return await count(db, table)
    except SchemaError:
        return None


async def has_table(db: CoreManager, table: str) -> bool:
    """Whether the database has ``table`` (an older schema may lack it)."""
    return await count_if_present(db, table) is not None


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


def converter(db: CoreManager, table: str) -> Callable[[Sequence[Any]], list[Any]]:
    """Return a function turning a source record into the destination driver's parameters."""
    return db.store.record_params(COLUMNS[table])


async def write(db: CoreManager, table: str, rows: list[list[Any]], *, merge: bool,
                columns: Sequence[str] | None = None) -> None:
    """Insert converted records in one transaction; with ``merge``, skip ids already there."""
    await db.store.insert_many(table, columns or COLUMNS[table], rows, skip_existing=merge)


__all__ = [
    "Key",
    "Row",
    "converter",
    "count",
    "count_if_present",
    "has_table",
    "invalid_json",
    "is_prefix",
    "last_key",
    "prefetched",
    "read",
    "read_records",
    "record_batches",
    "scan",
    "write",
]
