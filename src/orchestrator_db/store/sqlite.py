"""SQLite engine: one stdlib ``sqlite3`` connection, used without a thread hop when it can be.

Measured on this kind of machine (design §10): one ``run_in_executor`` hop costs ~235 µs, about
three times a whole SQLite INSERT + COMMIT, and aiosqlite pays two hops per query. So a statement
runs directly on the event loop's thread whenever it cannot wait: WAL readers never wait, and a
writer first tries to take the write lock with no busy wait. Only when another process holds the
lock (or the work is large) does the unit move to this store's own thread, where it may wait up
to the busy timeout without blocking the event loop. The connection and its thread are in
``sqlite_connection.py``, group commit in ``sqlite_group.py``.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..config import Dialect, Target
from ..errors import (
    DuplicateError,
    NotFoundError,
    OrchestratorDBError,
    SchemaError,
    SchemaNotFoundError,
)
from ..jsoncodec import JsonText
from ..models import format_ts
from ..tables import JSON_FIELDS
from .base import Query, Store, TxState, hold_tx, tx_level
from .changes import ChangeReader
from .migrations import load_migrations, split_sql_script
from .sqlite_changes import SQLiteChangeReader
from .sqlite_connection import (
    DEFAULT_BUSY_TIMEOUT_MS,
    MIGRATIONS_TABLE_SQL,
    SQLiteConnection,
    is_busy,
    rows_of,
    translate_error,
)
from .sqlite_group import SQLiteGroupCommit

T = TypeVar("T")

# Work bigger than this many parameter rows runs on the store's thread, not the event loop.
INLINE_ROWS = 256


class SQLiteStore(Store):
    """A SQLite file shared safely by several processes."""

    dialect = Dialect.SQLITE

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
        await self.connection.open(load_migrations(self.dialect), self.schema_file,
                                   read_only=self.read_only)
        self.found_version = self.connection.found_version

    async def close(self) -> None:
        # Writes already awaited by callers are committed before the connection goes away.
        await self._groups.drain()
        await self.connection.close()

    # statements ------------------------------------------------------------------------------
    async def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool,
                  heavy: bool = False) -> T:
        """Run ``fn(conn)`` atomically: inside the caller's transaction, or as its own unit."""
        connection = self.connection
        try:
            connection.get()
            tx = await hold_tx(self)
            if tx is not None:
                try:
                    return await connection.in_thread(fn, tx.conn) if heavy else fn(tx.conn)
                finally:
                    tx.lock.release()
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
        outer = await hold_tx(self)
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
        connection = self.connection
        async with connection.lock:
            conn = connection.get()
            # Deferred: the first read takes the WAL snapshot; no write lock is taken, so other
            # processes keep writing (this process's writes wait for the block, as for any
            # transaction on the one connection).
            conn.execute("BEGIN")

            async def end() -> None:
                if conn.in_transaction:
                    conn.execute("COMMIT")

            async with tx_level(TxState.opened(self, conn), commit=end, rollback=end):
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
        sql = self.insert_sql(table, columns, skip_existing=skip_existing)
        if len(rows) == 1:
            await self.execute(sql, rows[0])
        else:
            await self.executemany(sql, rows)

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
        # Inside a transaction that took the write lock up front the selected rows are all
        # still there; one statement per id keeps clear of SQLite's limit on parameters.
        await self.executemany(f"DELETE FROM {table} WHERE id = ?", [(i,) for i in ids])
        return len(ids)

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
        await self.connection.in_thread(_backup, self.path, dest, self.busy_timeout_ms)

    async def restore(self, src: Path) -> None:
        async with self.connection.lock:
            await self.connection.in_thread(_restore, src, self.connection.get(),
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
    scratch = sqlite3.connect(":memory:")
    try:
        for migration in migrations:
            for statement in split_sql_script(migration.sql):
                scratch.execute(statement)
        objects = scratch.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
            "ORDER BY rowid").fetchall()
    finally:
        scratch.close()
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



def _backup(src_path: Path, dest: Path, busy_timeout_ms: int) -> None:
    if dest.exists():
        raise DuplicateError(f"{dest} already exists; backup never overwrites a file",
                             field="dest")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(f"{src_path.resolve().as_uri()}?mode=ro", uri=True)
    except (OSError, sqlite3.Error) as exc:
        raise OrchestratorDBError(f"cannot back up {src_path} to {dest}: {exc}") from exc
    try:
        src.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")  # sql-ok: int
        target = sqlite3.connect(dest)
        try:
            src.backup(target)
            target.execute("PRAGMA journal_mode = WAL")
        finally:
            target.close()
    except sqlite3.Error as exc:
        with contextlib.suppress(OSError):
            dest.unlink()
        raise translate_error(exc, busy_timeout_ms) from exc
    finally:
        src.close()


def _restore(src_path: Path, conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    if not src_path.is_file():
        raise NotFoundError(f"no backup at {src_path}", path=str(src_path))
    try:
        src = sqlite3.connect(f"{src_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise OrchestratorDBError(f"cannot open {src_path}: {exc}") from exc
    try:
        check = src.execute("PRAGMA integrity_check").fetchone()[0]
        has_schema = src.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                 "AND name = 'schema_migrations'").fetchone()[0]
        if check != "ok" or not has_schema:
            raise SchemaError(f"{src_path} is not an orchestrator-db backup "
                              f"(integrity: {check}; schema table: {bool(has_schema)})")
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")  # sql-ok: int
        try:
            src.backup(conn)
        finally:
            conn.execute("PRAGMA busy_timeout = 0")
    except sqlite3.Error as exc:
        raise translate_error(exc, busy_timeout_ms) from exc
    finally:
        src.close()


__all__ = ["INLINE_ROWS", "SQLiteStore", "render_sqlite_schema"]
