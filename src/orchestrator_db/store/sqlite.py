"""SQLite engine: one stdlib ``sqlite3`` connection, used without a thread hop when it can be.

Measured on this kind of machine (design §10): one ``run_in_executor`` hop costs ~235 µs, about
three times a whole SQLite INSERT + COMMIT, and aiosqlite pays two hops per query. So a statement
runs directly on the event loop's thread whenever it cannot wait: WAL readers never wait, and a
writer first tries to take the write lock with no busy wait. Only when another process holds the
lock (or the work is large) does the unit move to this store's own thread, where it may wait up
to the busy timeout without blocking the event loop. The connection and its thread are in
``sqlite_connection.py``, group commit in ``sqlite_group.py``.

Reads outside a transaction do not use that connection or its lock at all: they go to the
store's query-only readers (``sqlite_readers.py``): short ones on the loop's thread, long ones
(``heavy``) and read snapshots on a small pool of reader threads. So a long read or an open
transaction never holds up another request's read, and writes never wait for a long read.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..config import Dialect, Target
from ..errors import (
    NotFoundError,
    SchemaNotFoundError,
)
from ..jsoncodec import JsonText
from ..models import format_ts
from ..tables import CHANGE_FIELDS, JSON_FIELDS
from . import sqlite_batch, sqlite_bulk
from .base import Query, Store, TxState, current_tx, hold_tx, tx_level
from .changes import ChangeReader
from .digest import RowDigest
from .migrations import load_migrations, read_migrated
from .sqlite_backup import backup_file, restore_file
from .sqlite_batch import insert_rows
from .sqlite_changes import RECORDED_MIN_ROWS, SQLiteChangeReader, insert_recorded
from .sqlite_connection import (
    DEFAULT_BUSY_TIMEOUT_MS,
    MIGRATIONS_TABLE_SQL,
    SQLiteConnection,
    is_busy,
    rows_of,
    translate_error,
)
from .sqlite_group import SQLiteGroupCommit
from .sqlite_readers import SQLiteReaders, is_wal

T = TypeVar("T")

# Work bigger than this many parameter rows runs on the store's thread, not the event loop.
INLINE_ROWS = 256


class SQLiteStore(Store):
    """A SQLite file shared safely by several processes."""

    dialect = Dialect.SQLITE
    keeps_totals = True  # one writer at a time: its few hot rows cost nothing more

    def __init__(self, target: Target, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
                 schema_file: Path | None = None) -> None:
        super().__init__(target)
        assert target.path is not None
        self.path = target.path
        self.busy_timeout_ms = busy_timeout_ms
        self.schema_file = schema_file
        self.connection = SQLiteConnection(self.path, busy_timeout_ms)
        # Group commit: awaited writes issued in the same event-loop turn share one transaction.
        self.group_commit = True
        self._groups = SQLiteGroupCommit(self.connection)
        # Reads outside a transaction; not opened when the file is not in WAL mode.
        self.readers = SQLiteReaders(self.path, busy_timeout_ms)

    @classmethod
    def from_options(cls, target: Target, *, busy_timeout_ms: int, pool_min_size: int,
                     pool_max_size: int, schema_file: Path | None) -> SQLiteStore:
        return cls(target, busy_timeout_ms=busy_timeout_ms, schema_file=schema_file)

    # parameters ------------------------------------------------------------------------------
    _last_ts: tuple[datetime | None, str | None] = (None, None)

    def ts(self, value: datetime | None) -> Any:
        if value is None:
            return None
        # Bulk rows share one timestamp object: format it once.
        last, text = self._last_ts
        if value is not last:
            text = format_ts(value)
            self._last_ts = (value, text)
        return text

    # lifecycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        if (self.must_exist or self.read_only) and not self.path.is_file():
            raise NotFoundError(f"no database at {self.path}; create it with `orchestrator-db "
                                "upgrade`, or name an existing one with --db / --url",
                                path=str(self.path))
        if self.schema_file is not None and not self.schema_file.is_file():
            raise SchemaNotFoundError(
                f"schema file not found: {self.schema_file}", path=str(self.schema_file)
            )
        # An existing file without our schema (another program's, or empty) is refused too,
        # left as it was, as PostgreSQL refuses a schema without it.
        await self.connection.open(load_migrations(self.dialect), self.schema_file,
                                   read_only=self.read_only, must_exist=self.must_exist)
        self.found_version = self.connection.found_version
        self.migrated = self.connection.migrated
        try:
            if not self.read_only and is_wal(self.connection.get()):
                await self.readers.open()
        except BaseException:
            await self.connection.close()
            raise

    async def close(self) -> None:
        # Writes already awaited by callers are committed before the connection goes away.
        try:
            await self._groups.drain()
            await self.readers.close()
        finally:
            await self.connection.close()

    # statements ------------------------------------------------------------------------------
    async def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool,
                  heavy: bool = False) -> T:
        """Run ``fn(conn)`` atomically: inside the caller's transaction, or as its own unit."""
        connection = self.connection
        try:
            connection.get()
            # Outside every transaction (most statements) there is no level to look for.
            tx = None if current_tx.get() is None else await hold_tx(self, write=write)
            if tx is not None:
                try:
                    if not heavy:
                        return fn(tx.conn)
                    readers = self.readers
                    if readers.owns(tx.conn):  # a read snapshot: on the pool's threads
                        return await readers.in_thread(fn, tx.conn)
                    return await connection.in_thread(fn, tx.conn)
                finally:
                    tx.lock.release()
            if not write and self.readers.is_open:
                return await self._read(fn, heavy)
            if write and not heavy and self.group_commit:
                return await self._groups.write(fn)
            async with connection.lock:
                if not heavy:
                    try:
                        return connection.unit_nowait(fn, write)
                    except sqlite3.OperationalError as exc:
                        if not is_busy(exc):
                            raise
                return await connection.in_thread(connection.unit_waiting, fn, write)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.busy_timeout_ms) from exc

    async def _read(self, fn: Callable[[sqlite3.Connection], T], heavy: bool) -> T:
        """A read outside any transaction: on the inline reader, or on the pool if ``heavy``."""
        readers = self.readers
        if not heavy:
            try:
                return fn(readers.get_inline())
            except sqlite3.OperationalError as exc:
                # The WAL is being recovered or reset: wait for it on a thread, not here.
                if not is_busy(exc):
                    raise
        return await readers.read(fn)

    async def fetch(self, sql: str, params: Sequence[Any] = (), *, heavy: bool = False
                    ) -> list[dict[str, Any]]:
        return await self.run(lambda c: rows_of(c.execute(sql, params)), write=False, heavy=heavy)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self.run(lambda c: c.execute(sql, params).rowcount, write=True)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.run(lambda c: c.executemany(sql, rows), write=True,
                       heavy=len(rows) > INLINE_ROWS)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        connection = self.connection
        connection.get()
        outer = await hold_tx(self, write=True)
        if outer is not None:  # a savepoint, holding the enclosing level for its whole block
            try:
                async with self._savepoint(outer):
                    yield
            finally:
                outer.lock.release()
            return
        async with connection.lock:
            try:
                conn = await connection.begin()
            except sqlite3.Error as exc:
                raise translate_error(exc, self.busy_timeout_ms) from exc

            async def commit() -> None:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    await rollback()
                    raise translate_error(exc, self.busy_timeout_ms) from exc

            async def rollback() -> None:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

            async with tx_level(TxState.opened(self, conn), commit=commit, rollback=rollback):
                yield

    @asynccontextmanager
    async def read_snapshot(self) -> AsyncIterator[None]:
        readers = self.readers
        if not readers.is_open:  # no WAL: on the one connection (writes wait for the block)
            async with self.connection.lock, self._snapshot_on(self.connection.get()):
                yield
            return
        conn = await readers.acquire()
        try:
            async with self._snapshot_on(conn):
                yield
        finally:
            if conn.in_transaction:  # never hand a reader back inside a transaction
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            readers.release(conn)

    @asynccontextmanager
    async def _snapshot_on(self, conn: sqlite3.Connection) -> AsyncIterator[None]:
        """A read transaction on ``conn`` for the block.

        Deferred: the first read takes the WAL snapshot; no lock is taken, so the writers (this
        process's, on a reader's snapshot, and other processes') go on meanwhile. On a reader,
        writes inside the block do not join it (``hold_tx``): they commit on their own. Without
        WAL (no readers) the block is on the one connection, under its lock, so they join it.
        """
        conn.execute("BEGIN")

        async def end() -> None:
            if conn.in_transaction:
                conn.execute("COMMIT")

        level = TxState.opened(self, conn, read_only=self.readers.owns(conn))
        async with tx_level(level, commit=end, rollback=end):
            yield

    def _savepoint(self, outer: TxState) -> contextlib.AbstractAsyncContextManager[None]:
        """Open a savepoint in ``outer``; return the block that releases or rolls it back."""
        conn = outer.conn
        level = TxState.opened(self, conn, depth=outer.depth + 1)
        name = f"sp_{level.depth}"
        conn.execute(f"SAVEPOINT {name}")  # sql-ok: generated identifier

        async def release() -> None:
            conn.execute(f"RELEASE {name}")  # sql-ok: generated identifier

        async def rollback() -> None:
            conn.execute(f"ROLLBACK TO {name}")  # sql-ok: generated identifier
            conn.execute(f"RELEASE {name}")  # sql-ok: generated identifier

        return tx_level(level, commit=release, rollback=rollback)

    # bulk ------------------------------------------------------------------------------------
    async def insert_many(self, table: str, columns: Sequence[str],
                          rows: Sequence[Sequence[Any]], *, skip_existing: bool = False) -> None:
        if not rows:
            return
        if len(rows) == 1:
            await self.execute(self.insert_sql(table, columns, skip_existing=skip_existing),
                               rows[0])
            return
        # sqlite_changes.py: a large insert records its changes at once; sqlite_batch.py: the
        # rows go in by one statement.
        insert = insert_recorded if table in CHANGE_FIELDS and len(rows) >= RECORDED_MIN_ROWS \
            else insert_rows
        await self.run(functools.partial(insert, table=table, columns=columns, rows=rows,
                                         skip_existing=skip_existing),
                       write=True, heavy=len(rows) > INLINE_ROWS)

    async def fetch_records(self, sql: str, params: Sequence[Any] = ()) -> list[list[Any]]:
        def fetch(conn: sqlite3.Connection) -> list[list[Any]]:
            cursor = conn.execute(sql, params)
            names = [d[0] for d in cursor.description or ()]
            json_idx = [i for i, name in enumerate(names) if name in JSON_FIELDS]
            out = []
            for row in cursor:
                values = list(row)
                for i in json_idx:
                    if values[i] is not None:
                        values[i] = JsonText(values[i])
                out.append(values)
            return out
        return await self.run(fetch, write=False, heavy=True)

    # bulk load (copy): sqlite_bulk.py ----------------------------------------------------------
    async def begin_bulk_load(self, tables: Sequence[str]) -> None:
        return None  # indexes and triggers stay (see sqlite_bulk.py)

    async def end_bulk_load(self) -> int:
        return 0

    async def load_batches(self, table: str, columns: Sequence[str],
                           batches: AsyncIterator[Sequence[Sequence[Any]]],
                           committed: Callable[[int], None]) -> None:
        params = self.record_params(columns)
        async for records in batches:
            if records:
                rows = [params(r) for r in records]
                await self.run(functools.partial(sqlite_bulk.insert_batch, table=table,
                                                 columns=columns, rows=rows),
                               write=True, heavy=True)
                committed(len(rows))

    async def table_digests(self, tables: Mapping[str, Sequence[str]]) -> dict[str, RowDigest]:
        return await sqlite_bulk.table_digests(
            self.path, dict(tables), self.busy_timeout_ms,
            lambda fn: self.run(fn, write=False, heavy=True))

    async def continue_change_log(self, head: dict[str, Any]) -> None:
        await self.run(lambda c: sqlite_bulk.continue_changes(c, head, self.ts), write=True,
                       heavy=True)

    # SQL that differs by engine --------------------------------------------------------------
    def day_expr(self, column: str) -> str:
        return f"substr({column}, 1, 10)"  # stored as fixed-shape UTC ISO text

    def rollup_day_expr(self, column: str) -> str:
        return column  # stored as YYYY-MM-DD text

    def day_param(self, day: date) -> Any:
        return day.isoformat()

    def text_order(self, expr: str) -> str:
        return expr  # SQLite compares text by code point (BINARY)

    def null_safe_equals(self) -> str:
        return "IS"

    def lock_rows_clause(self, alias: str) -> str:
        return ""  # BEGIN IMMEDIATE already holds the only write lock

    def ids_condition(self, q: Query, ids: Sequence[str], column: str = "id") -> str:
        return f"{column} IN ({', '.join(q.p(i) for i in ids)})"

    async def delete_ids(self, table: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self.run(functools.partial(sqlite_batch.delete_ids, table=table, ids=ids),
                                  write=True, heavy=len(ids) > INLINE_ROWS))

    # the change log --------------------------------------------------------------------------
    def change_reader(self, *, poll_interval: float) -> ChangeReader:
        return SQLiteChangeReader(self, poll_interval=poll_interval)

    # schema ----------------------------------------------------------------------------------
    @classmethod
    def render_schema(cls) -> str:
        return render_sqlite_schema()

    async def backup(self, dest: Path) -> None:
        # A connection of its own, on the store's thread: SQLite's online backup copies one
        # read snapshot (WAL readers never block writers), so writers go on meanwhile; copying
        # the file instead would miss what is still in the WAL.
        await self.connection.in_thread(backup_file, self.path, dest, self.busy_timeout_ms)

    async def restore(self, src: Path) -> None:
        async with self.connection.lock:
            await self.connection.in_thread(restore_file, src, self.connection.get(),
                                            self.busy_timeout_ms)

    async def storage_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total


