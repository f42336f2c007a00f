"""Log records and bulk ingest: many rows validated and written in one transaction."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Unpack

import pydantic

from ..errors import ForeignKeyError, ValidationError
from ..ids import uuid7_many
from ..models import AgentLogCreate, AgentLogUpdate, SystemLogCreate, SystemLogUpdate, utc_now
from ..pagination import Page, Paging
from ..tables import COLUMNS
from ..validation import check_choice, check_uuid, validation_error
from .queries import QueryBuilder, lister, streamer

# Where the log tables' write parameters hold the new row's id and its agent's.
ID = COLUMNS["agent_logs"].index("id")
assert COLUMNS["system_logs"].index("id") == ID
AGENT_ID = COLUMNS["agent_logs"].index("agent_id")


def _one_log(table: str, update_model: type[pydantic.BaseModel], what: str) -> tuple[
        Callable[..., Awaitable[dict[str, Any] | None]], Callable[..., Awaitable[bool]],
        Callable[..., Awaitable[bool]]]:
    """The ``get_*``, ``update_*`` and ``delete_*`` methods of one log table, by ``log_id``."""

    async def get(self: QueryBuilder, log_id: str) -> dict[str, Any] | None:
        return await self._get(table, log_id, "log_id")

    async def update(self: QueryBuilder, log_id: str, **fields: Any) -> bool:
        return await self._update(table, log_id, update_model, fields, touch=False)

    async def delete(self: QueryBuilder, log_id: str) -> bool:
        return await self._delete(table, log_id)

    name = table.removesuffix("s")
    for method, verb in ((get, "get"), (update, "update"), (delete, "delete")):
        method.__name__ = f"{verb}_{name}"
        method.__qualname__ = f"LogOperations.{verb}_{name}"
    get.__doc__ = f"Return the {what}, or None if there is none."
    update.__doc__ = (f"Change fields of one {what} ({', '.join(update_model.model_fields)}), "
                      "e.g. to redact a leaked secret; False if missing.")
    delete.__doc__ = f"Delete one {what} (e.g. one that leaked a secret); False if missing."
    return get, update, delete


def _newest(list_method: str, what: str) -> Callable[..., Awaitable[list[dict[str, Any]]]]:
    """A ``list_recent_*`` method: ``list_method`` newest first, 50 unless told."""

    async def newest(self: QueryBuilder, limit: int = 50, **filters: Any) -> list[dict[str, Any]]:
        return await getattr(self, list_method)(limit=limit, order="desc", **filters)  # type: ignore[no-any-return]

    newest.__doc__ = f"Return the newest {what}, newest first."
    return newest


def _given(**optional: Any) -> dict[str, Any]:
    """The optional fields given a value: one left None is the payload's default (None), so it
    is not validated again, which saves a one-row write the validators' calls."""
    return {name: value for name, value in optional.items() if value is not None}


