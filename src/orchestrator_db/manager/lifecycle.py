"""The manager's connection lifecycle and the row primitives every record operation shares."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Self

from ..config import Target, resolve_target
from ..errors import NotConnectedError, ValidationError
from ..models import utc_now
from ..store import Store, new_store
from ..tables import COLUMNS, JSON_FIELDS, NOT_NULL, TIME_FIELDS
from ..validation import M, check_uuid, validate

# Per table, where its write parameters hold JSON and times (converted for the store).
_JSON_AT = {t: tuple(i for i, c in enumerate(cs) if c in JSON_FIELDS) for t, cs in COLUMNS.items()}
_TIME_AT = {t: tuple(i for i, c in enumerate(cs) if c in TIME_FIELDS) for t, cs in COLUMNS.items()}


class ManagerBase:
    """Opening and closing the database, transactions, and the row primitives.

    Args:
        db_path: SQLite file (or a URL). Overridden by ``url``.
        url: ``sqlite:///path`` or ``postgresql://user@host/db``.
        schema_path: create an empty database from this SQL file (as the seed project's
            ``adws/schema/schema_orchestrator.sqlite``); a missing file raises
            ``SchemaNotFoundError``.
        busy_timeout_ms: how long a SQLite writer waits for another process's lock.
        pool_min_size, pool_max_size: the PostgreSQL pool.
        must_exist: raise NotFoundError instead of creating a database (or, on PostgreSQL, the
            schema) that is not there yet.
        read_only: open without writing anything, migrations included; a schema that is not
            the newest is a SchemaError saying what to run (``copy`` reads its source so).
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        schema_path: str | os.PathLike[str] | None = None,
        busy_timeout_ms: int = 30_000,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        must_exist: bool = False,
        read_only: bool = False,
    ) -> None:
        self.target: Target = resolve_target(db_path, url=url)
        #: The engine this manager talks to (reported; only store/ branches on it).
        self.dialect = self.target.dialect
        self.schema_path = Path(schema_path) if schema_path is not None else None
        self.must_exist = must_exist
        self.read_only = read_only
        self._options = {"busy_timeout_ms": busy_timeout_ms, "pool_min_size": pool_min_size,
                         "pool_max_size": pool_max_size}
        self._store: Store | None = None
        #: The schema version ``connect()`` found, before migrating: 0 for a database it
        #: created, None before the first ``connect()``.
        self.found_schema_version: int | None = None
        #: The versions of the migrations ``connect()`` applied (none: it was up to date).
        self.applied_migrations: list[int] = []
        #: Set before ``connect()`` to open for writing a database left by a ``copy`` that has
        #: not ended (see ``Store.accept_interrupted_load``): ``copy`` and ``upgrade`` do.
        self.accept_interrupted_load = False

    # lifecycle -------------------------------------------------------------------------------
    @property
    def db_path(self) -> str | None:
        """The SQLite file path (None on PostgreSQL)."""
        return str(self.target.path) if self.target.path is not None else None

    @property
    def is_connected(self) -> bool:
        """Whether ``connect()`` has been called and ``close()`` has not."""
        return self._store is not None

    async def connect(self) -> Self:
        """Open the database, creating it and applying pending migrations if needed."""
        if self._store is None:
            store = new_store(self.target, busy_timeout_ms=self._options["busy_timeout_ms"],
                              pool_min_size=self._options["pool_min_size"],
                              pool_max_size=self._options["pool_max_size"],
                              schema_file=self.schema_path)
            store.must_exist = self.must_exist
            store.read_only = self.read_only
            store.accept_interrupted_load = self.accept_interrupted_load
            await store.open()
            self.found_schema_version = store.found_version
            self.applied_migrations = list(store.migrated)
            self._store = store
        return self

    async def restore_after_interrupted_copy(self) -> int:
        """Restore the indexes, keys and change-feed triggers that a ``copy`` into this
        database took away and did not give back (killed); return how many. Connect with
        ``accept_interrupted_load`` set to reach such a database."""
        return await self.store.end_bulk_load()

    async def close(self) -> None:
        """Close every connection; the manager can be connected again later."""
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def store(self) -> Store:
        """The engine store (raises NotConnectedError when not connected)."""
        if self._store is None:
            raise NotConnectedError(
                "the DatabaseManager is not connected; call `await db.connect()` first or use "
                "`async with DatabaseManager() as db:`"
            )
        return self._store

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """Group calls atomically: committed on success, rolled back on exception.

        Nested use creates a savepoint. Calls made inside the block join it, also from tasks
        started there (``asyncio.gather`` of writes: they run one after another on the
        transaction's connection); once the block has ended, such tasks write on their own.
        """
        return self.store.transaction()

    # shared helpers --------------------------------------------------------------------------
    def _params(self, table: str, values: Mapping[str, Any]) -> list[Any]:
        """A row's write parameters, in ``COLUMNS[table]`` order (a missing column is None)."""
        return self._to_store(table, [values.get(column) for column in COLUMNS[table]])

    def _to_store(self, table: str, params: list[Any]) -> list[Any]:
        """Convert a row's values, in column order, to this store's parameters (in place)."""
        store = self.store
        for i in _JSON_AT[table]:
            params[i] = store.json(params[i])
        for i in _TIME_AT[table]:
            params[i] = store.ts(params[i])
        return params

    async def _insert(self, table: str, values: Mapping[str, Any]) -> None:
        store = self.store
        await store.execute(store.insert_sql(table, COLUMNS[table]), self._params(table, values))

    async def _get(self, table: str, row_id: Any, field: str = "id") -> dict[str, Any] | None:
        row_id = check_uuid(row_id, field)
        q = self.store.query()
        sql = f"SELECT {', '.join(COLUMNS[table])} FROM {table} WHERE id = {q.p(row_id)}"
        return await self.store.fetchone(sql, q.params)

    async def _update(self, table: str, row_id: str, model: type[M], fields: Mapping[str, Any],
                      *, touch: bool) -> bool:
        row_id = check_uuid(row_id, "id")
        if not fields:
            raise ValidationError(
                f"no fields to update; allowed fields: {', '.join(sorted(model.model_fields))}"
            )
        data = validate(model, fields)
        store = self.store
        q = store.query()
        sets = []
        for name in fields:
            value = getattr(data, name)
            if value is None and name in NOT_NULL[table]:
                raise ValidationError(f"{name} cannot be set to None", field=name)
            if name in JSON_FIELDS:
                value = store.json(value)
            elif name in TIME_FIELDS:
                value = store.ts(value)
            elif name == "orchestrator_agent_id" and value is not None:
                value = check_uuid(value, name)
            sets.append(f"{name} = {q.p(value)}")
        if touch:
            sets.append(f"updated_at = {q.p(store.ts(utc_now()))}")
        sql = f"UPDATE {table} SET {', '.join(sets)} WHERE id = {q.p(row_id)}"
        return await store.execute(sql, q.params) > 0

    async def _delete(self, table: str, row_id: Any) -> bool:
        row_id = check_uuid(row_id, "id")
        q = self.store.query()
        sql = f"DELETE FROM {table} WHERE id = {q.p(row_id)}"  # table: one of COLUMNS' keys
        return await self.store.execute(sql, q.params) > 0

