"""PostgreSQL engine: an asyncpg pool, native uuid/timestamptz/jsonb types."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
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
from ..models import format_ts
from .base import Store, TxState, current_tx, load_migrations, split_sql_script

# Any constant works; it only has to be the same in every process that migrates this database.
MIGRATION_LOCK_KEY = 0x6F7263_6462  # "orc" "db"

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


class _JsonbFloatEncoder(json.JSONEncoder):
    """Writes large floats without an exponent and with a fraction (1e16 → 10000000000000000.0).

    jsonb keeps numbers as ``numeric`` and prints 1e+16 back as 10000000000000000, which would
    decode as an int; with the fraction it decodes as the same float SQLite returns.
    """

    def iterencode(self, o: Any, _one_shot: bool = False) -> Any:
        def floatstr(value: float) -> str:
            text = float.__repr__(value)
            return format(value, ".1f") if "e+" in text else text

        return json.encoder._make_iterencode(  # type: ignore[attr-defined]
            {} if self.check_circular else None, self.default, json.encoder.py_encode_basestring,
            self.indent, floatstr, self.key_separator, self.item_separator, self.sort_keys,
            self.skipkeys, _one_shot,
        )(o, 0)


_float_safe = _JsonbFloatEncoder(ensure_ascii=False, allow_nan=False)


def _jsonb_encode(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False)
    if "e+" in text:  # rare: only then take the slower pure-Python encoder
        text = _float_safe.encode(value)
    return b"\x01" + text.encode()


def _jsonb_decode(data: bytes) -> Any:
    return json.loads(data[1:])


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

    # parameters ------------------------------------------------------------------------------
    @staticmethod
    def ts(value: datetime | None) -> Any:
        return value

    @staticmethod
    def json(value: Any) -> Any:
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
                status = await tx.conn.execute(sql, *params)
            else:
                async with self._pool_or_raise().acquire() as conn:
                    status = await conn.execute(sql, *params)
        except DRIVER_ERRORS as exc:
            raise translate_error(exc) from exc
        # "INSERT 0 1", "UPDATE 3", "DELETE 0"
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

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

    # schema ----------------------------------------------------------------------------------
    async def schema_version(self) -> int:
        rows = await self.fetch("SELECT coalesce(max(version), 0) AS v FROM schema_migrations")
        return int(rows[0]["v"])

    async def storage_bytes(self) -> int:
        rows = await self.fetch("SELECT pg_database_size(current_database()) AS n")
        return int(rows[0]["n"])