_IF_NOT_EXISTS = re.compile(r"^(CREATE (?:TABLE|(?:UNIQUE )?INDEX|TRIGGER|VIEW))\s+(?!IF NOT EXISTS)",
                            re.IGNORECASE)


def render_sqlite_schema() -> str:
    """Return the complete SQLite schema as one idempotent SQL script.

    A database created from it (``sqlite3 data/orchestrator.db < schema_orchestrator.sqlite``)
    records every migration as applied, so ``connect()`` recognises it as up to date. It is
    generated from the packaged migrations, so it never drifts from them.
    """
    migrations = load_migrations(Dialect.SQLITE)
    parts = [
        "-- orchestrator-db schema for SQLite, generated from the package's migrations "
        f"(schema version {migrations[-1].version}).",
        "-- Do not edit by hand: re-create it with `orchestrator-db init --force`.",
        "PRAGMA journal_mode = WAL;",
        "",
    ]
    # The migrations are applied to an empty in-memory database and its final schema written
    # out: ALTER TABLE ... ADD COLUMN (migration 0004) cannot be repeated, CREATE ... IF NOT
    # EXISTS can, so the script stays safe to run twice.
    objects = read_migrated(
        migrations, "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE "
        "'sqlite_%' ORDER BY rowid")
    for (sql,) in objects:
        parts.append(_IF_NOT_EXISTS.sub(r"\1 IF NOT EXISTS ", sql.strip()) + ";")
        parts.append("")
    parts.append(MIGRATIONS_TABLE_SQL + ";")
    for migration in migrations:
        parts.append(
            "INSERT OR IGNORE INTO schema_migrations (version, name, applied_at) VALUES "
            f"({migration.version}, '{migration.name}', "
            "strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));"
        )
    return "\n".join(parts) + "\n"


__all__ = ["INLINE_ROWS", "SQLiteStore", "render_sqlite_schema"]
