"""The SQLite store's one connection: its settings, errors, migrations, and where work runs.

Work that cannot wait runs on the event loop's thread; work that may wait for another process's
lock runs on the connection's own thread with the busy timeout switched on (see ``sqlite.py`` for
the measurements behind this). ``SQLiteConnection.lock`` is held across every ``await`` during
which the connection is in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from ..errors import (
    ConstraintError,
    DuplicateError,
    ForeignKeyError,
    NotConnectedError,
    OrchestratorDBError,
    SchemaError,
    UnavailableError,
    duplicate_message,
    not_null_message,
)
from ..jsoncodec import decode_json
from ..models import format_ts
from ..tables import JSON_FIELDS
from .catalog import check_sqlite_schema
from .migrations import (
    Migration,
    applied_versions,
    clash_error,
    no_schema_error,
    pending,
    schema_columns,
    split_sql_script,
)

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT_MS = 30_000

# The journal modes a refused file is put back in (setup_connection turned it to WAL).
_JOURNAL_MODES = frozenset({"delete", "truncate", "persist", "memory", "off"})

MIGRATIONS_TABLE_SQL = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""


def setup_connection(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Apply every connection setting in one place; each says why."""
    # Wait for other processes' locks while setting up (a new file is being created by two
    # processes at once, or a writer holds the lock); the hot path switches this off again.
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")  # sql-ok: int
    # WAL: readers never block the writer and the writer never blocks readers. Switching a new
    # file to it takes an exclusive lock: when two processes open the new file at once, each
    # holding a shared lock while asking for it, SQLite answers one of them "locked" at once,
    # without waiting (it would deadlock): that one asks again until the busy timeout.
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))  # apart, so the two do not meet again
    # In WAL mode NORMAL is durable across application crashes and skips an fsync per commit.
    conn.execute("PRAGMA synchronous = NORMAL")
    # SQLite leaves foreign keys off unless asked, per connection.
    conn.execute("PRAGMA foreign_keys = ON")
    # Keep temporary b-trees (sorting, grouping) in memory.
    conn.execute("PRAGMA temp_store = MEMORY")


def is_busy(exc: sqlite3.Error) -> bool:
    """Return whether ``exc`` says another connection holds a lock this one needs."""
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
        # "UNIQUE constraint failed: agents.trace_id, agents.span_id": the message names the
        # table and columns as PostgreSQL's does (errors.duplicate_message), the last column
        # being the field.
        if "UNIQUE" in msg or "NOT NULL" in msg:
            named = [part.strip().split(".", 1) for part in msg.split(":", 1)[-1].split(",")]
            if all(len(n) == 2 for n in named):
                table, columns = named[0][0], [column for _, column in named]
                if "UNIQUE" in msg:
                    return DuplicateError(duplicate_message(table, columns), field=columns[-1])
                return ConstraintError(not_null_message(table, columns[0]), field=columns[0])
        return ConstraintError(f"constraint failed: {msg}")
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in msg:
        return NotConnectedError("the database connection is closed; call connect() first")
    if isinstance(exc, sqlite3.OperationalError):
        if "no such table" in msg or "no such column" in msg:
            return SchemaError(
                f"the database schema is missing or outdated ({msg}); run `orchestrator-db upgrade`"
            )
        if is_busy(exc):
            return UnavailableError(
                f"the database stayed locked by another process for {timeout_ms / 1000:g} s"
            )
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
            return UnavailableError(f"SQLite cannot write or read the file now ({msg})")
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in msg or "malformed" in msg
    ):
        return SchemaError(f"the file is not a SQLite database or is corrupt ({msg})")
    return OrchestratorDBError(f"SQLite error: {msg}")


