"""What every engine must provide, and the pieces they share.

A store executes parameterised SQL and hands back plain dicts whose values are already in the
public shape (UUID strings, fixed-shape UTC timestamp strings, decoded JSON). Query logic lives in
the engine-neutral layers above; every operation that differs by engine is one method of
``Store`` (and of ``ChangeReader``, for the change log), implemented by ``SQLiteStore`` and
``PostgresStore``. Nothing above ``store/`` branches on the engine.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Dialect, Target
from ..ids import uuid7
from ..jsoncodec import JsonText, dumps_json
from ..models import is_canonical_ts, parse_ts
from ..tables import (
    CHANGE_COLUMNS,
    CHANGES_TABLE,
    JSON_FIELDS,
    OTLP_SPAN_KEY,
    OTLP_SPANS_TABLE,
    TIME_FIELDS,
)
from .digest import RowDigest
from .migrations import Migration, load_migrations, split_sql_script

if TYPE_CHECKING:
    from .changes import ChangeReader

JSON_COLUMNS = JSON_FIELDS


@dataclass(eq=False)
class TxState:
    """One level of an open transaction of one store: the block itself, or a savepoint in it.

    A level belongs to the code that opened it (``owner``, the task that entered the block). The
    tasks started inside the block inherit ``current_tx`` and use the level only while it is
    ``active``: once the block ends (commit or rollback), their statements take the normal path
    (a unit of work or group commit of their own), never the ended transaction. A task started
    inside a savepoint that has ended falls back to the enclosing level (``outer``) while that
    one is still active.

    While a level is active, statements from several tasks (``asyncio.gather`` inside the block)
    each hold its ``lock`` for one statement, so they run one after another on its one connection
    and commit or roll back with it. Ending the level takes the lock too: it waits for the
    statement in flight; statements queued behind it then find the level ended.

    A nested ``transaction()``, from the owner or from any task started inside the block, opens a
    savepoint: a new level, holding the enclosing level's ``lock`` for its whole block, so no
    other task's statement lands in a savepoint that may be rolled back. Statements inside it,
    from the task that opened it and the tasks that task starts, use the savepoint's own level
    and lock. So code inside a savepoint must not wait for another task's statement at the
    enclosing level (it would wait forever): wait for such tasks before or after the savepoint.
    """

    store: Store
    conn: Any
    owner: asyncio.Task[Any] | None = None
    active: bool = True
    depth: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    outer: TxState | None = None  # current_tx of the code that opened this level
    read_only: bool = False  # a read snapshot (``Store.snapshot``): writes never join it

    @classmethod
    def opened(cls, store: Store, conn: Any, depth: int = 0, *, read_only: bool = False
               ) -> TxState:
        """Return a new level opened by the current task, inside its current transaction."""
        return cls(store, conn, owner=asyncio.current_task(), depth=depth, outer=current_tx.get(),
                   read_only=read_only)


# The innermost transaction level the current task is in, if any (see TxState for who may use it).
current_tx: contextvars.ContextVar[TxState | None] = contextvars.ContextVar(
    "orchestrator_db_tx", default=None
)


def active_tx(store: Store) -> TxState | None:
    """Return the innermost active level of a ``store`` transaction the current task is in."""
    tx = current_tx.get()
    while tx is not None and not (tx.store is store and tx.active):
        tx = tx.outer
    return tx


async def hold_tx(store: Store, *, write: bool = False) -> TxState | None:
    """Return the level the current task's next statement on ``store`` belongs to, or None.

    A ``write`` (or a transaction opened) inside a read snapshot does not join it: it commits
    on its own, as outside any transaction, on both engines. The level's ``lock`` is held on
    return: release it once the statement has run.
    """
    while (tx := active_tx(store)) is not None:
        if write and tx.read_only:
            return None
        await tx.lock.acquire()
        if tx.active:
            return tx
        tx.lock.release()  # it ended while this task waited: look again
    return None


@asynccontextmanager
async def tx_level(level: TxState, *, commit: Callable[[], Awaitable[object]],
                   rollback: Callable[[], Awaitable[object]]) -> AsyncIterator[None]:
    """Run the block in ``level``; end it with ``commit``, or ``rollback`` on an exception."""
    token = current_tx.set(level)
    try:
        try:
            yield
        except BaseException:
            async with _ending(level):
                await rollback()
            raise
        async with _ending(level) as cancelled:
            await (rollback() if cancelled else commit())
    finally:
        current_tx.reset(token)


@asynccontextmanager
async def _ending(level: TxState) -> AsyncIterator[bool]:
    """Take the level's lock (after the statement in flight), mark it ended, then let it end.

    A cancellation while waiting for the lock is held back until the level has ended (leaving
    earlier would leave the transaction open under a statement that is still running), then
    raised; the block learns of it (True) so that it rolls back what its caller sees fail.
    """
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await level.lock.acquire()
            break
        except asyncio.CancelledError as exc:
            cancelled = exc
    level.active = False
    try:
        yield cancelled is not None
    finally:
        level.lock.release()
    if cancelled is not None:
        raise cancelled


class Query:
    """Collects parameters and hands back the engine's placeholder for each one."""

    __slots__ = ("dialect", "params")

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.params: list[Any] = []

    def p(self, value: Any) -> str:
        """Add ``value`` as a parameter and return its placeholder."""
        self.params.append(value)
        if self.dialect is Dialect.SQLITE:
            return "?"
        return f"${len(self.params)}"


