"""SQLite engine: one stdlib ``sqlite3`` connection, used without a thread hop when it can be.

Measured on this kind of machine (design §10): one ``run_in_executor`` hop costs ~235 µs, about
three times a whole SQLite INSERT + COMMIT, and aiosqlite pays two hops per query. So a statement
runs directly on the event loop's thread whenever it cannot wait: WAL readers never wait, and a
writer first tries to take the write lock with no busy wait. Only when another process holds the
lock (or the work is large) does the unit move to this store's own thread, where it may wait up
to the busy timeout without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..config import Dialect, Target
from ..errors import (
    ConstraintError,
    DuplicateError,
    ForeignKeyError,
    NotConnectedError,
    OrchestratorDBError,
    SchemaError,
    SchemaNotFoundError,
)
from ..jsoncodec import JsonText, decode_json
from ..models import format_ts
from ..tables import JSON_FIELDS
from .base import Query, Store, TxState, current_tx
from .changes import ChangeReader
from .migrations import Migration, load_migrations, split_sql_script

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT_MS = 30_000
# Work bigger than this many parameter rows runs on the store's thread, not the event loop.
INLINE_ROWS = 256

MIGRATIONS_TABLE_SQL = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


def _setup_connection(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Apply every connection setting in one place; each says why."""
    # Wait for other processes' locks while setting up (a new file is being created by two
    # processes at once, or a writer holds the lock); the hot path switches this off again.
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")  # sql-ok: int
    # WAL: readers never block the writer and the writer never blocks readers.
    conn.execute("PRAGMA journal_mode = WAL")
    # In WAL mode NORMAL is durable across application crashes and skips an fsync per commit.
    conn.execute("PRAGMA synchronous = NORMAL")
    # SQLite leaves foreign keys off unless asked, per connection.
    conn.execute("PRAGMA foreign_keys = ON")
    # Keep temporary b-trees (sorting, grouping) in memory.
    conn.execute("PRAGMA temp_store = MEMORY")


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def translate_error(exc: sqlite3.Error, timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
                    ) -> OrchestratorDBError:
    """Turn a sqlite3 error into the orchestrator-db error it means."""
    msg = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        if "FOREIGN KEY" in msg:
            return ForeignKeyError("a referenced record does not exist")
        if "UNIQUE" in msg:
            column = msg.rsplit(".", 1)[-1] if "." in msg else None
            return DuplicateError(f"duplicate value ({msg})", field=column)
        return ConstraintError(f"constraint failed: {msg}")
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in msg:
        return NotConnectedError("the database connection is closed; call connect() first")
    if isinstance(exc, sqlite3.OperationalError):
        if "no such table" in msg or "no such column" in msg:
            return SchemaError(
                f"the database schema is missing or outdated ({msg}); run `orchestrator-db upgrade`"
            )
        if _is_busy(exc):
            return OrchestratorDBError(
                f"the database stayed locked by another process for {timeout_ms / 1000:g} s"
            )
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in msg or "malformed" in msg
    ):
        return SchemaError(f"the file is not a SQLite database or is corrupt ({msg})")
    return OrchestratorDBError(f"SQLite error: {msg}")


def _rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    if cursor.description is None:
        return []
    names = [d[0] for d in cursor.description]
    json_idx = [i for i, name in enumerate(names) if name in JSON_FIELDS]
    out = []
    for row in cursor.fetchall():
        if json_idx:
            values = list(row)
            for i in json_idx:
                if values[i] is not None:
                    values[i] = decode_json(values[i])
            out.append(dict(zip(names, values, strict=True)))
        else:
            out.append(dict(zip(names, row, strict=True)))
    return out


