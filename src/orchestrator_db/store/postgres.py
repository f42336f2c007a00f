"""PostgreSQL engine: an asyncpg pool, native uuid/timestamptz/jsonb types.

Awaited single writes outside a transaction are group-committed: the writes issued in one
event-loop turn share one transaction (see ``postgres_group.py``), so 50 coroutines each awaiting
``create_agent_log`` pay one COMMIT (one WAL flush) per turn instead of one each. What the driver
needs (codecs, value conversion, error translation) is in ``postgres_driver.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from ..config import Dialect, Target, postgres_connect_options
from ..errors import NotConnectedError, OrchestratorDBError, SchemaError
from . import postgres_bulk
from .base import Query, Store, TxState, hold_tx, tx_level
from .catalog import check_postgres_schema
from .changes import ChangeReader
from .digest import RowDigest
from .migrations import (
    Migration,
    applied_versions,
    clash_error,
    load_migrations,
    no_schema_error,
    pending,
    schema_columns,
    split_sql_script,
)
from .postgres_binary import copy_encoder
from .postgres_changes import PostgresChangeReader
from .postgres_driver import (
    CLASH_ERRORS,
    DRIVER_ERRORS,
    init_connection,
    rowcount,
    rows_of,
    translate_error,
)
from .postgres_group import PostgresGroupCommit
from .postgres_savepoint import in_savepoint

T = TypeVar("T")

# Any constant works; it only has to be the same in every process that migrates this database.
MIGRATION_LOCK_KEY = 0x6F7263_6462  # "orc" "db"

MIGRATIONS_TABLE_SQL = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL
)"""
# The columns of the tables named in $1 that search_path finds (none: no such table).
_COLUMNS_SQL = (
    "SELECT c.relname AS table_name, a.attname AS column_name "
    "FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid "
    "WHERE a.attrelid = ANY(ARRAY(SELECT to_regclass(t)::oid FROM unnest($1::text[]) AS t)) "
    "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum"
)


async def _table_columns(conn: asyncpg.Connection, tables: Sequence[str]
                         ) -> dict[str, list[str]]:
    """Return the columns of those of ``tables`` that exist, in order."""
    columns: dict[str, list[str]] = {}
    for row in await conn.fetch(_COLUMNS_SQL, list(tables)):
        columns.setdefault(row[0], []).append(row[1])
    return columns


@dataclass(frozen=True, slots=True)
class _CopyData:
    """Rows already in binary COPY format (``encode_many``)."""

    data: bytes