class LogOperations(QueryBuilder):
    """Agent logs and system logs, one at a time or in bulk, and bulk inserts of whole rows."""

    # agent logs ------------------------------------------------------------------------------
    async def create_agent_log(
        self, agent_id: str, message: str, *, log_level: str = "INFO", log_type: str = "event",
        details: Any = None, created_at: datetime | str | None = None,
        trace_id: str | None = None, span_id: str | None = None,
    ) -> str:
        """Write one agent log line and return its id.

        Raises:
            ForeignKeyError: the agent does not exist.
        """
        return (await self.create_agent_logs([{
            "agent_id": agent_id, "message": message, "log_level": log_level,
            "log_type": log_type, **_given(details=details, created_at=created_at,
                                           trace_id=trace_id, span_id=span_id),
        }]))[0]

    async def create_agent_logs(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Write many agent log lines in one transaction and return their ids, in order.

        Each row is a mapping with the keyword arguments of ``create_agent_log``. Nothing is
        written unless every row is valid and every agent exists.
        """
        written: list[list[Any]] = []
        try:
            await self._write_logs("agent_logs", AgentLogCreate, rows, written, agent_ids=True)
        except ForeignKeyError as exc:
            missing = await self.missing_agents({params[AGENT_ID] for params in written})
            which = ", ".join(missing) if missing else "a referenced agent"
            raise ForeignKeyError(
                f"agent {which} does not exist", field="agent_id", ids=missing
            ) from exc.__cause__
        return [params[ID] for params in written]

    async def _write_logs(self, table: str, model: type[pydantic.BaseModel],
                          rows: Iterable[Mapping[str, Any]], written: list[list[Any]], *,
                          agent_ids: bool) -> None:
        """Validate ``rows`` and insert them atomically, appending each row's parameters (in
        ``COLUMNS[table]`` order, its new id first) to ``written``.

        Where the store says so (``bulk_slice_rows``: PostgreSQL, whose server writes while we
        validate), a big batch is validated and encoded one slice at a time while the slice
        before it is written, so the two overlap and the event loop is free between slices; one
        transaction still holds them all.
        """
        rows = rows if isinstance(rows, list | tuple) else list(rows)
        store, columns = self.store, COLUMNS[table]
        slice_rows = store.bulk_slice_rows
        now = utc_now()  # the time of every row given none, slice after slice
        if slice_rows is None or len(rows) <= slice_rows:
            written += self._log_params(table, model, rows, now, agent_ids=agent_ids)
            await store.insert_many(table, columns, written)
            return
        async with self.transaction():
            writing: asyncio.Future[None] | None = None
            try:
                for first in range(0, len(rows), slice_rows):
                    batch = self._log_params(table, model, rows[first:first + slice_rows],
                                             now, agent_ids=agent_ids, first=first)
                    encoded = store.encode_many(table, columns, batch)
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(store.insert_encoded(table, columns, encoded))
                    written += batch
                    await asyncio.sleep(0)  # let the write start before the next slice
                assert writing is not None
                await writing
            except BaseException:
                if writing is not None:  # never leave a write running past the transaction
                    with contextlib.suppress(Exception):
                        await writing
                raise

    def _log_params(self, table: str, model: type[pydantic.BaseModel],
                    rows: Sequence[Mapping[str, Any]], now: datetime, *, agent_ids: bool,
                    first: int = 0) -> list[list[Any]]:
        """Validate log rows; return each one's write parameters, a new id added, and ``now``
        for a row given no time."""
        columns = COLUMNS[table]
        created_at = columns.index("created_at")
        out: list[list[Any]] = []
        checked: dict[Any, str] = {}  # bulk rows repeat a few agent ids: check each once
        ids = uuid7_many(len(rows))
        for index, row in enumerate(rows, first):
            if type(row) is not dict:
                if not isinstance(row, Mapping):
                    raise ValidationError(
                        f"row {index} must be a mapping, got {type(row).__name__}")
                row = dict(row)
            # The caller's row is validated as it is unless a name or the id must change.
            if "metadata" in row and "details" not in row:  # the seeds' name for details
                row = dict(row)
                row["details"] = row.pop("metadata")
            if "component" in row and "source" not in row and not agent_ids:
                row = dict(row)
                row["source"] = row.pop("component")
            if agent_ids:
                raw_id = row.get("agent_id")
                agent_id = checked.get(raw_id) if isinstance(raw_id, str) else None
                if agent_id is None:
                    agent_id = check_uuid(raw_id, "agent_id")
                    if isinstance(raw_id, str):
                        checked[raw_id] = agent_id
                if agent_id != raw_id:  # made canonical (equal text needs no copy)
                    row = {**row, "agent_id": agent_id}
            try:
                data = model.model_validate(row).__dict__
            except pydantic.ValidationError as exc:
                error = validation_error(exc, model)
                if index:
                    error.message = f"row {index}: {error.message}"
                    error.args = (error.message,)
                raise error from exc
            params = [data.get(column) for column in columns]
            params[ID] = ids[index - first]
            params[created_at] = params[created_at] or now
            out.append(self._to_store(table, params))
        return out

    async def insert_records(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert complete rows (every column: ids and timestamps given) atomically, in bulk.

        COPY on PostgreSQL, ``executemany`` on SQLite. The rows are written as they are: the
        package's own bulk paths validate them first (the logging handler, OpenTelemetry
        ingest, ``import_rows``). Rows from outside go through ``import_rows``, which checks
        every column the same way on both engines; here a bad value reaches the database, whose
        error differs by engine.
        """
        table = check_choice(table, COLUMNS, "table")
        if not rows:
            return
        columns = COLUMNS[table]
        try:
            params = [self._params(table, v) for v in rows]
        except (AttributeError, TypeError, ValueError) as exc:  # a time given as text, say
            raise ValidationError(f"insert_records takes rows as the package's own bulk paths "
                                  f"validate them (datetimes, JSON values): {exc}; import_rows "
                                  "checks and converts rows from outside") from exc
        await self.store.insert_many(table, columns, params)

    async def missing_agents(self, agent_ids: Iterable[str]) -> list[str]:
        """Return the ids among ``agent_ids`` that name no agent, sorted."""
        wanted = sorted({check_uuid(agent_id, "agent_id") for agent_id in agent_ids})
        if not wanted:
            return []
        store = self.store
        q = store.query()
        condition = store.ids_condition(q, wanted)
        rows = await store.fetch(f"SELECT id FROM agents WHERE {condition}", q.params)
        found = {row["id"] for row in rows}
        return [agent_id for agent_id in wanted if agent_id not in found]

    get_agent_log, update_agent_log, delete_agent_log = _one_log("agent_logs", AgentLogUpdate,
                                                                 "agent log line")

    async def page_agent_logs(
        self, agent_id: str | None = None, *, session_id: str | None = None,
        log_level: str | None = None, min_level: str | None = None, log_type: str | None = None,
        since: Any = None, until: Any = None, **paging: Unpack[Paging],
    ) -> Page:
        """Return one page of agent logs, oldest first unless ``order='desc'``."""
        where = (self._where().uuid("agent_id", agent_id).in_session(session_id)
                 .levels(log_level, min_level).text("log_type", log_type).created(since, until))
        return await self._page("agent_logs", where, **paging)

    list_agent_logs = lister("page_agent_logs", "agent logs")
    iter_agent_logs = streamer("page_agent_logs", "agent log")

    list_recent_agent_logs = _newest("list_agent_logs", "agent logs")

    # system logs -----------------------------------------------------------------------------
    async def create_system_log(
        self, message: str, *, log_level: str = "INFO", source: str | None = None,
        details: Any = None, created_at: datetime | str | None = None,
        component: str | None = None,
    ) -> str:
        """Write one system log line and return its id (``component`` is an alias of source)."""
        return (await self.create_system_logs([{
            "message": message, "log_level": log_level,
            **_given(source=source if source is not None else component, details=details,
                     created_at=created_at),
        }]))[0]

    async def create_system_logs(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Write many system log lines in one transaction and return their ids, in order."""
        written: list[list[Any]] = []
        await self._write_logs("system_logs", SystemLogCreate, rows, written, agent_ids=False)
        return [params[ID] for params in written]

    get_system_log, update_system_log, delete_system_log = _one_log("system_logs", SystemLogUpdate,
                                                                    "system log line")

    async def page_system_logs(
        self, *, log_level: str | None = None, min_level: str | None = None,
        source: str | None = None, component: str | None = None, since: Any = None,
        until: Any = None, **paging: Unpack[Paging],
    ) -> Page:
        """Return one page of system logs, oldest first unless ``order='desc'``."""
        if source is None:  # the seed's name for it
            source = component
        where = self._where().levels(log_level, min_level).text("source", source).created(since, until)
        return await self._page("system_logs", where, **paging)

    list_system_logs = lister("page_system_logs", "system logs")
    iter_system_logs = streamer("page_system_logs", "system log")

    list_recent_system_logs = _newest("list_system_logs", "system logs")