def rows_of(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """Return a cursor's rows as public-shape dicts (JSON columns decoded)."""
    if cursor.description is None:
        return []
    names = [d[0] for d in cursor.description]
    out = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for name in names:
        if name in JSON_FIELDS:
            for row in out:
                if (text := row[name]) is not None:
                    row[name] = decode_json(text)
    return out


# SQLite has no ADD COLUMN IF NOT EXISTS (PostgreSQL's migrations say it).
_ADD_COLUMN = re.compile(r"(?:\s*--[^\n]*\n)*\s*ALTER\s+TABLE\s+(\w+)\s+ADD\s+COLUMN\s+(\w+)",
                         re.IGNORECASE)


def _migration_statement(conn: sqlite3.Connection, statement: str) -> None:
    """Run one statement of a migration; an ADD COLUMN whose column is there is skipped.

    A migration runs again when its row in ``schema_migrations`` is gone but later ones are
    there (``upgrade`` re-applies it): each of its other statements says IF NOT EXISTS.
    """
    added = _ADD_COLUMN.match(statement)
    if added and conn.execute("SELECT 1 FROM pragma_table_info(?) WHERE name = ?",
                              (added[1], added[2])).fetchall():
        return
    conn.execute(statement)


def recorded_versions(conn: sqlite3.Connection, where: str) -> set[int] | None:
    """Return the versions in ``schema_migrations`` (None: there is no such table).

    SchemaError when the table is another program's (``migrations.applied_versions``).
    """
    # fetchall(): a half-read SELECT would keep a read lock open while others migrate.
    columns = [name for (name,) in conn.execute(
        "SELECT name FROM pragma_table_info('schema_migrations') ORDER BY cid").fetchall()]
    if not columns:
        return None
    versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations").fetchall()]
    return applied_versions(where, columns, versions)


# The errors of a migration statement that mean a table of ours is there with other columns
# (or is not a table): another program's database, never something `upgrade` would fix.
_CLASHES = ("no such column", "no such table", "has no column named", "already exists")


def _clash(conn: sqlite3.Connection, exc: sqlite3.Error, migration: Migration,
           where: str) -> SchemaError | None:
    """Return the error for a migration that failed on another program's tables, or None."""
    if not isinstance(exc, sqlite3.OperationalError) or not any(c in str(exc) for c in _CLASHES):
        return None
    ours = sorted(schema_columns())
    existing: dict[str, list[str]] = {}
    for table, column in conn.execute(
            "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p "
            f"WHERE m.name IN ({', '.join('?' for _ in ours)}) ORDER BY m.name, p.cid",
            ours).fetchall():
        existing.setdefault(table, []).append(column)
    return clash_error(where, migration, existing, str(exc))


def apply_migrations(conn: sqlite3.Connection, migrations: list[Migration],
                     schema_file: Path | None, where: str) -> tuple[int, list[int]]:
    """Apply pending migrations under the write lock (so two processes never both do).

    Returns the schema version the database had before (0: new or empty) and the versions of
    the migrations applied now.
    """
    applied = recorded_versions(conn, where)
    if applied is not None:
        check_sqlite_schema(conn, applied, where)
        if not pending(migrations, applied) and schema_file is None:
            return max(applied, default=0), []
    conn.execute("BEGIN IMMEDIATE")
    migration: Migration | None = None
    try:
        from_file = False
        if schema_file is not None:
            has_tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'agents'"
            ).fetchall()[0][0]
            if not has_tables:
                for statement in split_sql_script(schema_file.read_text()):
                    conn.execute(statement)
                from_file = True
        # Read again under the write lock: another process may have migrated meanwhile.
        applied = recorded_versions(conn, where) or set()
        conn.execute(MIGRATIONS_TABLE_SQL)
        found = 0 if from_file else max(applied, default=0)
        if not from_file:
            check_sqlite_schema(conn, applied, where)
        todo = pending(migrations, applied)
        for migration in todo:
            for statement in split_sql_script(migration.sql):
                _migration_statement(conn, statement)
            if migration.version not in applied:
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, format_ts(datetime.now().astimezone())),
                )
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        # Read after the rollback: the tables the database had, not the ones made meanwhile.
        if migration is not None and (clash := _clash(conn, exc, migration, where)) is not None:
            raise clash from exc
        raise
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found, [m.version for m in todo if m.version not in applied]