def _migrate(conn: sqlite3.Connection, migrations: list[Migration], schema_file: Path | None
             ) -> None:
    """Apply pending migrations under the write lock (so two processes never both do)."""
    newest = migrations[-1].version
    wanted = {m.version for m in migrations}
    with contextlib.suppress(sqlite3.OperationalError):
        # fetchall(): a half-read SELECT would keep a read lock open while others migrate.
        applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        if applied and max(applied) > newest:
            raise SchemaError(
                f"the database schema (version {max(applied)}) is newer than this orchestrator-db "
                f"(version {newest}); upgrade the package"
            )
        if applied >= wanted and schema_file is None:
            return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if schema_file is not None:
            has_tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'agents'"
            ).fetchall()[0][0]
            if not has_tables:
                for statement in split_sql_script(schema_file.read_text()):
                    conn.execute(statement)
        conn.execute(MIGRATIONS_TABLE_SQL)
        applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        if applied and max(applied) > newest:
            raise SchemaError(
                f"the database schema (version {max(applied)}) is newer than this "
                f"orchestrator-db (version {newest}); upgrade the package"
            )
        for migration in migrations:
            if migration.version in applied:
                continue
            for statement in split_sql_script(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, format_ts(datetime.now().astimezone())),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@dataclass
class _GroupWrite:
    """One awaited write waiting for the group commit."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


def _run_group(conn: sqlite3.Connection, fns: list[Callable[[sqlite3.Connection], Any]]
               ) -> list[tuple[bool, Any]]:
    """Run writes in one transaction; return (ok, result or exception) per write.

    Raises the busy error of BEGIN IMMEDIATE before anything ran, so the caller can retry the
    whole group where it may wait.
    """
    conn.execute("BEGIN IMMEDIATE")
    outcomes: list[tuple[bool, Any]] = []
    try:
        if len(fns) == 1:
            try:
                outcomes.append((True, fns[0](conn)))
            except Exception as exc:  # noqa: BLE001 - returned to its caller
                conn.execute("ROLLBACK")
                return [(False, exc)]
        else:
            for fn in fns:
                conn.execute("SAVEPOINT group_write")
                try:
                    outcomes.append((True, fn(conn)))
                except Exception as exc:  # noqa: BLE001 - returned to its caller
                    conn.execute("ROLLBACK TO group_write")
                    outcomes.append((False, exc))
                conn.execute("RELEASE group_write")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _settle(group: list[_GroupWrite], outcomes: list[tuple[bool, Any]] | None,
            error: BaseException | None, timeout_ms: int) -> None:
    """Resume every caller of a group with its own result or error."""
    for index, write in enumerate(group):
        if write.future.done():
            continue
        if outcomes is None:
            assert error is not None
            ok, value = False, error
        else:
            ok, value = outcomes[index]
        if ok:
            write.future.set_result(value)
        else:
            if isinstance(value, sqlite3.Error):
                translated = translate_error(value, timeout_ms)
                translated.__cause__ = value
                value = translated
            elif isinstance(value, asyncio.CancelledError):
                value = OrchestratorDBError("the group commit was cancelled")
            write.future.set_exception(value)


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
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        # Group commit: awaited writes issued in the same event-loop turn share one transaction.
        self.group_commit = True
        self._group: list[_GroupWrite] = []
        self._group_flusher: asyncio.Task[None] | None = None
        self._group_scheduled = False

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
        if self.schema_file is not None and not self.schema_file.is_file():
            raise SchemaNotFoundError(
                f"schema file not found: {self.schema_file}", path=str(self.schema_file)
            )
        migrations = load_migrations(self.dialect)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orchestrator-db")
        try:
            self._conn = await self._in_thread(self._connect_and_migrate, migrations)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _connect_and_migrate(self, migrations: list[Migration]) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OrchestratorDBError(f"cannot create the directory of {self.path}: {exc}") from exc
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise OrchestratorDBError(f"cannot open SQLite database {self.path}: {exc}") from exc
        try:
            _setup_connection(conn, self.busy_timeout_ms)
            _migrate(conn, migrations, self.schema_file)
            conn.execute("PRAGMA busy_timeout = 0")
        except sqlite3.Error as exc:
            conn.close()
            raise translate_error(exc, self.busy_timeout_ms) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        # Writes already awaited by callers are committed before the connection goes away.
        while self._group or self._group_flusher is not None:
            if self._group_flusher is not None:
                await asyncio.shield(self._group_flusher)
            else:
                await asyncio.sleep(0)
        conn, self._conn = self._conn, None
        executor, self._executor = self._executor, None
        if conn is not None:
            async with self._lock:
                with contextlib.suppress(sqlite3.Error):
                    # Let SQLite keep its query planner statistics fresh (cheap, bounded).
                    conn.execute("PRAGMA optimize")
                conn.close()
        if executor is not None:
            executor.shutdown(wait=True)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise NotConnectedError(
                "the database is not connected; call `await db.connect()` or use `async with`"
            )
        return self._conn

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the store's thread; on cancellation, wait for it before leaving."""
        assert self._executor is not None
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The connection is still in use by the thread: do not release the lock under it.
            with contextlib.suppress(BaseException):
                await future
            raise

    # units of work ---------------------------------------------------------------------------
    def _waiting(self, conn: sqlite3.Connection, fn: Callable[[], T]) -> T:
        """Call ``fn()`` allowed to wait for other processes' locks (store thread only)."""
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")  # sql-ok: int
        try:
            return fn()
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    def _unit_waiting(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T],
                      write: bool) -> T:
        """Run ``fn`` as one unit, waiting for other processes' locks (store thread only)."""
        return self._waiting(conn, lambda: self._unit_nowait(conn, fn, write))

    def _unit_nowait(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T],
                     write: bool) -> T:
        """Run ``fn`` as one unit on the caller's thread; raises a busy error if it would wait."""
        if not write:
            return fn(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool,
                  heavy: bool = False) -> T:
        """Run ``fn(conn)`` atomically: inside the caller's transaction, or as its own unit."""
        conn = self._connection()
        tx = current_tx.get()
        try:
            if tx is not None and tx.store is self:
                if heavy:
                    return await self._in_thread(fn, conn)
                return fn(conn)
            if write and not heavy and self.group_commit:
                return await self._group_write(fn)
            async with self._lock:
                conn = self._connection()
                if not heavy:
                    try:
                        return self._unit_nowait(conn, fn, write)
                    except sqlite3.OperationalError as exc:
                        if not _is_busy(exc):
                            raise
                return await self._in_thread(self._unit_waiting, conn, fn, write)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.busy_timeout_ms) from exc

    # group commit ----------------------------------------------------------------------------
    # Writes that are awaited concurrently (50 coroutines each awaiting create_agent_log) are
    # queued for one event-loop turn and committed together: one BEGIN IMMEDIATE ... COMMIT for
    # the group, a SAVEPOINT around each write so a bad row fails only its own caller, and every
    # caller resumes only after the COMMIT that contains its write. The first writer of a group
    # leads it: it yields one loop turn (so the writers already scheduled can join), then commits
    # the group itself, so a lone writer pays one `sleep(0)` on top of its own unit.
    async def _group_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._group.append(_GroupWrite(fn, future))
        if self._group_scheduled or self._group_flusher is not None:
            return await future  # type: ignore[no-any-return]
        self._group_scheduled = True  # this caller leads the group
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            future.cancel()
            loop.call_soon(self._flush_group_inline)  # the others still get their commit
            raise
        self._flush_group_inline()
        if future.done():
            return future.result()  # type: ignore[no-any-return]
        return await future  # type: ignore[no-any-return]

    def _take_group(self) -> list[_GroupWrite]:
        group = [w for w in self._group if not w.future.done()]  # a cancelled caller drops out
        self._group = []
        return group

    def _flush_group_inline(self) -> None:
        """Commit the queued group on the loop's thread, or hand it to a task that can wait."""
        self._group_scheduled = False
        if self._group_flusher is not None or not self._group:
            return
        if self._conn is None or self._lock.locked():
            # A transaction (or a unit on the store's thread) owns the connection: wait for it.
            self._start_group_flusher()
            return
        group = self._take_group()
        if not group:
            return
        try:
            outcomes = _run_group(self._conn, [w.fn for w in group])
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                _settle(group, None, exc, self.busy_timeout_ms)
                return
            # Another process holds the write lock: wait for it on the store's thread.
            self._group[:0] = group
            self._start_group_flusher()
            return
        except BaseException as exc:
            _settle(group, None, exc, self.busy_timeout_ms)  # nobody is left waiting
            if not isinstance(exc, Exception):
                raise
            return
        _settle(group, outcomes, None, self.busy_timeout_ms)

    def _start_group_flusher(self) -> None:
        self._group_flusher = asyncio.get_running_loop().create_task(self._flush_group_waiting())

    async def _flush_group_waiting(self) -> None:
        try:
            while self._group:
                async with self._lock:
                    group = self._take_group()
                    if not group:
                        continue
                    try:
                        conn = self._connection()
                        try:
                            outcomes = _run_group(conn, [w.fn for w in group])
                        except sqlite3.OperationalError as exc:
                            if not _is_busy(exc):
                                raise
                            outcomes = await self._in_thread(
                                self._waiting, conn,
                                functools.partial(_run_group, conn, [w.fn for w in group]))
                    except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                        _settle(group, None, exc, self.busy_timeout_ms)
                        if isinstance(exc, asyncio.CancelledError):
                            raise
                        continue
                    _settle(group, outcomes, None, self.busy_timeout_ms)
        finally:
            self._group_flusher = None
            if self._group and not self._group_scheduled:
                self._group_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_group_inline)


    # statements ------------------------------------------------------------------------------
    async def fetch(self, sql: str, params: Sequence[Any] = (), *, heavy: bool = False
                    ) -> list[dict[str, Any]]:
        return await self.run(lambda c: _rows(c.execute(sql, params)), write=False, heavy=heavy)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self.run(lambda c: c.execute(sql, params).rowcount, write=True)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.run(lambda c: c.executemany(sql, rows), write=True,
                       heavy=len(rows) > INLINE_ROWS)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        conn = self._connection()
        tx = current_tx.get()
        if tx is not None and tx.store is self:
            tx.depth += 1
            name = f"sp_{tx.depth}"
            try:
                conn.execute(f"SAVEPOINT {name}")  # sql-ok: generated identifier
                try:
                    yield
                except BaseException:
                    conn.execute(f"ROLLBACK TO {name}")  # sql-ok: generated identifier
                    conn.execute(f"RELEASE {name}")  # sql-ok: generated identifier
                    raise
                conn.execute(f"RELEASE {name}")  # sql-ok: generated identifier
            finally:
                tx.depth -= 1
            return
        async with self._lock:
            conn = self._connection()
            try:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc):
                        raise
                    await self._in_thread(self._begin_waiting, conn)
            except sqlite3.Error as exc:
                raise translate_error(exc, self.busy_timeout_ms) from exc
            token = current_tx.set(TxState(self, conn))
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise translate_error(exc, self.busy_timeout_ms) from exc
            finally:
                current_tx.reset(token)

    def _begin_waiting(self, conn: sqlite3.Connection) -> None:
        self._waiting(conn, lambda: conn.execute("BEGIN IMMEDIATE"))

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
        from .sqlite_changes import SQLiteChangeReader

        return SQLiteChangeReader(self, poll_interval=poll_interval)

    # schema ----------------------------------------------------------------------------------
    async def schema_version(self) -> int:
        rows = await self.fetch("SELECT coalesce(max(version), 0) AS v FROM schema_migrations")
        return int(rows[0]["v"])

    @classmethod
    def render_schema(cls) -> str:
        return render_sqlite_schema()

    async def storage_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total


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
    for migration in migrations:
        parts.append(f"-- migration {migration.version:04d}_{migration.name}")
        parts.append(migration.sql.strip())
        parts.append("")
    parts.append(MIGRATIONS_TABLE_SQL + ";")
    for migration in migrations:
        parts.append(
            "INSERT OR IGNORE INTO schema_migrations (version, name, applied_at) VALUES "
            f"({migration.version}, '{migration.name}', "
            "strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));"
        )
    return "\n".join(parts) + "\n"