def _translated(end: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    """A transaction's commit, its driver errors turned into ours."""
    async def run() -> None:
        try:
            await end()
        except DRIVER_ERRORS as exc:
            raise translate_error(exc) from exc
    return run


def _settled(rollback: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    """A transaction's rollback that cannot replace the error that ended the block.

    A rollback fails when the connection is gone (the server ended the transaction with it):
    the block's own error, already one of ours, is the one to raise, not the driver's "the
    underlying connection is closed".
    """
    async def run() -> None:
        with suppress(*DRIVER_ERRORS):
            await rollback()
    return run


class PostgresStore(Store):
    """A pool of connections to one PostgreSQL database."""

    dialect = Dialect.POSTGRES
    bulk_slice_rows = 2048  # the server writes one slice while the next is validated

    def __init__(self, target: Target, *, min_size: int = 1, max_size: int = 10,
                 server_settings: dict[str, str] | None = None) -> None:
        super().__init__(target)
        self.min_size = min_size
        self.max_size = max_size
        self.server_settings = server_settings or {}
        self._pool: asyncpg.Pool | None = None
        # Group commit: awaited writes issued in the same event-loop turn share one transaction.
        # False runs each write as its own transaction (the benchmark compares the two).
        self.group_commit = True
        self._groups = PostgresGroupCommit(self._pool_or_raise, connections=min(2, max_size))

    @classmethod
    def from_options(cls, target: Target, *, busy_timeout_ms: int, pool_min_size: int,
                     pool_max_size: int, schema_file: Path | None) -> PostgresStore:
        return cls(target, min_size=pool_min_size, max_size=pool_max_size)

    @property
    def write_commits(self) -> int:
        """How many transactions the write path committed (a group or a lone write counts one)."""
        return self._groups.commits

    # parameters ------------------------------------------------------------------------------
    @staticmethod
    def ts(value: datetime | None) -> Any:
        return value

    # lifecycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        migrations = load_migrations(self.dialect)
        try:
            settings = dict(self.server_settings)
            if self.read_only:  # the server refuses every write of these connections
                settings["default_transaction_read_only"] = "on"
            # libpq's connect_timeout is asyncpg's timeout= (it would send it as a setting).
            url, timeout = postgres_connect_options(self.target.url)
            self._pool = await asyncpg.create_pool(
                url, min_size=self.min_size, max_size=self.max_size, timeout=timeout,
                init=init_connection, server_settings=settings or None,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reason = str(exc)
            if not reason and isinstance(exc, TimeoutError):  # asyncpg's timeout says nothing
                reason = (f"no connection within {timeout} s (connect_timeout=SECONDS in the "
                          "URL sets how long to wait)")
            raise OrchestratorDBError(
                f"cannot connect to PostgreSQL at {self.target.display()}: {reason}"
            ) from exc
        try:
            if self.read_only:
                await self._check_current(migrations)
            else:
                await self._migrate(migrations)
        except BaseException:
            await self._pool.close()
            self._pool = None
            raise

    async def _check_current(self, migrations: list[Any]) -> None:
        """Read-only: the schema must be there and the newest; nothing is applied."""
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            applied = await self._recorded(conn)
            if applied is None:
                raise no_schema_error(self.target.display(), "--url ...")
            self.found_version = max(applied, default=0)
            await check_postgres_schema(conn, applied, self.target.display())
        if pending(migrations, applied):
            raise SchemaError(
                f"{self.target.display()} is at schema version {max(applied, default=0)}; this "
                f"orchestrator-db reads version {migrations[-1].version} and opens it read-only, "
                f"so it is not migrated: run `orchestrator-db upgrade --url ...` first",
                found_version=self.found_version, newest_version=migrations[-1].version)

    async def _recorded(self, conn: asyncpg.Connection) -> set[int] | None:
        """Return the versions in ``schema_migrations`` (None: there is no such table).

        SchemaError when the table is another program's (``migrations.applied_versions``).
        """
        columns = (await _table_columns(conn, ["schema_migrations"])).get("schema_migrations")
        if not columns:
            return None
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        return applied_versions(self.target.display(), columns, versions)

    async def _migrate(self, migrations: list[Any]) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            migration: Migration | None = None
            try:
                async with conn.transaction():
                    # Serialise concurrent first connections: the second waits, then finds
                    # everything applied.
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                    recorded = await self._recorded(conn)
                    if recorded is None and self.must_exist:
                        raise no_schema_error(self.target.display(), "--url ...")
                    await conn.execute(MIGRATIONS_TABLE_SQL)
                    applied = recorded or set()
                    self.found_version = max(applied, default=0)
                    await check_postgres_schema(conn, applied, self.target.display())
                    todo = pending(migrations, applied)
                    for migration in todo:
                        for statement in split_sql_script(migration.sql):
                            await conn.execute(statement)
                        if migration.version not in applied:
                            await conn.execute(
                                "INSERT INTO schema_migrations (version, name, applied_at) "
                                "VALUES ($1, $2, now())",
                                migration.version, migration.name,
                            )
                    self.migrated = [m.version for m in todo if m.version not in applied]
                    if not self.accept_interrupted_load and await postgres_bulk.interrupted(conn):
                        raise SchemaError(
                            f"{self.target.display()} is the destination of a `copy` that has "
                            "not ended (still running, or killed): its indexes, keys and "
                            "change-feed triggers are off until it ends. Wait for it; if it "
                            "was stopped, run the same `orchestrator-db copy` again to finish "
                            "it, or `orchestrator-db upgrade --url ...` to restore them and "
                            "keep what was copied")
            except asyncpg.PostgresError as exc:
                if migration is not None and isinstance(exc, CLASH_ERRORS):
                    # Another program's tables (read after the rollback: the ones it had).
                    existing = await _table_columns(conn, sorted(schema_columns()))
                    raise clash_error(self.target.display(), migration, existing,
                                      str(exc)) from exc
                raise translate_error(exc) from exc

    async def close(self) -> None:
        # Writes already awaited by callers are committed (or failed) before the pool goes away.
        await self._groups.drain()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _pool_or_raise(self) -> asyncpg.Pool:
        if self._pool is None:
            raise NotConnectedError(
                "the database is not connected; call `await db.connect()` or use `async with`"
            )
        return self._pool

    # statements ------------------------------------------------------------------------------
    async def _run(self, op: Callable[[asyncpg.Connection], Awaitable[T]], *, atomic: bool,
                   write: bool = True, savepoint: bool = True) -> T:
        """Run ``op`` in the caller's transaction, or on a pool connection of its own.

        On a pool connection, ``atomic`` wraps it in a transaction (a single statement is one).
        A ``write`` never joins a read snapshot (``hold_tx``); in the caller's transaction it
        runs in a savepoint of its own (``postgres_savepoint``) unless ``savepoint`` is False.
        """
        try:
            tx = await hold_tx(self, write=write)
            if tx is not None:
                try:
                    if not (write and savepoint):
                        return await op(tx.conn)
                    return await in_savepoint(tx, op)
                finally:
                    tx.lock.release()
            async with self._pool_or_raise().acquire() as conn:
                if not atomic:
                    return await op(conn)
                async with conn.transaction():
                    return await op(conn)
        except DRIVER_ERRORS as exc:
            raise translate_error(exc) from exc

    async def fetch(self, sql: str, params: Sequence[Any] = (), *, heavy: bool = False
                    ) -> list[dict[str, Any]]:
        return rows_of(await self._run(lambda c: c.fetch(sql, *params), atomic=False,
                                       write=False))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        tx = await hold_tx(self, write=True)
        if tx is None:
            if self.group_commit:
                return await self._groups.execute(sql, params)
            return await self._groups.execute_alone(sql, params)
        try:
            return rowcount(await in_savepoint(tx, lambda c: c.execute(sql, *params)))
        except DRIVER_ERRORS as exc:
            raise translate_error(exc) from exc
        finally:
            tx.lock.release()

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._run(lambda c: c.executemany(sql, rows), atomic=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        outer = await hold_tx(self, write=True)
        if outer is not None:  # a savepoint, holding the enclosing level for its whole block
            try:
                try:
                    savepoint = outer.conn.transaction()  # nested: asyncpg makes a savepoint
                    await savepoint.start()
                except DRIVER_ERRORS as exc:
                    raise translate_error(exc) from exc
                level = TxState.opened(self, outer.conn, depth=outer.depth + 1)
                async with tx_level(level, commit=_translated(savepoint.commit),
                                    rollback=_settled(savepoint.rollback)):
                    yield
            finally:
                outer.lock.release()
            return
        async with self._pool_or_raise().acquire() as conn:
            transaction = conn.transaction()
            try:
                await transaction.start()
            except DRIVER_ERRORS as exc:
                raise translate_error(exc) from exc

            async with tx_level(TxState.opened(self, conn), commit=_translated(transaction.commit),
                                rollback=_settled(transaction.rollback)):
                yield

    @asynccontextmanager
    async def read_snapshot(self) -> AsyncIterator[None]:
        async with self._pool_or_raise().acquire() as conn:
            # REPEATABLE READ: every statement of the block sees the snapshot of its first one.
            transaction = conn.transaction(isolation="repeatable_read", readonly=True)
            try:
                await transaction.start()
            except DRIVER_ERRORS as exc:
                raise translate_error(exc) from exc
            async with tx_level(TxState.opened(self, conn, read_only=True),
                                commit=_translated(transaction.commit),
                                rollback=_settled(transaction.rollback)):
                yield

    # bulk ------------------------------------------------------------------------------------
    async def insert_many(self, table: str, columns: Sequence[str],
                          rows: Sequence[Sequence[Any]], *, skip_existing: bool = False) -> None:
        if not rows:
            return
        if skip_existing:  # COPY has no ON CONFLICT
            await self.executemany(self.insert_sql(table, columns, skip_existing=True), rows)
        elif len(rows) == 1:
            await self.execute(self.insert_sql(table, columns), rows[0])
        else:
            await self.copy_records(table, columns, rows)

    async def copy_records(self, table: str, columns: Sequence[str],
                           rows: Sequence[Sequence[Any]]) -> None:
        """Bulk-insert with COPY, the fastest path PostgreSQL has."""
        await self._run(lambda c: c.copy_records_to_table(table, records=rows,
                                                          columns=list(columns)), atomic=True)

    def encode_many(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> Any:
        encode = copy_encoder(table, columns) if len(rows) > 1 else None
        return rows if encode is None else _CopyData(encode(rows))

    async def insert_encoded(self, table: str, columns: Sequence[str], encoded: Any) -> None:
        if not isinstance(encoded, _CopyData):
            await self.insert_many(table, columns, encoded)
            return

        # A memoryview is sent as it is, at once (bytes would be taken for a file name). No
        # savepoint: the batch's own transaction level rolls back as a whole on a failure, and
        # a COPY in a savepoint took 1.5 times as long (20,000 rows in slices of 2,048).
        await self._run(lambda c: c.copy_to_table(table, source=memoryview(encoded.data),
                                                  columns=list(columns), format="binary"),
                        atomic=True, savepoint=False)

    async def fetch_records(self, sql: str, params: Sequence[Any] = ()) -> list[list[Any]]:
        return [list(row.values()) for row in await self.fetch(sql, params)]

    # bulk load (copy): postgres_bulk.py --------------------------------------------------------
    async def begin_bulk_load(self, tables: Sequence[str]) -> None:
        await self._bulk(postgres_bulk.begin(self._pool_or_raise(), tables))

    async def end_bulk_load(self) -> int:
        return await self._bulk(postgres_bulk.end(self._pool_or_raise()))

    async def load_batches(self, table: str, columns: Sequence[str],
                           batches: AsyncIterator[Sequence[Sequence[Any]]],
                           committed: Callable[[int], None]) -> None:
        await postgres_bulk.load(self._pool_or_raise(), table, columns, batches, committed)

    async def table_digests(self, tables: Mapping[str, Sequence[str]]) -> dict[str, RowDigest]:
        return await self._bulk(postgres_bulk.digests(self._pool_or_raise(), tables))

    async def continue_change_log(self, head: dict[str, Any]) -> None:
        await self._bulk(postgres_bulk.continue_changes(self._pool_or_raise(), head))

    @staticmethod
    async def _bulk(job: Awaitable[T]) -> T:
        try:
            return await job
        except DRIVER_ERRORS as exc:
            raise translate_error(exc) from exc

    # SQL that differs by engine --------------------------------------------------------------
    def day_expr(self, column: str) -> str:
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def rollup_day_expr(self, column: str) -> str:
        return f"to_char({column}, 'YYYY-MM-DD')"

    def day_param(self, day: date) -> Any:
        return day

    def text_order(self, expr: str) -> str:
        return f'{expr} COLLATE "C"'

    def null_safe_equals(self) -> str:
        return "IS NOT DISTINCT FROM"

    def lock_rows_clause(self, alias: str) -> str:
        return f" FOR UPDATE OF {alias}"

    def ids_condition(self, q: Query, ids: Sequence[str], column: str = "id") -> str:
        return f"{column} = ANY({q.p(list(ids))}::uuid[])"

    # the change log --------------------------------------------------------------------------
    def change_reader(self, *, poll_interval: float) -> ChangeReader:
        return PostgresChangeReader(self, poll_interval=poll_interval)

    # schema ----------------------------------------------------------------------------------
    @classmethod
    def render_schema(cls) -> str:
        migrations = load_migrations(Dialect.POSTGRES)
        parts = [f"-- orchestrator-db schema for PostgreSQL (version {migrations[-1].version}), "
                 "generated from the package's migrations; `orchestrator-db upgrade` applies "
                 "them and records each one."]
        for migration in migrations:
            parts += [f"-- migration {migration.version:04d}_{migration.name}",
                      migration.sql.strip(), ""]
        return "\n".join(parts)

    async def backup(self, dest: Path) -> None:
        raise OrchestratorDBError(
            "backup writes SQLite snapshots; for PostgreSQL use `pg_dump`, or copy the database "
            f"into a SQLite file: orchestrator-db copy {self.target.display()} sqlite:///{dest}")

    async def restore(self, src: Path) -> None:
        raise OrchestratorDBError(
            "restore reads SQLite snapshots; for PostgreSQL use `pg_restore`, or copy a SQLite "
            f"file in: orchestrator-db copy sqlite:///{src} {self.target.display()}")

    async def storage_bytes(self) -> int:
        # The tables (with their indexes and TOAST) of the schema this store uses, not the
        # whole database: one database often holds several applications' schemas.
        rows = await self.fetch(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) AS n FROM pg_class AS c "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')")
        return int(rows[0]["n"])


__all__ = ["PostgresStore"]
