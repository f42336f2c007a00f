"""Per-record operations: orchestrator agents, runtime agents and prompts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Unpack

from .. import pricing
from ..errors import DuplicateError, ForeignKeyError, ReferencedError, ValidationError
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
    SystemLogCreate,
    utc_now,
)
from ..pagination import Order, Page, Paging
from ..tables import COLUMNS, TERMINAL_AGENT_STATUSES
from ..validation import check_choice, check_text, check_time, check_uuid, short, validate
from .queries import QueryBuilder, lister, streamer

_MAX_DEPTH = 10_000  # sub-agent levels a loop check walks up (a loop already stored ends there)


def _required(value: Any, field: str) -> Any:
    """The one argument a ``*_by_*`` method selects by: None would list every row."""
    if value is None:
        raise ValidationError(f"{field} is required, got None", field=field)
    return value


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
        values = {**data.model_dump(), "id": row_id, "created_at": now, "updated_at": now}
        try:
            await self._insert("orchestrator_agents", values)
        except DuplicateError as exc:
            raise DuplicateError(
                f"an orchestrator agent named {values['name']!r} already exists", field="name",
                name=values["name"],
            ) from exc.__cause__
        return row_id

    async def get_orchestrator_agent(self, agent_id: str | None = None, *,
                                     orchestrator_agent_id: str | None = None
                                     ) -> dict[str, Any] | None:
        """Return the orchestrator agent, or None if there is none.

        ``agent_id`` is the seed's name for the id; ``orchestrator_agent_id=`` is accepted too.
        """
        if agent_id is not None and orchestrator_agent_id is not None:
            raise TypeError("get_orchestrator_agent() takes the id once: agent_id or "
                            "orchestrator_agent_id=, not both")
        row_id = agent_id if agent_id is not None else orchestrator_agent_id
        return await self._get("orchestrator_agents", row_id, "orchestrator_agent_id")

    async def get_orchestrator_agent_by_name(self, name: str) -> dict[str, Any] | None:
        """Return the orchestrator agent with this name, or None."""
        name = check_text(name, "name")
        q = self.store.query()
        sql = (f"SELECT {', '.join(COLUMNS['orchestrator_agents'])} FROM orchestrator_agents "
               f"WHERE name = {q.p(name)}")
        return await self.store.fetchone(sql, q.params)

    async def page_orchestrator_agents(
        self, *, status: str | None = None, agent_type: str | None = None,
        **paging: Unpack[Paging],
    ) -> Page:
        """Return one page of orchestrator agents, oldest first unless ``order='desc'``."""
        where = (self._where().choice("status", status, ORCHESTRATOR_AGENT_STATUSES)
                 .text("agent_type", agent_type))
        return await self._page("orchestrator_agents", where, **paging)

    async def list_orchestrator_agents(self, *, order: Order = "desc", **filters: Any
                                       ) -> list[dict[str, Any]]:
        """Return orchestrator agents, newest first as the seed has it (``order="asc"``: oldest).

        Filters and paging as ``page_orchestrator_agents``.
        """
        return (await self.page_orchestrator_agents(order=order, **filters)).items

    iter_orchestrator_agents = streamer("page_orchestrator_agents", "orchestrator agent")

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
        parent_agent_id: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> str:
        """Create a runtime agent in a session and return its id.

        Created ``executing``, it gets ``started_at`` now; created in a final status, it gets
        ``completed_at`` now (unless the caller gives them). ``parent_agent_id`` makes it a
        sub-agent of another run; ``trace_id`` / ``span_id`` (lowercase hex) name the
        OpenTelemetry span it was made from.

        Raises:
            ForeignKeyError: the orchestrator agent or the parent agent does not exist.
        """
        oa_id = check_uuid(orchestrator_agent_id, "orchestrator_agent_id")
        data = validate(AgentCreate, {
            "orchestrator_agent_id": oa_id, "session_id": session_id, "status": status,
            "name": name, "model": model, "metadata": metadata, "started_at": started_at,
            "completed_at": completed_at, "parent_agent_id": parent_agent_id,
            "trace_id": trace_id, "span_id": span_id,
        })
        now = utc_now()
        row_id = uuid7()
        values = {**data.model_dump(), "id": row_id, "created_at": now, "updated_at": now}
        # As update_agent_status does: a run created already executing (or finished) gets the
        # timestamp it would otherwise lack.
        if values["status"] == "executing" and values["started_at"] is None:
            values["started_at"] = now
        elif values["status"] in TERMINAL_AGENT_STATUSES and values["completed_at"] is None:
            values["completed_at"] = now
        try:
            await self._insert("agents", values)
        except ForeignKeyError as exc:
            parent = values["parent_agent_id"]
            if parent is not None and await self.get_orchestrator_agent(oa_id) is not None:
                raise ForeignKeyError(f"parent agent {parent} does not exist",
                                      field="parent_agent_id", id=parent) from exc.__cause__
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
        parent_agent_id: str | None = None, **paging: Unpack[Paging],
    ) -> Page:
        """Return one page of runtime agents, oldest first unless ``order='desc'``.

        ``parent_agent_id`` lists the sub-agents one run started (its direct children).
        """
        where = (self._where().text("session_id", session_id)
                 .uuid("orchestrator_agent_id", orchestrator_agent_id)
                 .uuid("parent_agent_id", parent_agent_id)
                 .choice("status", status, AGENT_STATUSES).created(since, until))
        return await self._page("agents", where, **paging)

    list_agents = lister("page_agents", "runtime agents")
    iter_agents = streamer("page_agents", "runtime agent")

    async def list_agents_by_session(self, session_id: str, **filters: Any
                                     ) -> list[dict[str, Any]]:
        """Return the agents of one session in creation order."""
        return await self.list_agents(session_id=_required(session_id, "session_id"), **filters)

    async def get_agents_by_orchestrator(self, orchestrator_agent_id: str, **filters: Any
                                         ) -> list[dict[str, Any]]:
        """Return the agents started from one orchestrator agent, in creation order."""
        return await self.list_agents(
            orchestrator_agent_id=_required(orchestrator_agent_id, "orchestrator_agent_id"),
            **filters)

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
        started = check_time(started_at, "started_at", stored=True)
        completed = check_time(completed_at, "completed_at", stored=True)
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
        """Change fields of a runtime agent; False if it does not exist.

        Raises:
            ValidationError: the new ``parent_agent_id`` is the agent or one of its sub-agents
                (the runs would form a loop).
        """
        if fields.get("parent_agent_id") is not None:
            await self._check_no_loop(check_uuid(agent_id, "agent_id"),
                                      check_uuid(fields["parent_agent_id"], "parent_agent_id"))
        try:
            return await self._update("agents", agent_id, AgentUpdate, fields, touch=True)
        except ForeignKeyError as exc:
            oa = fields.get("orchestrator_agent_id")
            parent = fields.get("parent_agent_id")
            if parent is not None and (oa is None or await self.get_orchestrator_agent(oa)):
                raise ForeignKeyError(f"parent agent {parent} does not exist",
                                      field="parent_agent_id") from exc.__cause__
            raise ForeignKeyError(f"orchestrator agent {oa} does not exist",
                                  field="orchestrator_agent_id") from exc.__cause__

    async def _check_no_loop(self, agent_id: str, parent: str) -> None:
        """Refuse ``parent`` as the parent of ``agent_id`` if it is the agent or below it."""
        q = self.store.query()
        start = q.p(parent)  # placeholders in the order they stand in the SQL (SQLite's ?)
        child = q.p(agent_id)
        found = await self.store.fetch(
            "WITH RECURSIVE up (id, depth) AS ("
            f" SELECT id, 0 FROM agents WHERE id = {start}"
            " UNION ALL SELECT a.parent_agent_id, up.depth + 1 FROM agents AS a JOIN up"
            f" ON a.id = up.id WHERE a.parent_agent_id IS NOT NULL AND up.depth < {_MAX_DEPTH})"
            f" SELECT 1 AS found FROM up WHERE id = {child} LIMIT 1", q.params)
        if found or parent == agent_id:
            raise ValidationError(
                f"agent {parent} cannot be the parent of agent {agent_id}: it is "
                + ("the agent itself" if parent == agent_id else "one of its sub-agents"),
                field="parent_agent_id")

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
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> str:
        """Record a prompt sent to an agent and return its id.

        Raises:
            ForeignKeyError: the agent does not exist.
        """
        agent_id = check_uuid(agent_id, "agent_id")
        data = validate(PromptCreate, {
            "agent_id": agent_id, "content": content, "response": response, "model": model,
            "status": status, "tokens_input": tokens_input, "tokens_output": tokens_output,
            "cost_usd": cost_usd, "completed_at": completed_at, "trace_id": trace_id,
            "span_id": span_id,
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
        until: Any = None, **paging: Unpack[Paging],
    ) -> Page:
        """Return one page of prompts, oldest first unless ``order='desc'``."""
        where = (self._where().uuid("agent_id", agent_id).in_session(session_id)
                 .choice("status", status, PROMPT_STATUSES).text("model", model)
                 .created(since, until))
        return await self._page("prompts", where, **paging)

    list_prompts = lister("page_prompts", "prompts")
    iter_prompts = streamer("page_prompts", "prompt")

    async def list_prompts_by_agent(self, agent_id: str, **filters: Any) -> list[dict[str, Any]]:
        """Return the prompts of one agent in creation order."""
        return await self.list_prompts(agent_id=_required(agent_id, "agent_id"), **filters)

    async def complete_prompt(
        self,
        prompt_id: str,
        response: str | None,
        *,
        tokens_input: int = 0,
        tokens_output: int = 0,
        cost_usd: float | None = None,
        status: str = "completed",
    ) -> bool:
        """Store a prompt's response, tokens and cost and mark it done; False if missing.

        Without ``cost_usd``, a prompt with a model is priced from its tokens (genai-prices'
        table, at the current time), unless it already carries a cost, which is kept. A model
        the table does not know leaves the cost at 0 and says so once per process in the
        system log (source ``orchestrator_db.pricing``): never a guess.
        """
        fields: dict[str, Any] = {"response": response, "tokens_input": tokens_input,
                                  "tokens_output": tokens_output, "status": status,
                                  "completed_at": utc_now()}
        unpriced: str | None = None  # a model without a known price, to say so once stored
        if cost_usd is not None:
            fields["cost_usd"] = cost_usd
        else:
            prompt = await self.get_prompt(prompt_id)
            if prompt is None:
                return False
            model = prompt["model"]
            if model and not prompt["cost_usd"] and all(
                    isinstance(n, int) and not isinstance(n, bool) and n >= 0
                    for n in (tokens_input, tokens_output)):  # else the update refuses them
                cost = pricing.price(model, tokens_input, tokens_output)
                fields["cost_usd"] = 0.0 if cost is None else cost
                unpriced = model if cost is None else None
        changed = await self.update_prompt(prompt_id, **fields)
        if changed and unpriced is not None and pricing.first_miss(unpriced):
            note = validate(SystemLogCreate, {
                "message": f"no price known for model {unpriced!r}: its prompts are stored with "
                           "cost 0", "log_level": "WARNING", "source": "orchestrator_db.pricing",
                "details": {"model": unpriced}})
            await self._insert("system_logs", {**note.__dict__, "id": uuid7(),
                                               "created_at": utc_now()})
        return changed

    async def update_prompt(self, prompt_id: str, **fields: Any) -> bool:
        """Change fields of a prompt; False if it does not exist."""
        return await self._update("prompts", prompt_id, PromptUpdate, fields, touch=False)

    async def delete_prompt(self, prompt_id: str) -> bool:
        """Delete a prompt; False if it does not exist."""
        return await self._delete("prompts", prompt_id)

