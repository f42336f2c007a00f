"""REST routes under ``/api/``: thin handlers over ``DatabaseManager``.

Every list takes the library's filters plus ``limit`` (1-1000), ``order`` and an opaque
``cursor``, and answers ``{"items": [...], "next_cursor": ...}``. Request bodies are the library's
payload models, so the API validates exactly what the library does. Log lines can be edited
too (PATCH), e.g. to redact a secret that leaked into a message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field
from pydantic_core import to_json

from ..database import DatabaseManager
from ..errors import NotFoundError, ValidationError
from ..models import (
    Agent,
    AgentCreate,
    AgentLog,
    AgentLogCreate,
    AgentLogUpdate,
    AgentStatus,
    AgentUpdate,
    Level,
    OrchestratorAgent,
    OrchestratorAgentCreate,
    OrchestratorAgentStatus,
    OrchestratorAgentUpdate,
    Prompt,
    PromptCreate,
    PromptStatus,
    PromptUpdate,
    SystemLog,
    SystemLogCreate,
    SystemLogUpdate,
)
from ..pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from .listroute import QueryModelRoute
from .queryparams import refuse_unknown_query
from .schemas import (
    AgentLogPage,
    AgentPage,
    CostSummary,
    OrchestratorAgentPage,
    Position,
    PromptPage,
    SessionPage,
    SessionSummary,
    Stats,
    SystemLogPage,
    error_responses,
)

# QueryModelRoute: the list routes validate their query model in one call (listroute.py).
router = APIRouter(prefix="/api", dependencies=[Depends(refuse_unknown_query)],
                   route_class=QueryModelRoute)


async def get_db(request: Request) -> DatabaseManager:
    """The process's one DatabaseManager, opened by the app's lifespan (async: no thread hop)."""
    return request.app.state.db  # type: ignore[no-any-return]


Db = Annotated[DatabaseManager, Depends(get_db)]

# List filters are one query model per resource: FastAPI validates the model in one pydantic call
# (eleven separate parameters cost more than the SQLite query of a 100-row page) and still lists
# each field in /openapi.json. Unknown query parameters are refused with 400, naming the known
# ones (queryparams.py). Text filters are bounded and NUL-free (PostgreSQL text cannot hold NUL)
# before they reach the driver as parameters.
NO_NUL = r"^[^\x00]*$"
TextFilter = Annotated[str | None, Field(max_length=1000, pattern=NO_NUL)]
IdFilter = Annotated[str | None, Field(max_length=100, description="A UUID.")]


class _Page(BaseModel):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Rows per page.")
    cursor: str | None = Field(None, max_length=1000, pattern=NO_NUL,
                               description="`next_cursor` of the previous page.")


class _List(_Page):
    order: Literal["asc", "desc"] = Field("asc", description="By (created_at, id).")


class _TimeRange(BaseModel):
    since: datetime | None = Field(None, description="Only rows created at or after (ISO 8601).")
    until: datetime | None = Field(None, description="Only rows created before (ISO 8601).")


class OrchestratorAgentQuery(_List):
    status: OrchestratorAgentStatus | None = None
    agent_type: TextFilter = None
    name: TextFilter = Field(None, description="The unique name: at most one result.")


class AgentQuery(_List, _TimeRange):
    session_id: TextFilter = None
    orchestrator_agent_id: IdFilter = None
    status: AgentStatus | None = None
    parent_agent_id: IdFilter = Field(None, description="Sub-agents of this run (a UUID).")


class PromptQuery(_List, _TimeRange):
    agent_id: IdFilter = None
    session_id: TextFilter = None
    status: PromptStatus | None = None
    model: TextFilter = None


class AgentLogQuery(_List, _TimeRange):
    agent_id: IdFilter = None
    session_id: TextFilter = None
    log_level: Level | None = None
    min_level: Level | None = Field(None, description="This level and above.")
    log_type: TextFilter = None


class SystemLogQuery(_List, _TimeRange):
    log_level: Level | None = None
    min_level: Level | None = Field(None, description="This level and above.")
    source: TextFilter = None


class CostQuery(_TimeRange):
    group_by: Literal["session", "agent", "orchestrator_agent", "model", "day"] = Field(
        "session", description="How to group.")
    limit: int | None = Field(None, ge=1, le=MAX_LIMIT, description=(
        "Groups per page when grouped by session or agent (default 100); the other groupings "
        "come whole."))
    cursor: str | None = Field(None, max_length=1000, pattern=NO_NUL,
                               description="`next_cursor` of the previous page.")


RowId = Annotated[str, Path(description="The record's UUID.")]

LIST_ERRORS = error_responses(400)
GET_ERRORS = error_responses(400, 404)
CREATE_ERRORS = error_responses(400, 409, 413, 422)
UPDATE_ERRORS = error_responses(400, 404, 409, 413, 422)
DELETE_ERRORS = error_responses(400, 404, 409)


def found(row: dict[str, Any] | None, what: str, row_id: str) -> dict[str, Any]:
    """Return ``row`` or raise NotFoundError naming the record."""
    if row is None:
        raise NotFoundError(f"{what} {row_id} does not exist", field="id")
    return row


def ensure(changed: bool, what: str, row_id: str) -> None:
    """Raise NotFoundError when an update or delete touched no row."""
    if not changed:
        raise NotFoundError(f"{what} {row_id} does not exist", field="id")


async def updated(update: Callable[..., Awaitable[bool]],
                  get: Callable[[str], Awaitable[dict[str, Any] | None]], db: DatabaseManager,
                  what: str, row_id: str, body: BaseModel) -> dict[str, Any]:
    """Apply a PATCH body and return the record as it now is (404 if there is none)."""
    async with db.transaction():
        ensure(await update(row_id, **body.model_dump(exclude_unset=True)), what, row_id)
        row = await get(row_id)
    return found(row, what, row_id)


def render_json(content: Any) -> bytes:
    """Encode a response body: orjson (a 100-row page in ~70 µs, pydantic-core's takes ~4x).

    orjson refuses integers beyond 64 bits, which stored JSON (``details``) may hold: such a body
    is encoded by pydantic-core instead, to the same JSON (a UTC datetime ends in "Z" in both).
    """
    try:
        return orjson.dumps(content, option=orjson.OPT_UTC_Z)
    except TypeError:  # orjson.JSONEncodeError: a big integer, or a type orjson does not know
        return to_json(content)


class JSONBytes(Response):
    """A JSON response encoded once, by ``render_json``.

    Handlers return the library's dicts through this instead of letting FastAPI validate them
    against ``response_model`` first: the records are already in their documented shape (the
    models describe them for /openapi.json), and skipping the second validation and the stdlib
    encoder keeps a 100-row page close to the cost of the library call (benchmarks/bench_api.py).
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return render_json(content)


def page_body(page: Page) -> JSONBytes:
    """The list envelope."""
    return JSONBytes({"items": page.items, "next_cursor": page.next_cursor})


def collection_routes(path: str, tag: str, what: str, record: type[BaseModel],
                      page: type[BaseModel], query: type[BaseModel], body: type[BaseModel], *,
                      listed: tuple[str, str], created: tuple[str, str]) -> None:
    """Register GET (a page, filtered by ``query``) and POST (one new record) of a collection.

    ``listed`` and ``created`` are the manager's ``page_*`` and ``create_*`` methods, each with
    the route's description; the POST answers the record as stored.
    """
    (page_method, list_doc), (create_method, create_doc) = listed, created
    get_one = create_method.replace("create_", "get_", 1)

    async def list_all(db: Db, q: BaseModel) -> Response:
        return page_body(await getattr(db, page_method)(**q.model_dump()))

    async def create_one(db: Db, body: BaseModel) -> dict[str, Any]:
        row_id = await getattr(db, create_method)(**body.model_dump())
        return found(await getattr(db, get_one)(row_id), what, row_id)

    list_all.__annotations__["q"] = Annotated[query, Query()]  # the models FastAPI validates
    create_one.__annotations__["body"] = body
    list_all.__doc__, create_one.__doc__ = list_doc, create_doc
    router.get(f"/{path}", response_model=page, tags=[tag], responses=LIST_ERRORS,
               name=page_method.replace("page_", "list_", 1))(list_all)
    router.post(f"/{path}", status_code=201, response_model=record, tags=[tag],
                responses=CREATE_ERRORS, name=create_method)(create_one)


def record_routes(path: str, tag: str, what: str, record: type[BaseModel], *,
                  get: str, update: tuple[str, type[BaseModel]] | None = None,
                  delete: str | None = None) -> None:
    """Register GET (and PATCH, DELETE) of one record by id: the same three routes per record.

    ``get``, ``update`` and ``delete`` name the manager's methods (the update with its body
    model); records whose PATCH or DELETE does more are given their own routes instead.
    """
    single = f"/{path}/{{record_id}}"

    async def get_one(db: Db, record_id: RowId) -> dict[str, Any]:
        return found(await getattr(db, get)(record_id), what, record_id)

    get_one.__doc__ = f"Return one {what}."
    router.get(single, response_model=record, tags=[tag], responses=GET_ERRORS,
               name=get)(get_one)
    if update is not None:
        method, body_model = update

        async def update_one(db: Db, record_id: RowId, body: BaseModel) -> dict[str, Any]:
            return await updated(getattr(db, method), getattr(db, get), db, what, record_id,
                                 body)

        update_one.__annotations__["body"] = body_model  # the body FastAPI validates
        update_one.__doc__ = f"Change the given fields of a {what}."
        router.patch(single, response_model=record, tags=[tag], responses=UPDATE_ERRORS,
                     name=method)(update_one)
    if delete is not None:
        async def delete_one(db: Db, record_id: RowId) -> Response:
            ensure(await getattr(db, delete)(record_id), what, record_id)
            return Response(status_code=204)

        delete_one.__doc__ = f"Delete a {what}."
        router.delete(single, status_code=204, tags=[tag], responses=DELETE_ERRORS,
                      name=delete)(delete_one)


# orchestrator agents ---------------------------------------------------------------------------
@router.get("/orchestrator-agents", response_model=OrchestratorAgentPage,
            tags=["orchestrator agents"], responses=LIST_ERRORS)
async def list_orchestrator_agents(
    db: Db, q: Annotated[OrchestratorAgentQuery, Query()]
) -> Response:
    """List orchestrator agent definitions (``name=`` finds one by its unique name)."""
    filters = q.model_dump()
    name = filters.pop("name")
    if name is not None:
        row = await db.get_orchestrator_agent_by_name(name)
        rows = [row] if row is not None and (q.status is None or row["status"] == q.status) and (
            q.agent_type is None or row["agent_type"] == q.agent_type) else []
        return JSONBytes({"items": rows, "next_cursor": None})
    return page_body(await db.page_orchestrator_agents(**filters))


@router.post("/orchestrator-agents", status_code=201, response_model=OrchestratorAgent,
             tags=["orchestrator agents"], responses=CREATE_ERRORS)
async def create_orchestrator_agent(db: Db, body: OrchestratorAgentCreate) -> dict[str, Any]:
    """Create an orchestrator agent definition (409 if the name is taken)."""
    row_id = await db.create_orchestrator_agent(**body.model_dump())
    return found(await db.get_orchestrator_agent(row_id), "orchestrator agent", row_id)


record_routes("orchestrator-agents", "orchestrator agents", "orchestrator agent",
              OrchestratorAgent, get="get_orchestrator_agent",
              update=("update_orchestrator_agent", OrchestratorAgentUpdate))


@router.delete("/orchestrator-agents/{record_id}", status_code=204,
               tags=["orchestrator agents"], responses=DELETE_ERRORS)
async def delete_orchestrator_agent(
    db: Db, record_id: RowId,
    cascade: Annotated[bool, Query(description="Also delete its agents, their prompts and "
                                               "logs; without it, 409 while agents exist.")] = False,
) -> Response:
    """Delete an orchestrator agent."""
    deleted = await db.delete_orchestrator_agent(record_id, cascade=cascade)
    ensure(deleted, "orchestrator agent", record_id)
    return Response(status_code=204)


# agents ----------------------------------------------------------------------------------------
collection_routes("agents", "agents", "agent", Agent, AgentPage, AgentQuery, AgentCreate,
                  listed=("page_agents", "List runtime agents."),
                  created=("create_agent", "Create a runtime agent in a session (409 if the "
                           "orchestrator agent does not exist)."))
record_routes("agents", "agents", "agent", Agent, get="get_agent", delete="delete_agent")


@router.patch("/agents/{record_id}", response_model=Agent, tags=["agents"],
              responses=UPDATE_ERRORS)
async def update_agent(db: Db, record_id: RowId, body: AgentUpdate) -> dict[str, Any]:
    """Change the given fields of a runtime agent.

    Setting ``status`` to ``executing`` fills ``started_at``, and to a final status
    (completed, failed, cancelled) fills ``completed_at``, unless given or already set.
    """
    fields = body.model_dump(exclude_unset=True)
    if "status" in fields and fields["status"] is None:
        raise ValidationError("status cannot be set to None", field="status")
    status = fields.pop("status", None)
    if status is None and not fields:
        raise ValidationError("no fields to update; allowed fields: "
                              + ", ".join(sorted(AgentUpdate.model_fields)))
    async with db.transaction():
        if status is not None:
            changed = await db.update_agent_status(
                record_id, status, started_at=fields.pop("started_at", None),
                completed_at=fields.pop("completed_at", None))
            ensure(changed, "agent", record_id)
        if fields:
            changed = await db.update_agent(record_id, **fields)
            ensure(changed, "agent", record_id)
        row = await db.get_agent(record_id)
    return found(row, "agent", record_id)


# prompts ---------------------------------------------------------------------------------------
collection_routes("prompts", "prompts", "prompt", Prompt, PromptPage, PromptQuery, PromptCreate,
                  listed=("page_prompts", "List prompts with their responses, tokens and cost."),
                  created=("create_prompt",
                           "Record a prompt sent to an agent (409 if the agent does not exist)."))
record_routes("prompts", "prompts", "prompt", Prompt, get="get_prompt",
              update=("update_prompt", PromptUpdate), delete="delete_prompt")


# agent logs ------------------------------------------------------------------------------------
collection_routes("agent-logs", "agent logs", "agent log", AgentLog, AgentLogPage, AgentLogQuery,
                  AgentLogCreate, listed=("page_agent_logs", "List agent log lines."),
                  created=("create_agent_log",
                           "Write one agent log line (409 if the agent does not exist)."))
record_routes("agent-logs", "agent logs", "agent log", AgentLog, get="get_agent_log",
              update=("update_agent_log", AgentLogUpdate), delete="delete_agent_log")


# system logs -----------------------------------------------------------------------------------
collection_routes("system-logs", "system logs", "system log", SystemLog, SystemLogPage,
                  SystemLogQuery, SystemLogCreate,
                  listed=("page_system_logs", "List system log lines."),
                  created=("create_system_log", "Write one system log line."))
record_routes("system-logs", "system logs", "system log", SystemLog, get="get_system_log",
              update=("update_system_log", SystemLogUpdate), delete="delete_system_log")


# aggregates ------------------------------------------------------------------------------------
@router.get("/sessions", response_model=SessionPage, tags=["aggregates"], responses=LIST_ERRORS)
async def list_sessions(db: Db, q: Annotated[_Page, Query()]) -> Response:
    """Session summaries, the most recently started first (by the created_at of the first agent
    recorded in each).

    The cursor holds the last session's key and id, and a session's key never changes while it
    has agents: following ``next_cursor`` repeats and skips none.
    """
    return page_body(await db.page_sessions(limit=q.limit, cursor=q.cursor))


# ":path": a session id may hold "/" (sent as %2F, which the server decodes before routing).
@router.get("/sessions/{session_id:path}/summary", response_model=SessionSummary,
            tags=["aggregates"], responses=GET_ERRORS)
async def session_summary(
    db: Db, session_id: Annotated[str, Path(description="The session id.")]
) -> dict[str, Any]:
    """Agents by status, prompts, tokens, cost and first/last activity of one session."""
    summary = await db.session_summary(session_id)
    if summary is None:
        raise NotFoundError(f"session {session_id!r} has no agents", field="session_id")
    return summary


@router.get("/costs", response_model=CostSummary, tags=["aggregates"], responses=LIST_ERRORS)
async def costs(db: Db, q: Annotated[CostQuery, Query()]) -> Response:
    """Prompts, tokens and cost grouped by session, agent, orchestrator_agent, model or day.

    Grouped by session or agent, the groups come ``limit`` at a time (100 unless given), with a
    ``next_cursor``; the other groupings come whole.
    """
    fields = q.model_dump()
    limit = fields.pop("limit") or (DEFAULT_LIMIT if q.group_by in ("session", "agent") else None)
    page = await db.page_costs(**fields, limit=limit)
    body: dict[str, Any] = {"group_by": q.group_by, "items": page.items}
    if limit is not None:  # the groupings that come whole have no cursor
        body["next_cursor"] = page.next_cursor
    return JSONBytes(body)


@router.get("/stats", response_model=Stats, tags=["aggregates"])
async def stats(db: Db) -> Response:
    """Row counts, size on disk, engine and schema version.

    A table of 100,000 rows or more reports the engine's estimate, marked in ``estimated``.
    """
    return JSONBytes(await db.stats())


@router.get("/events/position", response_model=Position, tags=["live events"])
async def events_position(request: Request) -> dict[str, Any]:
    """The newest change-feed position (connect to /ws/events with ``after=`` it)."""
    return {"position": await request.app.state.feed.current_position()}
