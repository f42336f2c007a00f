"""DatabaseManager: the public, engine-neutral API (design §4).

Every method validates its arguments, builds parameterised SQL from fixed column names (values
only ever travel as driver parameters) and returns plain dicts in one shape on both engines.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import pydantic

from ..config import Dialect, Target, resolve_target
from ..errors import (
    DuplicateError,
    ForeignKeyError,
    NotConnectedError,
    ReferencedError,
    ValidationError,
)
from ..ids import uuid7
from ..models import (
    AGENT_STATUSES,
    LOG_LEVEL_NUMBERS,
    LOG_LEVELS,
    ORCHESTRATOR_AGENT_STATUSES,
    PROMPT_STATUSES,
    AgentCreate,
    AgentLogCreate,
    AgentLogUpdate,
    AgentUpdate,
    OrchestratorAgentCreate,
    OrchestratorAgentUpdate,
    PromptCreate,
    PromptUpdate,
    SystemLogCreate,
    SystemLogUpdate,
    utc_now,
)
from ..pagination import (
    DEFAULT_LIMIT,
    Order,
    Page,
    check_limit,
    check_order,
    decode_cursor,
    encode_cursor,
)
from ..store import Query, Store, new_store
from ..tables import COLUMNS, JSON_FIELDS, NOT_NULL, TABLES, TERMINAL_AGENT_STATUSES, TIME_FIELDS
from ..validation import (
    M,
    _validation_error,
    check_choice,
    check_level,
    check_time,
    check_uuid,
    short,
    validate,
)

ITER_PAGE = 1000


class CoreManager:
    """Async access to the orchestrator database, on SQLite or PostgreSQL.

    Example::

        async with DatabaseManager() as db:  # data/orchestrator.db unless configured
            oa = await db.create_orchestrator_agent("planner", "Plans the work")
            agent = await db.create_agent(oa, session_id="s-1")
            await db.create_agent_log(agent, "started", log_type="step_start")

    Args:
        db_path: SQLite file (or a URL). Overridden by ``url``.
        url: ``sqlite:///path`` or ``postgresql://user@host/db``.
        schema_path: create an empty database from this SQL file (as the seed project's
            ``adws/schema/schema_orchestrator.sqlite``); a missing file raises
            ``SchemaNotFoundError``.
        busy_timeout_ms: how long a SQLite writer waits for another process's lock.
        pool_min_size, pool_max_size: the PostgreSQL pool.
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
    ) -> None:
        self.target: Target = resolve_target(db_path, url=url)
        self.schema_path = Path(schema_path) if schema_path is not None else None
        self._options = {"busy_timeout_ms": busy_timeout_ms, "pool_min_size": pool_min_size,
                         "pool_max_size": pool_max_size}
        self._store: Store | None = None

    # lifecycle -------------------------------------------------------------------------------
    @property
    def dialect(self) -> Dialect:
        """The engine this manager talks to."""
        return self.target.dialect

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
            await store.open()
            self._store = store
        return self

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

        Nested use creates a savepoint. Calls made by the same task inside the block join it.
        """
        return self.store.transaction()

    # shared helpers --------------------------------------------------------------------------
    def _params(self, table: str, values: Mapping[str, Any]) -> list[Any]:
        store = self.store
        out = []
        for column in COLUMNS[table]:
            value = values.get(column)
            if column in JSON_FIELDS:
                value = store.json(value)
            elif column in TIME_FIELDS:
                value = store.ts(value)
            out.append(value)
        return out

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

    async def _page(
        self,
        table: str,
        where: Callable[[Query], list[str]],
        *,
        limit: int,
        cursor: str | None,
        order: Order,
        offset: int | None = None,
    ) -> Page:
        store = self.store
        limit = check_limit(limit)
        order = check_order(order)
        q = store.query()
        conditions = where(q)
        if cursor is not None:
            if not isinstance(cursor, str):
                raise ValidationError("cursor must be a string", field="cursor")
            created_at, row_id = decode_cursor(cursor, order)
            op = ">" if order == "asc" else "<"
            conditions.append(
                f"(created_at, id) {op} ({q.p(store.ts(created_at))}, {q.p(row_id)})"
            )
        direction = "ASC" if order == "asc" else "DESC"
        sql = f"SELECT {', '.join(COLUMNS[table])} FROM {table}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += f" ORDER BY created_at {direction}, id {direction} LIMIT {q.p(limit + 1)}"
        if offset:
            # Slow on deep pages (it reads and discards every skipped row): prefer the cursor.
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValidationError(f"offset must be a whole number ≥ 0, got {offset!r}",
                                      field="offset")
            sql += f" OFFSET {q.p(offset)}"
        rows = await store.fetch(sql, q.params)
        if len(rows) > limit:
            rows = rows[:limit]
            return Page(rows, encode_cursor(rows[-1], order))
        return Page(rows, None)

    async def _iter(self, page: Callable[..., Any], kwargs: dict[str, Any]
                    ) -> AsyncIterator[dict[str, Any]]:
        cursor = None
        while True:
            result: Page = await page(**kwargs, limit=ITER_PAGE, cursor=cursor)
            for row in result.items:
                yield row
            if result.next_cursor is None:
                return
            cursor = result.next_cursor

    @staticmethod
    def _time_range(q: Query, store: Store, since: Any, until: Any, column: str = "created_at"
                    ) -> list[str]:
        conditions = []
        start, end = check_time(since, "since"), check_time(until, "until")
        if start is not None:
            conditions.append(f"{column} >= {q.p(store.ts(start))}")
        if end is not None:
            conditions.append(f"{column} < {q.p(store.ts(end))}")
        return conditions

    @staticmethod
    def _levels(q: Query, log_level: Any, min_level: Any) -> list[str]:
        conditions = []
        if log_level is not None:
            conditions.append(f"log_level = {q.p(check_level(log_level, 'log_level'))}")
        if min_level is not None:
            floor = LOG_LEVEL_NUMBERS[check_level(min_level, "min_level")]
            levels = [lvl for lvl in LOG_LEVELS if LOG_LEVEL_NUMBERS[lvl] >= floor]
            conditions.append(f"log_level IN ({', '.join(q.p(lvl) for lvl in levels)})")
        return conditions

    # orchestrator agents ---------------------------------------------------------------------
    async def create_orchestrator_agent(
        self,
        name: str,
        description: str | None = None,
        *,
        agent_type: str | None = None,
        capabilities: list[str] | str | None = None,
        default_model: str | None = None,
        status: str = "active",
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Create an orchestrator agent definition and return its id.

        Raises:
            DuplicateError: an orchestrator agent with this name exists.
            ValidationError: an argument is malformed.
        """
        data = validate(OrchestratorAgentCreate, {
            "name": name, "description": description, "agent_type": agent_type,
            "capabilities": capabilities, "default_model": default_model, "status": status,
            "metadata": metadata,
        })
        now = utc_now()
        row_id = uuid7()
        try:
            await self._insert("orchestrator_agents", {
                **data.model_dump(), "id": row_id, "created_at": now, "updated_at": now,
            })
        except DuplicateError as exc:
            raise DuplicateError(
                f"an orchestrator agent named {data.name!r} already exists", field="name",
                name=data.name,
            ) from exc.__cause__
        return row_id

    async def get_orchestrator_agent(self, orchestrator_agent_id: str) -> dict[str, Any] | None:
        """Return the orchestrator agent, or None if there is none."""
        return await self._get("orchestrator_agents", orchestrator_agent_id,
                               "orchestrator_agent_id")

    async def get_orchestrator_agent_by_name(self, name: str) -> dict[str, Any] | None:
        """Return the orchestrator agent with this name, or None."""
        if not isinstance(name, str):
            raise ValidationError(f"name must be a string, got {name!r}", field="name")
        q = self.store.query()
        sql = (f"SELECT {', '.join(COLUMNS['orchestrator_agents'])} FROM orchestrator_agents "
               f"WHERE name = {q.p(name)}")
        return await self.store.fetchone(sql, q.params)

    async def page_orchestrator_agents(
        self, *, status: str | None = None, agent_type: str | None = None,
        limit: int = DEFAULT_LIMIT, cursor: str | None = None, order: Order = "asc",
        offset: int | None = None,
    ) -> Page:
        """Return one page of orchestrator agents, oldest first unless ``order='desc'``."""
        def where(q: Query) -> list[str]:
            conditions = []
            if status is not None:
                st = check_choice(status, ORCHESTRATOR_AGENT_STATUSES, "status")
                conditions.append(f"status = {q.p(st)}")
            if agent_type is not None:
                conditions.append(f"agent_type = {q.p(str(agent_type))}")
            return conditions
        return await self._page("orchestrator_agents", where, limit=limit, cursor=cursor,
                                order=order, offset=offset)

    async def list_orchestrator_agents(self, **filters: Any) -> list[dict[str, Any]]:
        """Return orchestrator agents (filters and paging as ``page_orchestrator_agents``)."""
        return (await self.page_orchestrator_agents(**filters)).items

    def iter_orchestrator_agents(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Stream every orchestrator agent matching the filters."""
        return self._iter(self.page_orchestrator_agents, filters)

    async def update_orchestrator_agent(self, orchestrator_agent_id: str, **fields: Any) -> bool:
        """Change fields of an orchestrator agent; False if it does not exist."""
        try:
            return await self._update("orchestrator_agents", orchestrator_agent_id,
                                      OrchestratorAgentUpdate, fields, touch=True)
        except DuplicateError as exc:
            raise DuplicateError(
                f"an orchestrator agent named {fields.get('name')!r} already exists",
                field="name",
            ) from exc.__cause__

    async def delete_orchestrator_agent(self, orchestrator_agent_id: str, *,
                                        cascade: bool = False) -> bool:
        """Delete an orchestrator agent; with ``cascade=True`` also its agents and their rows.

        Raises:
            ReferencedError: it still has agents and ``cascade`` is False.
        """
        oa_id = check_uuid(orchestrator_agent_id, "orchestrator_agent_id")
        store = self.store
        async with store.transaction():
            q = store.query()
            rows = await store.fetch(
                f"SELECT count(*) AS n FROM agents WHERE orchestrator_agent_id = {q.p(oa_id)}",
                q.params,
            )
            count = int(rows[0]["n"])
            if count and not cascade:
                raise ReferencedError(
                    f"orchestrator agent {short(oa_id)} still has {count} agent(s); "
                    "delete them first or pass cascade=True",
                    field="orchestrator_agent_id", count=count,
                )
            if count:
                q = store.query()
                await store.execute(
                    f"DELETE FROM agents WHERE orchestrator_agent_id = {q.p(oa_id)}", q.params
                )
            return await self._delete("orchestrator_agents", oa_id)

    # agents ----------------------------------------------------------------------------------
    async def create_agent(
        self,
        orchestrator_agent_id: str,
        session_id: str,
        *,
        status: str = "pending",
        name: str | None = None,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        started_at: datetime | str | None = None,
        completed_at: datetime | str | None = None,
    ) -> str:
        """Create a runtime agent in a session and return its id.

        Created ``executing``, it gets ``started_at`` now; created in a final status, it gets
        ``completed_at`` now (unless the caller gives them).

        Raises:
            ForeignKeyError: the orchestrator agent does not exist.
        """
        oa_id = check_uuid(orchestrator_agent_id, "orchestrator_agent_id")
        data = validate(AgentCreate, {
            "orchestrator_agent_id": oa_id, "session_id": session_id, "status": status,
            "name": name, "model": model, "metadata": metadata, "started_at": started_at,
            "completed_at": completed_at,
        })
        now = utc_now()
        row_id = uuid7()
        values = {**data.model_dump(), "id": row_id, "created_at": now, "updated_at": now}
        # As update_agent_status does: a run created already executing (or finished) gets the
        # timestamp it would otherwise lack.
        if data.status == "executing" and data.started_at is None:
            values["started_at"] = now
        elif data.status in TERMINAL_AGENT_STATUSES and data.completed_at is None:
            values["completed_at"] = now
        try:
            await self._insert("agents", values)
        except ForeignKeyError as exc:
            raise ForeignKeyError(
                f"orchestrator agent {oa_id} does not exist", field="orchestrator_agent_id",
                id=oa_id,
            ) from exc.__cause__
        return row_id

    async def get_agent(self, agent_id: str) -> dict[str, Any] | None:
        """Return the runtime agent, or None if there is none."""
        return await self._get("agents", agent_id, "agent_id")

    async def page_agents(
        self, *, session_id: str | None = None, orchestrator_agent_id: str | None = None,
        status: str | None = None, since: Any = None, until: Any = None,
        limit: int = DEFAULT_LIMIT, cursor: str | None = None, order: Order = "asc",
        offset: int | None = None,
    ) -> Page:
        """Return one page of runtime agents, oldest first unless ``order='desc'``."""
        store = self.store

        def where(q: Query) -> list[str]:
            conditions = []
            if session_id is not None:
                conditions.append(f"session_id = {q.p(str(session_id))}")
            if orchestrator_agent_id is not None:
                oa = check_uuid(orchestrator_agent_id, "orchestrator_agent_id")
                conditions.append(f"orchestrator_agent_id = {q.p(oa)}")
            if status is not None:
                conditions.append(f"status = {q.p(check_choice(status, AGENT_STATUSES, 'status'))}")
            return conditions + self._time_range(q, store, since, until)
        return await self._page("agents", where, limit=limit, cursor=cursor, order=order,
                                offset=offset)

    async def list_agents(self, **filters: Any) -> list[dict[str, Any]]:
        """Return runtime agents (filters and paging as ``page_agents``)."""
        return (await self.page_agents(**filters)).items

    def iter_agents(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Stream every runtime agent matching the filters."""
        return self._iter(self.page_agents, filters)

    async def list_agents_by_session(self, session_id: str, **filters: Any
                                     ) -> list[dict[str, Any]]:
        """Return the agents of one session in creation order."""
        return await self.list_agents(session_id=session_id, **filters)

    async def get_agents_by_orchestrator(self, orchestrator_agent_id: str, **filters: Any
                                         ) -> list[dict[str, Any]]:
        """Return the agents started from one orchestrator agent, in creation order."""
        return await self.list_agents(orchestrator_agent_id=orchestrator_agent_id, **filters)

    async def update_agent_status(
        self,
        agent_id: str,
        status: str,
        started_at: datetime | str | None = None,
        completed_at: datetime | str | None = None,
    ) -> bool:
        """Set an agent's status; False if it does not exist.

        ``executing`` fills ``started_at`` and a final status (completed, failed, cancelled)
        fills ``completed_at`` with the current time, unless given or already set.
        """
        agent_id = check_uuid(agent_id, "agent_id")
        status = check_choice(status, AGENT_STATUSES, "status")
        started = check_time(started_at, "started_at")
        completed = check_time(completed_at, "completed_at")
        store = self.store
        now = utc_now()
        q = store.query()
        sets = [f"status = {q.p(status)}", f"updated_at = {q.p(store.ts(now))}"]
        if started is not None:
            sets.append(f"started_at = {q.p(store.ts(started))}")
        elif status == "executing":
            sets.append(f"started_at = coalesce(started_at, {q.p(store.ts(now))})")
        if completed is not None:
            sets.append(f"completed_at = {q.p(store.ts(completed))}")
        elif status in TERMINAL_AGENT_STATUSES:
            sets.append(f"completed_at = coalesce(completed_at, {q.p(store.ts(now))})")
        sql = f"UPDATE agents SET {', '.join(sets)} WHERE id = {q.p(agent_id)}"
        return await store.execute(sql, q.params) > 0

    async def update_agent(self, agent_id: str, **fields: Any) -> bool:
        """Change fields of a runtime agent; False if it does not exist."""
        try:
            return await self._update("agents", agent_id, AgentUpdate, fields, touch=True)
        except ForeignKeyError as exc:
            oa = fields.get("orchestrator_agent_id")
            raise ForeignKeyError(f"orchestrator agent {oa} does not exist",
                                  field="orchestrator_agent_id") from exc.__cause__

    async def delete_agent(self, agent_id: str) -> bool:
        """Delete a runtime agent with its prompts and logs; False if it does not exist."""
        return await self._delete("agents", agent_id)

    # prompts ---------------------------------------------------------------------------------
    async def create_prompt(
        self,
        agent_id: str,
        content: str,
        *,
        response: str | None = None,
        model: str | None = None,
        status: str = "pending",
        tokens_input: int = 0,
        tokens_output: int = 0,
        cost_usd: float = 0.0,
        completed_at: datetime | str | None = None,
    ) -> str:
        """Record a prompt sent to an agent and return its id.

        Raises:
            ForeignKeyError: the agent does not exist.
        """
        agent_id = check_uuid(agent_id, "agent_id")
        data = validate(PromptCreate, {
            "agent_id": agent_id, "content": content, "response": response, "model": model,
            "status": status, "tokens_input": tokens_input, "tokens_output": tokens_output,
            "cost_usd": cost_usd, "completed_at": completed_at,
        })
        row_id = uuid7()
        try:
            await self._insert("prompts", {**data.model_dump(), "id": row_id,
                                           "created_at": utc_now()})
        except ForeignKeyError as exc:
            raise ForeignKeyError(f"agent {agent_id} does not exist", field="agent_id",
                                  id=agent_id) from exc.__cause__
        return row_id

    async def get_prompt(self, prompt_id: str) -> dict[str, Any] | None:
        """Return the prompt, or None if there is none."""
        return await self._get("prompts", prompt_id, "prompt_id")

    async def page_prompts(
        self, *, agent_id: str | None = None, session_id: str | None = None,
        status: str | None = None, model: str | None = None, since: Any = None,
        until: Any = None, limit: int = DEFAULT_LIMIT, cursor: str | None = None,
        order: Order = "asc", offset: int | None = None,
    ) -> Page:
        """Return one page of prompts, oldest first unless ``order='desc'``."""
        store = self.store

        def where(q: Query) -> list[str]:
            conditions = []
            if agent_id is not None:
                conditions.append(f"agent_id = {q.p(check_uuid(agent_id, 'agent_id'))}")
            if session_id is not None:
                conditions.append(
                    f"agent_id IN (SELECT id FROM agents WHERE session_id = {q.p(str(session_id))})"
                )
            if status is not None:
                conditions.append(f"status = {q.p(check_choice(status, PROMPT_STATUSES, 'status'))}")
            if model is not None:
                conditions.append(f"model = {q.p(str(model))}")
            return conditions + self._time_range(q, store, since, until)
        return await self._page("prompts", where, limit=limit, cursor=cursor, order=order,
                                offset=offset)

    async def list_prompts(self, **filters: Any) -> list[dict[str, Any]]:
        """Return prompts (filters and paging as ``page_prompts``)."""
        return (await self.page_prompts(**filters)).items

    def iter_prompts(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Stream every prompt matching the filters."""
        return self._iter(self.page_prompts, filters)

    async def list_prompts_by_agent(self, agent_id: str, **filters: Any) -> list[dict[str, Any]]:
        """Return the prompts of one agent in creation order."""
        return await self.list_prompts(agent_id=agent_id, **filters)

    async def complete_prompt(
        self,
        prompt_id: str,
        response: str | None,
        *,
        tokens_input: int = 0,
        tokens_output: int = 0,
        cost_usd: float = 0.0,
        status: str = "completed",
    ) -> bool:
        """Store a prompt's response, tokens and cost and mark it done; False if missing."""
        return await self.update_prompt(
            prompt_id, response=response, tokens_input=tokens_input,
            tokens_output=tokens_output, cost_usd=cost_usd, status=status,
            completed_at=utc_now(),
        )

    async def update_prompt(self, prompt_id: str, **fields: Any) -> bool:
        """Change fields of a prompt; False if it does not exist."""
        return await self._update("prompts", prompt_id, PromptUpdate, fields, touch=False)

    async def delete_prompt(self, prompt_id: str) -> bool:
        """Delete a prompt; False if it does not exist."""
        return await self._delete("prompts", prompt_id)

    # agent logs ------------------------------------------------------------------------------
    async def create_agent_log(
        self,
        agent_id: str,
        message: str,
        *,
        log_level: str = "INFO",
        log_type: str = "event",
        details: Any = None,
        created_at: datetime | str | None = None,
    ) -> str:
        """Write one agent log line and return its id.

        Raises:
            ForeignKeyError: the agent does not exist.
        """
        return (await self.create_agent_logs([{
            "agent_id": agent_id, "message": message, "log_level": log_level,
            "log_type": log_type, "details": details, "created_at": created_at,
        }]))[0]

    async def create_agent_logs(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Write many agent log lines in one transaction and return their ids, in order.

        Each row is a mapping with the keyword arguments of ``create_agent_log``. Nothing is
        written unless every row is valid and every agent exists.
        """
        values = self._log_rows(AgentLogCreate, rows, agent_ids=True)
        try:
            await self.insert_records("agent_logs", values)
        except ForeignKeyError as exc:
            missing = await self.missing_agents({v["agent_id"] for v in values})
            which = ", ".join(missing) if missing else "a referenced agent"
            raise ForeignKeyError(
                f"agent {which} does not exist", field="agent_id", ids=missing
            ) from exc.__cause__
        return [v["id"] for v in values]

    def _log_rows(self, model: type[pydantic.BaseModel], rows: Iterable[Mapping[str, Any]], *,
                  agent_ids: bool) -> list[dict[str, Any]]:
        values: list[dict[str, Any]] = []
        now = utc_now()
        checked: dict[Any, str] = {}  # bulk rows repeat a few agent ids: check each once
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ValidationError(f"row {index} must be a mapping, got {type(row).__name__}")
            row = dict(row)
            if "metadata" in row and "details" not in row:  # the seeds' name for details
                row["details"] = row.pop("metadata")
            if "component" in row and "source" not in row and not agent_ids:
                row["source"] = row.pop("component")
            if agent_ids:
                raw_id = row.get("agent_id")
                agent_id = checked.get(raw_id) if isinstance(raw_id, str) else None
                if agent_id is None:
                    agent_id = check_uuid(raw_id, "agent_id")
                    if isinstance(raw_id, str):
                        checked[raw_id] = agent_id
                row["agent_id"] = agent_id
            try:
                data = model.model_validate(row)
            except pydantic.ValidationError as exc:
                error = _validation_error(exc, model)
                if index or len(values):
                    error.message = f"row {index}: {error.message}"
                    error.args = (error.message,)
                raise error from exc
            value = dict(data.__dict__)  # model_dump() costs as much again as validation
            value["id"] = uuid7()
            value["created_at"] = value["created_at"] or now
            values.append(value)
        return values

    async def insert_records(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert complete rows (every column: ids and timestamps given) atomically, in bulk.

        COPY on PostgreSQL, ``executemany`` on SQLite. The rows are written as they are: callers
        validate them first (``create_agent_logs`` does; ``import_rows`` checks each column).
        """
        if not rows:
            return
        columns = COLUMNS[table]
        await self.store.insert_many(table, columns, [self._params(table, v) for v in rows])

    async def missing_agents(self, agent_ids: Iterable[str]) -> list[str]:
        """Return the ids among ``agent_ids`` that name no agent, sorted."""
        missing = []
        for agent_id in sorted(agent_ids):
            if await self.get_agent(agent_id) is None:
                missing.append(agent_id)
        return missing

    async def get_agent_log(self, log_id: str) -> dict[str, Any] | None:
        """Return the agent log line, or None if there is none."""
        return await self._get("agent_logs", log_id, "log_id")

    async def update_agent_log(self, log_id: str, **fields: Any) -> bool:
        """Change fields of an agent log line (e.g. redact a leaked secret); False if missing."""
        return await self._update("agent_logs", log_id, AgentLogUpdate, fields, touch=False)

    async def delete_agent_log(self, log_id: str) -> bool:
        """Delete one agent log line (e.g. one that leaked a secret); False if missing."""
        return await self._delete("agent_logs", log_id)

    async def page_agent_logs(
        self, agent_id: str | None = None, *, session_id: str | None = None,
        log_level: str | None = None, min_level: str | None = None, log_type: str | None = None,
        since: Any = None, until: Any = None, limit: int = DEFAULT_LIMIT,
        cursor: str | None = None, order: Order = "asc", offset: int | None = None,
    ) -> Page:
        """Return one page of agent logs, oldest first unless ``order='desc'``."""
        store = self.store

        def where(q: Query) -> list[str]:
            conditions = []
            if agent_id is not None:
                conditions.append(f"agent_id = {q.p(check_uuid(agent_id, 'agent_id'))}")
            if session_id is not None:
                conditions.append(
                    f"agent_id IN (SELECT id FROM agents WHERE session_id = {q.p(str(session_id))})"
                )
            conditions += self._levels(q, log_level, min_level)
            if log_type is not None:
                conditions.append(f"log_type = {q.p(str(log_type))}")
            return conditions + self._time_range(q, store, since, until)
        return await self._page("agent_logs", where, limit=limit, cursor=cursor, order=order,
                                offset=offset)

    async def list_agent_logs(self, agent_id: str | None = None, **filters: Any
                              ) -> list[dict[str, Any]]:
        """Return agent logs (filters and paging as ``page_agent_logs``)."""
        return (await self.page_agent_logs(agent_id, **filters)).items

    def iter_agent_logs(self, agent_id: str | None = None, **filters: Any
                        ) -> AsyncIterator[dict[str, Any]]:
        """Stream every agent log matching the filters."""
        return self._iter(self.page_agent_logs, {"agent_id": agent_id, **filters})

    async def list_recent_agent_logs(self, limit: int = 50, **filters: Any
                                     ) -> list[dict[str, Any]]:
        """Return the newest agent logs, newest first."""
        return await self.list_agent_logs(limit=limit, order="desc", **filters)

    # system logs -----------------------------------------------------------------------------
    async def create_system_log(
        self,
        message: str,
        *,
        log_level: str = "INFO",
        source: str | None = None,
        details: Any = None,
        created_at: datetime | str | None = None,
        component: str | None = None,
    ) -> str:
        """Write one system log line and return its id (``component`` is an alias of source)."""
        return (await self.create_system_logs([{
            "message": message, "log_level": log_level, "source": source or component,
            "details": details, "created_at": created_at,
        }]))[0]

    async def create_system_logs(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Write many system log lines in one transaction and return their ids, in order."""
        values = self._log_rows(SystemLogCreate, rows, agent_ids=False)
        await self.insert_records("system_logs", values)
        return [v["id"] for v in values]

    async def get_system_log(self, log_id: str) -> dict[str, Any] | None:
        """Return the system log line, or None if there is none."""
        return await self._get("system_logs", log_id, "log_id")

    async def update_system_log(self, log_id: str, **fields: Any) -> bool:
        """Change fields of a system log line; False if missing."""
        return await self._update("system_logs", log_id, SystemLogUpdate, fields, touch=False)

    async def delete_system_log(self, log_id: str) -> bool:
        """Delete one system log line; False if missing."""
        return await self._delete("system_logs", log_id)

    async def page_system_logs(
        self, *, log_level: str | None = None, min_level: str | None = None,
        source: str | None = None, component: str | None = None, since: Any = None,
        until: Any = None, limit: int = DEFAULT_LIMIT, cursor: str | None = None,
        order: Order = "asc", offset: int | None = None,
    ) -> Page:
        """Return one page of system logs, oldest first unless ``order='desc'``."""
        store = self.store
        source = source if source is not None else component

        def where(q: Query) -> list[str]:
            conditions = self._levels(q, log_level, min_level)
            if source is not None:
                conditions.append(f"source = {q.p(str(source))}")
            return conditions + self._time_range(q, store, since, until)
        return await self._page("system_logs", where, limit=limit, cursor=cursor, order=order,
                                offset=offset)

    async def list_system_logs(self, **filters: Any) -> list[dict[str, Any]]:
        """Return system logs (filters and paging as ``page_system_logs``)."""
        return (await self.page_system_logs(**filters)).items

    def iter_system_logs(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Stream every system log matching the filters."""
        return self._iter(self.page_system_logs, filters)

    async def list_recent_system_logs(self, limit: int = 50, **filters: Any
                                      ) -> list[dict[str, Any]]:
        """Return the newest system logs, newest first."""
        return await self.list_system_logs(limit=limit, order="desc", **filters)

    # counts ------------------------------------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        """Row counts, size on disk, engine, location and schema version."""
        store = self.store
        counts = {}
        for table in TABLES:
            rows = await store.fetch(f"SELECT count(*) AS n FROM {table}", heavy=True)
            counts[table] = int(rows[0]["n"])
        return {
            "engine": self.dialect.value,
            "location": self.target.display(),
            "schema_version": await store.schema_version(),
            "size_bytes": await store.storage_bytes(),
            "counts": counts,
        }

    async def schema_version(self) -> int:
        """Return the newest schema migration applied to this database."""
        return await self.store.schema_version()
