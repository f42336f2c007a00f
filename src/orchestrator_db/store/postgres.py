"""PostgreSQL engine: an asyncpg pool, native uuid/timestamptz/jsonb types.

Awaited single writes outside a transaction are group-committed: the writes issued in one
event-loop turn share one transaction (see ``PostgresStore._group_execute``), so 50 coroutines
each awaiting ``create_agent_log`` pay one COMMIT (one WAL flush) per turn instead of one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from ..config import Dialect, Target
from ..errors import (
    ConstraintError,
    DuplicateError,
    ForeignKeyError,
    NotConnectedError,
    OrchestratorDBError,
    SchemaError,
    ValidationError,
)
from ..jsoncodec import decode_json, dumps_json
from ..models import format_ts
from .base import Query, Store, TxState, current_tx
from .changes import ChangeReader
from .migrations import load_migrations, split_sql_script

# Any constant works; it only has to be the same in every process that migrates this database.
MIGRATION_LOCK_KEY = 0x6F7263_6462  # "orc" "db"

# A group is split over several connections only when each part gets at least this many writes.
GROUP_MIN_WRITES = 8

DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)

MIGRATIONS_TABLE_SQL = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL
)"""


def translate_error(exc: Exception) -> OrchestratorDBError:
    """Turn an asyncpg error into the orchestrator-db error it means."""
    msg = str(exc)
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return ForeignKeyError("a referenced record does not exist")
    if isinstance(exc, asyncpg.UniqueViolationError):
        return DuplicateError(f"duplicate value ({getattr(exc, 'detail', None) or msg})")
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return ConstraintError(f"constraint failed: {msg}")
    if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError):
        return SchemaError(
            f"the database schema is missing or outdated ({msg}); run `orchestrator-db upgrade`"
        )
    if isinstance(exc, asyncpg.DataError):
        return ValidationError(f"invalid value: {msg}")
    if isinstance(exc, asyncpg.InterfaceError) and "closed" in msg:
        return NotConnectedError("the database pool is closed; call connect() first")
    return OrchestratorDBError(f"PostgreSQL error: {msg}")


def _rowcount(status: str) -> int:
    """Return the rows a command status touched: "INSERT 0 1", "UPDATE 3", "DELETE 0"."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _translated(exc: BaseException) -> BaseException:
    """Return the error a group write's caller gets for ``exc``, the driver's error chained."""
    if isinstance(exc, DRIVER_ERRORS):
        translated = translate_error(exc)
        translated.__cause__ = exc
        return translated
    if isinstance(exc, asyncio.CancelledError):
        return OrchestratorDBError("the group commit was cancelled")
    return exc


@dataclass
class _GroupWrite:
    """One awaited write waiting for its group's COMMIT."""

    sql: str
    params: Sequence[Any]
    future: asyncio.Future[int]


def _settle(group: list[_GroupWrite], outcomes: list[tuple[bool, Any]] | None,
            error: BaseException | None = None) -> None:
    """Resume every caller of a group with its own rowcount or error (``error``: all of them)."""
    for index, write in enumerate(group):
        if write.future.done():  # cancelled by its caller, or already settled
            continue
        if outcomes is None:
            assert error is not None
            write.future.set_exception(_translated(error))
            continue
        ok, value = outcomes[index]
        if ok:
            write.future.set_result(value)
        else:
            write.future.set_exception(_translated(value))


async def _run_group(conn: asyncpg.Connection, group: list[_GroupWrite]) -> list[tuple[bool, Any]]:
    """Run writes in one transaction; return (ok, rowcount or driver error) per write.

    The first pass runs the writes back to back, one round trip each. Only when one of them fails
    (the transaction is then aborted) is the group rolled back and run again with a SAVEPOINT
    around each write, so the bad write fails alone and the others still commit: the happy path
    pays no savepoint round trips. Raises when the transaction as a whole fails (BEGIN, COMMIT,
    a broken connection); the caller hands that error to every write of the group.
    """
    try:
        await conn.execute("BEGIN")
        outcomes: list[tuple[bool, Any]] = []
        for write in group:
            try:
                outcomes.append((True, _rowcount(await conn.execute(write.sql, *write.params))))
            except DRIVER_ERRORS:
                break
        else:
            await _commit(conn)
            return outcomes
        await conn.execute("ROLLBACK")
        # Run again: what failed in the first pass may not fail now, and the reverse (other
        # transactions commit in between), so every outcome comes from the pass that commits.
        await conn.execute("BEGIN; SAVEPOINT group_write")
        outcomes = []
        for index, write in enumerate(group):
            try:
                outcomes.append((True, _rowcount(await conn.execute(write.sql, *write.params))))
            except DRIVER_ERRORS as exc:
                outcomes.append((False, exc))
                # The savepoint stays established after ROLLBACK TO: it guards the next write.
                await conn.execute("ROLLBACK TO SAVEPOINT group_write")
                continue
            if index < len(group) - 1:
                await conn.execute("RELEASE SAVEPOINT group_write; SAVEPOINT group_write")
        await _commit(conn)
        return outcomes
    except BaseException:
        if conn.is_in_transaction() and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
        raise


