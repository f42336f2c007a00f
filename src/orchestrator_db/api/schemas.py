"""Response models of the service (request bodies are the library's payload models).

The record models come from ``orchestrator_db.models``; this module adds the list envelope
``{"items": [...], "next_cursor": ...}`` per record, the aggregates and the error shape, so that
``/openapi.json`` describes every response.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, create_model

from ..models import (
    Agent,
    AgentLog,
    AgentStatus,
    OrchestratorAgent,
    Prompt,
    SystemLog,
)


class ErrorDetail(BaseModel):
    """What went wrong."""

    type: str = Field(description="The error class, e.g. ValidationError, NotFoundError.")
    message: str = Field(description="One sentence for a human, naming the field if any.")
    field: str | None = Field(None, description="The field or parameter at fault, if any.")


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx response."""

    error: ErrorDetail


NEXT_CURSOR = Field(None, description="Pass as `cursor` to get the next page; null on the last.")


def _page_of(record: type[BaseModel], what: str) -> type[BaseModel]:
    """The list envelope of one record type, named ``<Record>Page`` in /openapi.json."""
    return create_model(f"{record.__name__}Page", __doc__=f"One page of {what}.",
                        items=(list[record], ...),  # type: ignore[valid-type]
                        next_cursor=(str | None, NEXT_CURSOR))


OrchestratorAgentPage = _page_of(OrchestratorAgent, "orchestrator agents")
AgentPage = _page_of(Agent, "runtime agents")
PromptPage = _page_of(Prompt, "prompts")
AgentLogPage = _page_of(AgentLog, "agent log lines")
SystemLogPage = _page_of(SystemLog, "system log lines")


class SessionSummary(BaseModel):
    """Agents by status, prompts, tokens, cost and first/last activity of one session."""

    session_id: str
    status: AgentStatus = Field(description="From the latest run of each orchestrator agent: "
                                "executing/pending/failed if any is, else cancelled or completed.")
    agents: int
    agents_by_status: dict[str, int]
    failed_attempts: int = Field(description="Failed runs followed by a later run of the same "
                                             "orchestrator agent (retried).")
    prompts: int
    tokens_input: int
    tokens_output: int
    cost_usd: float
    first_activity: str
    last_activity: str


SessionPage = _page_of(SessionSummary, "sessions, the most recently started first")


class CostRow(BaseModel):
    """Prompts, tokens and cost of one group."""

    key: str | None = Field(description="The session id, agent id, orchestrator agent id, "
                                        "model or day (YYYY-MM-DD).")
    name: str | None = Field(description="The agent or orchestrator agent name, if any.")
    prompts: int
    tokens_input: int
    tokens_output: int
    cost_usd: float


class CostSummary(BaseModel):
    """Cost grouped one way, groups sorted by key (by session or agent: one page of them)."""

    group_by: str
    items: list[CostRow]
    next_cursor: str | None = Field(None, description=(
        "Grouped by session or agent: pass as `cursor` to get the next page; null on the last. "
        "Absent for the groupings that come whole."))


class Stats(BaseModel):
    """Row counts, size on disk, engine and schema version."""

    engine: str
    location: str
    schema_version: int
    size_bytes: int | None
    counts: dict[str, int]
    estimated: dict[str, bool] = Field(description=(
        "Per table: true when its count is the engine's estimate (PostgreSQL's planner "
        "statistics, SQLite's rowid span), given for tables of 100,000 rows or more; false "
        "when counted exactly."))


class FeedHealth(BaseModel):
    """The change feed behind live events."""

    running: bool
    healthy: bool
    position: int
    failures: int = Field(description="Consecutive failed reads of the change log.")
    last_error: str | None
    skipped_gaps: int = Field(description="Gaps stepped over after waiting for their writers.")


class OtlpHealth(BaseModel):
    """The OpenTelemetry receiver (POST /v1/traces, /v1/logs) and its writer."""

    running: bool
    pending: int = Field(description="Spans and log records queued, not yet written.")
    requests: int
    items: int = Field(description="Spans and log records written.")
    rejected: int
    batches: int
    busy: int = Field(description="Requests answered 429 because the queue was full.")
    failures: int = Field(description="Batches that could not be written (answered 503).")
    last_error: str | None


class RetentionHealth(BaseModel):
    """The hourly retention (ORCHESTRATOR_RETENTION_DAYS), when the service runs it."""

    runs: int
    failures: int = Field(description="Runs that failed; the next one is tried all the same.")
    last_error: str | None


class Health(BaseModel):
    """The service is up and its database answers ("ok"), or the database or its live events
    are failing ("degraded", answered with 503)."""

    status: str
    engine: str
    schema_version: int | None = Field(description="None while the database does not answer.")
    database_error: str | None = None
    feed: FeedHealth
    otlp: OtlpHealth | None = None
    retention: RetentionHealth | None = None


class Position(BaseModel):
    """The newest change-feed position: pass it as `after` to /ws/events to miss nothing."""

    position: int


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the given error codes."""
    text = {400: "Invalid parameter or field value", 401: "Missing or wrong API token",
            404: "No such record", 409: "Conflicts with existing records",
            413: "Request body too large", 422: "Request body does not match its schema"}
    return {code: {"model": ErrorResponse, "description": text.get(code, "Error")}
            for code in codes}