class SQLiteConnection:
    """One sqlite3 connection shared by a store, the lock that guards it, and its own thread."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        # Held across every await during which the connection is in use: a transaction block,
        # a unit of work on the thread, a group commit waiting for another process.
        self.lock = asyncio.Lock()
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        #: The schema version found when opening, before any migration (0: new or empty).
        self.found_version: int | None = None
        #: The versions of the migrations applied when opening.
        self.migrated: list[int] = []
        self._file: tuple[int, int] | None = None  # the open file's (device, inode)

    async def open(self, migrations: list[Migration], schema_file: Path | None, *,
                   read_only: bool = False, must_exist: bool = False) -> None:
        """Connect, apply the settings and the pending migrations (on the connection's thread).

        ``read_only``: open the file read-only and apply nothing; a schema that is not the
        newest is a SchemaError saying what to run. ``must_exist``: a file without our schema
        (another program's, or empty) is a NotFoundError, left as it was.
        """
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orchestrator-db")
        connect = self._connect_read_only if read_only else self._connect_and_migrate
        try:
            self._conn = await self.in_thread(connect, migrations, schema_file, must_exist)
            self._file = _file_id(self.path)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _connect_and_migrate(self, migrations: list[Migration], schema_file: Path | None,
                             must_exist: bool) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OrchestratorDBError(f"cannot create the directory of {self.path}: {exc}") from exc

        def prepare(conn: sqlite3.Connection) -> None:
            # Before setup_connection, which turns the file to WAL: another program's database
            # (or schema_migrations table) is refused without any change to it.
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")  # sql-ok: int
            if recorded_versions(conn, str(self.path)) is None and must_exist:
                raise no_schema_error(str(self.path), f"--db {self.path}")
            journal = conn.execute("PRAGMA journal_mode").fetchall()[0][0]
            setup_connection(conn, self.busy_timeout_ms)
            try:
                self.found_version, self.migrated = apply_migrations(
                    conn, migrations, schema_file, str(self.path))
            except SchemaError:
                # Refused: leave the file in the journal mode its program chose.
                if journal in _JOURNAL_MODES:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute(f"PRAGMA journal_mode = {journal}")  # sql-ok: listed
                raise
        return self._connect(str(self.path), prepare, uri=False)

    def _connect_read_only(self, migrations: list[Migration], schema_file: Path | None,
                           must_exist: bool) -> sqlite3.Connection:
        def prepare(conn: sqlite3.Connection) -> None:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")  # sql-ok: int
            conn.execute("PRAGMA query_only = ON")  # and nothing here may write by mistake
            applied = recorded_versions(conn, str(self.path))
            if applied is None:
                raise no_schema_error(str(self.path), f"--db {self.path}")
            self.found_version = max(applied, default=0)
            check_sqlite_schema(conn, applied, str(self.path))
            if pending(migrations, applied):
                raise SchemaError(
                    f"{self.path} is at schema version {max(applied, default=0)}; this "
                    f"orchestrator-db reads version {migrations[-1].version} and opens it read-"
                    f"only, so it is not migrated: run `orchestrator-db upgrade --db {self.path}` "
                    "first", found_version=self.found_version,
                    newest_version=migrations[-1].version)
        return self._connect(f"{self.path.resolve().as_uri()}?mode=ro", prepare, uri=True)

    def _connect(self, name: str, prepare: Callable[[sqlite3.Connection], None], *, uri: bool
                 ) -> sqlite3.Connection:
        """Open a connection, ``prepare`` it (waiting for locks), then make it never wait."""
        try:
            conn = sqlite3.connect(name, uri=uri, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise OrchestratorDBError(f"cannot open SQLite database {self.path}: {exc}") from exc
        try:
            prepare(conn)
            conn.execute("PRAGMA busy_timeout = 0")
        except sqlite3.Error as exc:
            conn.close()
            raise translate_error(exc, self.busy_timeout_ms) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Close the connection (once whoever uses it is done) and stop the thread."""
        conn, self._conn = self._conn, None
        executor, self._executor = self._executor, None
        if conn is not None:
            async with self.lock:
                # On the store's thread, not the event loop: PRAGMA optimize may run ANALYZE
                # and closing checkpoints the WAL, each milliseconds on a large database.
                if executor is not None:
                    await close_on(executor, _close, conn)
                else:
                    _close(conn)
        if executor is not None:
            # The thread is idle now; joining it needs no waiting on the event loop.
            executor.shutdown(wait=False)

    def get(self) -> sqlite3.Connection:
        """Return the open connection, or raise NotConnectedError."""
        if self._conn is None:
            raise NotConnectedError(
                "the database is not connected; call `await db.connect()` or use `async with`"
            )
        return self._conn

    def error(self, exc: sqlite3.Error) -> OrchestratorDBError:
        """Return the orchestrator-db error for ``exc``, the driver's error chained."""
        translated = translate_error(exc, self.busy_timeout_ms)
        translated.__cause__ = exc
        return translated

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the connection's thread; on cancellation, wait for it before leaving."""
        assert self._executor is not None
        return await run_on(self._executor, fn, *args)

    # units of work ---------------------------------------------------------------------------
    def waiting(self, fn: Callable[[], T]) -> T:
        """Call ``fn()`` allowed to wait for other processes' locks (the thread only)."""
        conn = self.get()
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")  # sql-ok: int
        try:
            return fn()
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    def unit_waiting(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        """Run ``fn`` as one unit, waiting for other processes' locks (the thread only)."""
        return self.waiting(lambda: self.unit_nowait(fn, write))

    def check_file(self, conn: sqlite3.Connection) -> None:
        """Under BEGIN IMMEDIATE: refuse the write (rolled back) when the database file was
        removed or replaced since it was opened. SQLite would go on writing to the open, unlinked
        file, and every write acknowledged from then on would be lost with it."""
        try:
            found = _file_id(self.path)
        except OSError:
            found = None
        if self._file is not None and found != self._file:
            conn.execute("ROLLBACK")
            raise UnavailableError(
                f"{self.path} was removed or replaced while this process had it open: nothing "
                "more is written to the old file; reconnect (restart the service) to use the new "
                "one", path=str(self.path))

    def unit_nowait(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        """Run ``fn`` as one unit on the caller's thread; raises a busy error if it would wait."""
        conn = self.get()
        if not write:
            return fn(conn)
        conn.execute("BEGIN IMMEDIATE")
        self.check_file(conn)
        try:
            result = fn(conn)
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def begin(self) -> sqlite3.Connection:
        """BEGIN IMMEDIATE, waiting on the thread if another process holds the write lock."""
        conn = self.get()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            await self.in_thread(self.waiting, lambda: conn.execute("BEGIN IMMEDIATE"))
        self.check_file(conn)
        return conn


def _file_id(path: Path) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_dev, found.st_ino



async def run_on(executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` on ``executor``; on cancellation, wait for it to finish before leaving.

    ``fn`` uses a connection: leaving while it runs would hand the connection (or its lock) to
    someone else under it.
    """
    future = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise


async def close_on(executor: ThreadPoolExecutor, close: Callable[..., None], *args: Any
                   ) -> None:
    """Run ``close`` on ``executor``, or here when the executor no longer takes work.

    At interpreter exit ``concurrent.futures`` stops every executor's threads before the
    ``atexit`` hooks run (``logging.shutdown`` closing an ``OrchestratorDBHandler`` is one), and
    they refuse new work ("cannot schedule new futures after shutdown"): the connection must
    still be closed, so that SQLite checkpoints its WAL.
    """
    try:
        future = asyncio.get_running_loop().run_in_executor(executor, close, *args)
    except RuntimeError:
        close(*args)
        return
    await future


def _close(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        # Let SQLite keep its query planner statistics fresh (cheap, bounded).
        conn.execute("PRAGMA optimize")
    conn.close()


__all__ = ["DEFAULT_BUSY_TIMEOUT_MS", "MIGRATIONS_TABLE_SQL", "SQLiteConnection",
           "apply_migrations", "close_on", "is_busy", "recorded_versions", "rows_of", "run_on",
           "setup_connection", "translate_error"]
