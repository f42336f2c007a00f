"""Table metadata, each fact declared once: columns (from the record models), JSON, time and id
fields, not-null fields.

The manager, the change feed, maintenance, transfer and the migrations' generated triggers all
read these; nothing else lists a table's columns.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import Agent, AgentLog, OrchestratorAgent, Prompt, SystemLog

# Each table's columns, in order: the fields of its record model, which declares them once
# (with their types and defaults) and which every row the manager returns matches.
_RECORDS = (("orchestrator_agents", OrchestratorAgent), ("agents", Agent), ("prompts", Prompt),
            ("agent_logs", AgentLog), ("system_logs", SystemLog))
COLUMNS: dict[str, tuple[str, ...]] = {table: tuple(record.model_fields)
                                       for table, record in _RECORDS}
# The record tables in dependency order: parents before the rows that reference them.
TABLES: tuple[str, ...] = tuple(COLUMNS)
# Nullable columns added after the first schema (migration 0004: OpenTelemetry), per table: an
# export written before them imports with them empty.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(c for c in columns if c in ("parent_agent_id", "trace_id", "span_id"))
    for table, columns in COLUMNS.items()
}
JSON_FIELDS = frozenset({"metadata", "details", "capabilities"})
# Columns of floating-point numbers (their record models declare them as float).
FLOAT_FIELDS = frozenset(name for _, record in _RECORDS
                         for name, field in record.model_fields.items() if field.annotation is float)
TIME_FIELDS = frozenset({"created_at", "updated_at", "started_at", "completed_at"})
UUID_FIELDS = frozenset({"id", "agent_id", "orchestrator_agent_id", "parent_agent_id"})
NOT_NULL: dict[str, frozenset[str]] = {
    "orchestrator_agents": frozenset({"name", "status"}),
    "agents": frozenset({"orchestrator_agent_id", "session_id", "status"}),
    "prompts": frozenset({"content", "status", "tokens_input", "tokens_output", "cost_usd"}),
    "agent_logs": frozenset({"log_level", "log_type", "message"}),
    "system_logs": frozenset({"log_level", "message"}),
}
# Tables whose rows carry updated_at, which an update refreshes.
TOUCHED_ON_UPDATE = frozenset({"orchestrator_agents", "agents"})
LOG_TABLES = frozenset({"agent_logs", "system_logs"})
AGENT_CHILD_TABLES = frozenset({"prompts", "agent_logs"})
TERMINAL_AGENT_STATUSES = frozenset({"completed", "failed", "cancelled"})

# The change log (migration 0002) and the daily cost rollups (migration 0003).
CHANGES_TABLE = "changes"
CHANGE_COLUMNS: tuple[str, ...] = ("position", "table_name", "op", "row_id", "session_id",
                                   "agent_id", "log_level")
# The spans received over OpenTelemetry (migration 0004): which agent run holds each one's
# records and its parent, so children that arrive first are linked when the parent arrives.
OTLP_SPANS_TABLE = "otlp_spans"
OTLP_SPAN_COLUMNS: tuple[str, ...] = ("span_id", "trace_id", "parent_span_id", "agent_id",
                                      "is_agent", "orphan")
OTLP_SPAN_KEY: tuple[str, ...] = ("span_id", "trace_id")  # its primary key
ROLLUP_TABLE = "cost_rollups"
ROLLUP_COLUMNS: tuple[str, ...] = ("day", "session_id", "agent_id", "orchestrator_agent_id",
                                   "model", "prompts", "tokens_input", "tokens_output",
                                   "cost_usd", "updated_at")


@dataclass(frozen=True)
class ChangeFields:
    """Which column of a changed row fills each filter field of its change-log row (or None)."""

    session_id: str | None
    agent_id: str | None
    log_level: str | None


# What the change-feed triggers record for each table (the triggers are generated from this).
CHANGE_FIELDS: dict[str, ChangeFields] = {
    "orchestrator_agents": ChangeFields(None, None, None),
    "agents": ChangeFields("session_id", "id", None),
    "prompts": ChangeFields(None, "agent_id", None),
    "agent_logs": ChangeFields(None, "agent_id", "log_level"),
    "system_logs": ChangeFields(None, None, "log_level"),
}