async def _commit(conn: asyncpg.Connection) -> None:
    # COMMIT of an aborted transaction "succeeds" with the status ROLLBACK: never report that as
    # committed (every failing write is rolled back before COMMIT, so this is a safety net).
    status = await conn.execute("COMMIT")
    if status != "COMMIT":
        raise OrchestratorDBError(f"the group transaction was not committed ({status})")


def _value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _rows(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [{k: _value(v) for k, v in record.items()} for record in records]


def _jsonb_encode(value: Any) -> bytes:
    # Strings are JSON text already encoded by the manager (store.json); anything else is a
    # Python value to encode here. jsonb's binary format is a version byte, then the text.
    text = value if isinstance(value, str) else dumps_json(value)
    return b"\x01" + text.encode()


def _jsonb_decode(data: bytes) -> Any:
    return decode_json(data[1:].decode())


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python values, so both engines hand back the same dicts. The binary
    # format (a version byte, then the text) is what COPY ... (FORMAT binary) needs.
    await conn.set_type_codec("jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode,
                              schema="pg_catalog", format="binary")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")


class PostgresStore(Store):
    """A pool of connections to one PostgreSQL database."""

    dialect = Dialect.POSTGRES

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
        # How many transactions the write path committed (a group or a lone write counts one).
        self.write_commits = 0
        # Connections one event-loop turn's group may be split over (see _start_group).
        self.group_connections = min(2, max_size)
        self._group: list[_GroupWrite] = []
        self._group_scheduled = False
        self._group_tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_options(cls, target: Target, *, busy_timeout_ms: int, pool_min_size: int,
                     pool_max_size: int, schema_file: Path | None) -> PostgresStore:
        return cls(target, min_size=pool_min_size, max_size=pool_max_size)

    # parameters ------------------------------------------------------------------------------
    @staticmethod
    def ts(value: datetime | None) -> Any:
        return value

    # lifecycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        migrations = load_migrations(self.dialect)
        try:
            self._pool = await asyncpg.create_pool(
                self.target.url, min_size=self.min_size, max_size=self.max_size,
                init=_init_connection, server_settings=self.server_settings or None,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise OrchestratorDBError(
                f"cannot connect to PostgreSQL at {self.target.display()}: {exc}"
            ) from exc
        try:
            await self._migrate(migrations)
        except BaseException:
            await self._pool.close()
            self._pool = None
            raise

    async def _migrate(self, migrations: list[Any]) -> None:
        newest = migrations[-1].version
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    # Serialise concurrent first connections: the second waits, then finds
                    # everything applied.
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                    await conn.execute(MIGRATIONS_TABLE_SQL)
                    applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                    if applied and max(applied) > newest:
                        raise SchemaError(
                            f"the database schema (version {max(applied)}) is newer than this "
                            f"orchestrator-db (version {newest}); upgrade the package"
                        )
                    for migration in migrations:
                        if migration.version in applied:
                            continue
                        for statement in split_sql_script(migration.sql):
                            await conn.execute(statement)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, applied_at) "
                            "VALUES ($1, $2, now())",
                            migration.version, migration.name,
                        )
            except asyncpg.PostgresError as exc:
                raise translate_error(exc) from exc

    async def close(self) -> None:
        # Writes already awaited by callers are committed (or failed) before the pool goes away.
        while self._group or self._group_tasks:
            if self._group:
                self._start_group()  # may start nothing: every queued caller was cancelled
            if self._group_tasks:
                await asyncio.wait(set(self._group_tasks))
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
    async def fetch(self, sql: str, params: Sequence[Any] = (), *, heavy: bool = False
                    ) -> list[dict[str, Any]]:
        tx = current_tx.get()
        try:
            if tx is not None and tx.store is self:
                return _rows(await tx.conn.fetch(sql, *params))
            async with self._pool_or_raise().acquire() as conn:
                return _rows(await conn.fetch(sql, *params))
        except DRIVER_ERRORS as exc:
            raise translate_error(exc) from exc

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        tx = current_tx.get()
        try:
            if tx is not None and tx.store is self:
                return _rowcount(await tx.conn.execute(sql, *params))
            pool = self._pool_or_raise()
            if self.group_commit:
                return await self._group_execute(sql, params)
            async with pool.acquire() as conn:
                status = await conn.execute(sql, *params)
            self.write_commits += 1
            return _rowcount(status)
        except DRIVER_ERRORS as exc:
            raise translate_error(exc) from exc

    # group commit ----------------------------------------------------------------------------
    # Writes awaited concurrently (50 coroutines each awaiting create_agent_log) are queued for
    # one event-loop turn and committed together: one BEGIN ... COMMIT per group on one pool
    # connection, a bad write failing only its own caller (see _run_group), and every caller
    # resuming only after the COMMIT that contains its write. The first writer of a group
    # schedules the commit one loop turn later, so the writers already scheduled can join; the
    # commit runs as a task of its own, so cancelling any caller - the first one included - never
    # interrupts it: a cancelled caller drops out if its group has not started yet, and otherwise
    # only stops waiting. Writes issued while a group commits form the next group, which may run
    # on another pool connection at the same time: groups never wait for each other, so a write
    # that waits for a row lock holds up its own group only, and the pool bounds how many run.
    # A group holds its row locks until its COMMIT, so two groups (or a group and a transaction)
    # locking the same rows in opposite orders can deadlock; PostgreSQL then fails one statement,
    # which _run_group retries once in its savepoint pass after releasing the group's locks.
    # executemany and copy_records are not grouped: a bulk write already pays one COMMIT for
    # many rows, and in a group a large COPY would hold up the small writes that share it.
    async def _group_execute(self, sql: str, params: Sequence[Any]) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._group.append(_GroupWrite(sql, params, future))
        if not self._group_scheduled:
            self._group_scheduled = True
            loop.call_soon(self._start_group)
        return await future

    def _start_group(self) -> None:
        """Close the queued group and start committing it."""
        self._group_scheduled = False
        group = [w for w in self._group if not w.future.done()]
        self._group = []
        if not group:
            return
        # A large group is split over a few connections: its writes run one round trip after
        # another, so two transactions side by side commit 50 rows 1.5x faster than one
        # (measured, 2 CPUs: ~7,000 vs ~4,600 rows/s); more connections gained nothing.
        parts = max(1, min(self.group_connections, len(group) // GROUP_MIN_WRITES))
        size = -(-len(group) // parts)
        loop = asyncio.get_running_loop()
        for start in range(0, len(group), size):
            task = loop.create_task(self._commit_group(group[start:start + size]))
            self._group_tasks.add(task)
            task.add_done_callback(self._group_tasks.discard)

    async def _commit_group(self, group: list[_GroupWrite]) -> None:
        try:
            async with self._pool_or_raise().acquire() as conn:
                if len(group) == 1:
                    # Alone: the statement is its own transaction, one round trip.
                    write = group[0]
                    try:
                        outcomes = [(True, _rowcount(await conn.execute(write.sql, *write.params)))]
                    except asyncpg.PostgresError as exc:
                        outcomes = [(False, exc)]
                    else:
                        self.write_commits += 1
                else:
                    outcomes = await _run_group(conn, group)
                    self.write_commits += 1
                # Resume the callers now; releasing the connection costs a round trip more.
                _settle(group, outcomes)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller still waiting
            _settle(group, None, exc)
            if not isinstance(exc, Exception):
                raise

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        tx = current_tx.get()
        try:
            if tx is not None and tx.store is self:
                await tx.conn.executemany(sql, rows)
                return
            async with self._pool_or_raise().acquire() as conn, conn.transaction():
                await conn.executemany(sql, rows)
        except DRIVER_ERRORS as exc:
            raise translate_error(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        tx = current_tx.get()
        if tx is not None and tx.store is self:
            tx.depth += 1
            try:
                async with tx.conn.transaction():  # nested: asyncpg makes a savepoint
                    yield
            finally:
                tx.depth -= 1
            return
        async with self._pool_or_raise().acquire() as conn:
            token = current_tx.set(TxState(self, conn))
            try:
                transaction = conn.transaction()
                try:
                    await transaction.start()
                except DRIVER_ERRORS as exc:
                    raise translate_error(exc) from exc
                try:
                    yield
                except BaseException:
                    await transaction.rollback()
                    raise
                try:
                    await transaction.commit()
                except DRIVER_ERRORS as exc:
                    raise translate_error(exc) from exc
            finally:
                current_tx.reset(token)

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
        tx = current_tx.get()
        try:
            if tx is not None and tx.store is self:
                await tx.conn.copy_records_to_table(table, records=rows, columns=list(columns))
                return
            async with self._pool_or_raise().acquire() as conn, conn.transaction():
                await conn.copy_records_to_table(table, records=rows, columns=list(columns))
        except DRIVER_ERRORS as exc:
            raise translate_error(exc) from exc

    async def fetch_records(self, sql: str, params: Sequence[Any] = ()) -> list[list[Any]]:
        return [list(row.values()) for row in await self.fetch(sql, params)]

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
        from .postgres_changes import PostgresChangeReader

        return PostgresChangeReader(self, poll_interval=poll_interval)

    # schema ----------------------------------------------------------------------------------
    async def schema_version(self) -> int:
        rows = await self.fetch("SELECT coalesce(max(version), 0) AS v FROM schema_migrations")
        return int(rows[0]["v"])

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

    async def storage_bytes(self) -> int:
        rows = await self.fetch("SELECT pg_database_size(current_database()) AS n")
        return int(rows[0]["n"])