def insert_statement(table: str, columns: Sequence[str], source: str, *,
                     skip_existing: bool = False) -> str:
    """Return ``INSERT INTO table (columns) <source>``, with ``skip_existing`` ignoring rows
    whose key is already there (``id``; for ``otlp_spans``, the only table without one, its
    span and trace ids). ``source`` is ``VALUES (...)`` or a ``SELECT``; a SELECT ends in a
    WHERE clause, which SQLite needs before an ON CONFLICT clause."""
    sql = f"INSERT INTO {table} ({', '.join(columns)}) {source}"
    if skip_existing:
        key_columns = OTLP_SPAN_KEY if table == OTLP_SPANS_TABLE else ("id",)
        sql += f" ON CONFLICT ({', '.join(key_columns)}) DO NOTHING"
    return sql


class Store(abc.ABC):
    """One engine's connection(s) and the primitives the manager builds on."""

    dialect: Dialect
    #: Whether migration 0005's cost_totals (per day, orchestrator agent, model) is kept up to
    #: date: only where writers queue anyway (SQLite); elsewhere read cost_days instead.
    keeps_totals: bool = False
    #: Rows per slice when a big create_*_logs batch is validated while the previous slice is
    #: written (None: validate it all, then write it in one go).
    bulk_slice_rows: int | None = None

    def __init__(self, target: Target) -> None:
        self.target = target
        #: Refuse to create the database (or, on PostgreSQL, its schema) when it is not there:
        #: read-only commands say "no database at ..." instead of making an empty one.
        self.must_exist = False
        #: Open without writing anything, migrations included (``copy`` and ``backup`` read
        #: their source so): a schema that is not the newest is a SchemaError instead.
        self.read_only = False
        #: Open for writing a database that an unfinished ``copy`` left without its indexes,
        #: keys and change-feed triggers (``copy`` itself, which finishes it, and ``upgrade``,
        #: which restores them); otherwise that is a SchemaError, since writes would go in
        #: unchecked and unseen by the change feed.
        self.accept_interrupted_load = False
        #: The schema version ``open()`` found, before migrating (0: a new, empty database).
        self.found_version: int | None = None
        #: The versions of the migrations ``open()`` applied.
        self.migrated: list[int] = []
        self._insert_sql: dict[tuple[str, tuple[str, ...], bool], str] = {}

    @classmethod
    @abc.abstractmethod
    def from_options(cls, target: Target, *, busy_timeout_ms: int, pool_min_size: int,
                     pool_max_size: int, schema_file: Path | None) -> Store:
        """Return a store for ``target``, taking the manager's options that apply to it."""

    def query(self) -> Query:
        """Return a new parameter collector for this engine."""
        return Query(self.dialect)

    # parameters ------------------------------------------------------------------------------
    @abc.abstractmethod
    def ts(self, value: datetime | None) -> Any:
        """Return a timestamp parameter in the form the driver stores."""

    @staticmethod
    def json(value: Any) -> Any:
        """Return a JSON parameter: the text a payload model encoded, or the value encoded now."""
        if value is None:
            return None
        return str.__str__(value) if isinstance(value, JsonText) else dumps_json(value)

    # lifecycle -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, apply the connection settings and the pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection."""

    # statements ------------------------------------------------------------------------------
    @abc.abstractmethod
    async def fetch(self, sql: str, params: Sequence[Any] = (), *, heavy: bool = False
                    ) -> list[dict[str, Any]]:
        """Run a query and return its rows as public-shape dicts."""

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """Run a query and return its first row, or None."""
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement atomically and return the number of rows it touched."""

    @abc.abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one write statement for many parameter rows, atomically."""

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[None]:
        """Group statements atomically; nested use makes a savepoint."""

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """Read in one consistent snapshot: every read in the block sees the same commits.

        For aggregates over several tables (a prune committing between two of their reads
        would count the same cost twice). Inside a transaction, the transaction's own view. A
        write (or a transaction) inside the block does not join it: it commits on its own.
        """
        if active_tx(self) is not None:
            yield
            return
        async with self.read_snapshot():
            yield

    @abc.abstractmethod
    def read_snapshot(self) -> AbstractAsyncContextManager[None]:
        """Open a read-only transaction whose reads all see one snapshot (see ``snapshot``)."""

    # schema ----------------------------------------------------------------------------------
    async def schema_version(self) -> int:
        """Return the newest applied migration, or 0 for an empty database."""
        rows = await self.fetch("SELECT coalesce(max(version), 0) AS v FROM schema_migrations")
        return int(rows[0]["v"])

    @abc.abstractmethod
    async def backup(self, dest: Path) -> None:
        """Write a consistent snapshot of the database to a new SQLite file ``dest``.

        Writers keep going meanwhile; the snapshot holds every commit made before it started.
        """

    @abc.abstractmethod
    async def restore(self, src: Path) -> None:
        """Replace the database's contents with a snapshot ``backup`` wrote."""

    @abc.abstractmethod
    async def storage_bytes(self) -> int:
        """Return how many bytes the database occupies on disk."""

    # bulk ------------------------------------------------------------------------------------
    def insert_sql(self, table: str, columns: Sequence[str], *, skip_existing: bool = False
                   ) -> str:
        """Return the INSERT statement for one row of ``columns`` (our own table metadata)."""
        key = (table, tuple(columns), skip_existing)
        sql = self._insert_sql.get(key)
        if sql is None:  # made once per statement: every awaited write asks for one
            q = self.query()
            sql = insert_statement(table, columns,
                                   f"VALUES ({', '.join(q.p(None) for _ in columns)})",
                                   skip_existing=skip_existing)
            self._insert_sql[key] = sql
        return sql

    def record_params(self, columns: Sequence[str]) -> Callable[[Sequence[Any]], list[Any]]:
        """Return a function turning a record into this store's write parameters.

        A record is a row in ``columns`` order in the public shape (ids and times as text, JSON
        decoded or still as ``JsonText``), as ``fetch_records`` returns them; JSON text is kept
        as it is by ``json``.
        """
        to_json, to_ts = self.json, self.ts
        times = [i for i, c in enumerate(columns) if c in TIME_FIELDS]
        jsons = [i for i, c in enumerate(columns) if c in JSON_FIELDS]

        def params(record: Sequence[Any]) -> list[Any]:
            values = list(record)
            for i in jsons:
                if values[i] is not None:
                    values[i] = to_json(values[i])
            for i in times:
                value = values[i]
                if value is not None:
                    # The fixed shape every stored time has: no need for parse_ts's general path.
                    values[i] = to_ts(datetime.fromisoformat(value) if is_canonical_ts(value)
                                      else parse_ts(value))
            return values
        return params

    @abc.abstractmethod
    async def insert_many(self, table: str, columns: Sequence[str],
                          rows: Sequence[Sequence[Any]], *, skip_existing: bool = False) -> None:
        """Insert parameter rows atomically, with the engine's fastest path.

        COPY on PostgreSQL, ``executemany`` on SQLite; one transaction, or the caller's.
        ``skip_existing`` skips rows whose id (for ``otlp_spans``, whose key) is already there
        (``ON CONFLICT (id) DO NOTHING``).
        """

    def encode_many(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> Any:
        """Prepare parameter rows for ``insert_encoded``, before the write is started.

        A caller that validates the next slice of a batch while the previous one is written
        encodes it here too, so that work overlaps the write as well (PostgreSQL: the binary
        COPY data of log rows). By default, the rows as they are.
        """
        return rows

    async def insert_encoded(self, table: str, columns: Sequence[str], encoded: Any) -> None:
        """``insert_many`` of what ``encode_many`` returned, inside the batch's own level."""
        await self.insert_many(table, columns, encoded)

    @abc.abstractmethod
    async def fetch_records(self, sql: str, params: Sequence[Any] = ()) -> list[list[Any]]:
        """Run a large query off the event loop; return rows as lists in column order.

        Timestamps and ids are in the public shape. JSON columns the engine stores as text come
        back as ``JsonText`` (so they can be written elsewhere without decoding and encoding
        them again), others decoded.
        """

    # bulk load (copy) ------------------------------------------------------------------------
    @abc.abstractmethod
    async def begin_bulk_load(self, tables: Sequence[str]) -> None:
        """Make ``tables`` quick to fill: what each row would otherwise update waits till later.

        On PostgreSQL: their secondary indexes and foreign keys are dropped and their change-feed
        triggers disabled; the statements that restore them are recorded in the database, in the
        same transaction, so ``end_bulk_load`` restores them even after the loading process was
        killed. SQLite changes nothing here (its triggers must stay for ``connect`` to accept
        the database; ``load_batches`` removes their change rows instead).
        """

    @abc.abstractmethod
    async def end_bulk_load(self) -> int:
        """Restore what ``begin_bulk_load`` took away, if anything (indexes built concurrently);
        return how many things (indexes, keys, triggers) were restored."""

    @abc.abstractmethod
    async def load_batches(self, table: str, columns: Sequence[str],
                           batches: AsyncIterator[Sequence[Sequence[Any]]],
                           committed: Callable[[int], None]) -> None:
        """Insert each batch of records in a transaction of its own, in order, no change rows.

        Records are in the public shape (see ``record_params``). ``committed(n)`` is called
        after each commit; an exception it (or ``batches``) raises ends the load, rolling back
        every batch not committed yet, so the table always holds the batches in the order they
        came. PostgreSQL COPYs on two connections, the next batch while the previous commits.
        """

    @abc.abstractmethod
    async def table_digests(self, tables: Mapping[str, Sequence[str]]) -> dict[str, RowDigest]:
        """Return the digest (``digest.py``) of every row of each table, of these columns.

        Computed beside the caller's work: by the server on PostgreSQL (a parallel scan), in a
        process of its own on SQLite (one read transaction for all the tables).
        """

    async def change_log_head(self) -> dict[str, Any] | None:
        """Return the newest row of the change log, or None when it is empty."""
        return await self.fetchone(
            f"SELECT {', '.join(CHANGE_COLUMNS)}, created_at FROM {CHANGES_TABLE} "
            "ORDER BY position DESC LIMIT 1")

    @abc.abstractmethod
    async def continue_change_log(self, head: dict[str, Any]) -> None:
        """Make the change log go on after another database's newest change row ``head``.

        Unless this log already reaches that position, ``head`` is written as its newest row
        (and, on PostgreSQL, the position sequence moved past it): new changes get positions
        after it, so a follower's position from the other database stays meaningful here.
        """

    # SQL that differs by engine --------------------------------------------------------------
    @abc.abstractmethod
    def day_expr(self, column: str) -> str:
        """SQL for the UTC calendar day (YYYY-MM-DD text) of a timestamp column."""

    @abc.abstractmethod
    def rollup_day_expr(self, column: str) -> str:
        """SQL for a rollup's ``day`` column as YYYY-MM-DD text."""

    @abc.abstractmethod
    def day_param(self, day: date) -> Any:
        """Return a parameter for a rollup's ``day`` column."""

    @abc.abstractmethod
    def text_order(self, expr: str) -> str:
        """SQL ordering a text expression by code point (the one order SQLite has)."""

    @abc.abstractmethod
    def null_safe_equals(self) -> str:
        """The equality operator for which NULL equals NULL."""

    @abc.abstractmethod
    def lock_rows_clause(self, alias: str) -> str:
        """A suffix for a SELECT that locks the rows of ``alias`` until the transaction ends."""

    @abc.abstractmethod
    def ids_condition(self, q: Query, ids: Sequence[str], column: str = "id") -> str:
        """SQL matching rows whose ``column`` is one of ``ids`` (any number of them)."""

    async def delete_ids(self, table: str, ids: Sequence[str]) -> int:
        """Delete rows by id (in the caller's transaction, if any); return how many went."""
        if not ids:
            return 0
        q = self.query()
        condition = self.ids_condition(q, ids)
        # table: one of tables.py; condition: ids_condition placeholders (values as parameters)
        return await self.execute(f"DELETE FROM {table} WHERE {condition}", q.params)  # sql-ok

    # the change log --------------------------------------------------------------------------
    @abc.abstractmethod
    def change_reader(self, *, poll_interval: float) -> ChangeReader:
        """Return a reader of this database's change log, for one change feed."""

    # schema rendering ------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def render_schema(cls) -> str:
        """Return the complete schema as one SQL script, generated from the migrations."""


__all__ = [
    "JSON_COLUMNS",
    "Migration",
    "Query",
    "Store",
    "TxState",
    "active_tx",
    "current_tx",
    "hold_tx",
    "insert_statement",
    "load_migrations",
    "split_sql_script",
    "tx_level",
    "uuid7",
]
