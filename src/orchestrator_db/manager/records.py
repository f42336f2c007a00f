"""Per-record operations: orchestrator agents, runtime agents and prompts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from ..errors import DuplicateError, ForeignKeyError, ReferencedError
from ..ids import uuid7
from ..models import (
    AGENT_STATUSES,
    ORCHESTRATOR_AGENT_STATUSES,
    PROMPT_STATUSES,
    AgentCreate,
    AgentUpdate,
    OrchestratorAgentCreate,
    OrchestratorAgentUpdate,
    PromptCreate,
    PromptUpdate,
    utc_now,
)
from ..pagination import DEFAULT_LIMIT, Order, Page
from ..store import Query
from ..tables import COLUMNS, TERMINAL_AGENT_STATUSES
from ..validation import check_choice, check_text, check_time, check_uuid, short, validate
from .queries import QueryBuilder


class RecordOperations(QueryBuilder):
    """Create, read, page, update and delete orchestrator agents, agents and prompts."""

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
        name = check_text(name, "name")
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
                conditions.append(f"agent_type = {q.p(check_text(agent_type, 'agent_type'))}")
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
                conditions.append(f"session_id = {q.p(check_text(session_id, 'session_id'))}")
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
                session = q.p(check_text(session_id, "session_id"))
                conditions.append(
                    f"agent_id IN (SELECT id FROM agents WHERE session_id = {session})"
                )
            if status is not None:
                conditions.append(f"status = {q.p(check_choice(status, PROMPT_STATUSES, 'status'))}")
            if model is not None:
                conditions.append(f"model = {q.p(check_text(model, 'model'))}")
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

