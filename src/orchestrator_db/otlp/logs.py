"""OTLP log records into agent logs, system logs, and Claude Code's events into its runs.

A log record whose trace and span id name a stored span becomes an agent log of the agent run
holding that span (while the span waits under its trace's implicit agent, the record waits
with it, and follows it to its agent run: ``traces.py``); any other becomes a system log with
``source`` = ``service.name``. Severity numbers map to levels (1–8 DEBUG, 9–12 INFO, 13–16
WARNING, 17–20 ERROR, 21–24 CRITICAL), the body is the message and the attributes are the
details.

Claude Code's events (``claude_code.*``, see its monitoring documentation) are grouped by
``session.id`` under one agent run per session: ``api_request`` becomes a completed prompt with
its model, tokens and cost; ``tool_result``, ``tool_decision``, ``user_prompt``, ``api_error``
and the others become agent logs of that run.

Every row gets an id derived from the record itself (its resource, scope and encoded bytes), so
a record sent twice is stored once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from time import time_ns
from typing import Any

from .. import pricing
from ..errors import ConstraintError, ValidationError
from ..models import (
    MAX_CONTENT_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_SHORT_CHARS,
    clean_text,
    storable_ts,
    utc_now,
)
from .plan import Orchestrator, implicit_agent_id
from .resolve import resolve_records, resolve_records_committed
from .storage import RECORD_LOG_TYPE, Storage, validated
from .traces import Outcome
from .values import (
    any_value,
    as_float,
    as_int,
    as_text,
    attributes,
    clean_value,
    first,
    from_nanos,
    hex_id,
    stable_id,
)

CLAUDE_CODE = "claude_code."
RETRIES = 2
LOG_TABLES = ("agent_logs", "system_logs")


def level_of(severity_number: int, severity_text: str) -> str:
    """The log level of an OTLP severity (its text when the number is unset)."""
    if 1 <= severity_number <= 8:
        return "DEBUG"
    if 9 <= severity_number <= 12:
        return "INFO"
    if 13 <= severity_number <= 16:
        return "WARNING"
    if 17 <= severity_number <= 20:
        return "ERROR"
    if 21 <= severity_number <= 24:
        return "CRITICAL"
    text = severity_text.strip().upper()
    return {"WARN": "WARNING", "FATAL": "CRITICAL", "TRACE": "DEBUG"}.get(
        text, text if text in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO")


@dataclass(slots=True)
class Record:
    """One log record with its resource, decoded once."""

    key: str  # its stable row id
    time: datetime | None
    level: str
    message: str
    attrs: dict[str, Any]
    resource: dict[str, Any]
    trace_id: str | None
    span_id: str | None
    event: str | None  # a claude_code.* event name

    @property
    def service(self) -> str:
        """The emitting service's name."""
        name = self.resource.get("service.name")
        return name if isinstance(name, str) and name.strip() else "unknown_service"


def records(request: Any) -> list[Record]:
    """Return the log records of an ExportLogsServiceRequest.

    A record's id is made from its bytes, so a retried request stores nothing twice. Identical
    records within one request (a line logged twice in the same millisecond) are told apart by
    their count so far; a record with no time at all also by when it arrived, since nothing in
    it tells a repeat from a retry, and a repeat must not be lost.
    """
    out: list[Record] = []
    seen: dict[bytes, int] = {}
    received = str(time_ns()).encode()
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        resource_seed = resource_logs.resource.SerializeToString(deterministic=True)
        for scope_logs in resource_logs.scope_logs:
            seed = resource_seed + scope_logs.scope.SerializeToString(deterministic=True)
            for log in scope_logs.log_records:
                attrs = attributes(log.attributes)
                body = any_value(log.body) if log.HasField("body") else None
                time = from_nanos(log.time_unix_nano) or from_nanos(log.observed_time_unix_nano)
                event = getattr(log, "event_name", "") or None
                if event is not None and "event.name" not in attrs:
                    attrs["event.name"] = event  # the event's name, kept with its body
                blob = seed + log.SerializeToString(deterministic=True)
                repeat = seen[blob] = seen.get(blob, -1) + 1
                key = blob + (b"\0repeat %d" % repeat if repeat else b"") + (
                    b"" if time is not None else b"\0received " + received)
                if event is None and isinstance(body, str) and body.startswith(CLAUDE_CODE):
                    event = body
                name = attrs.get("event.name")
                if event is None and isinstance(name, str) and (
                        name.startswith(CLAUDE_CODE) or resource.get("service.name")
                        == "claude-code"):
                    event = name if name.startswith(CLAUDE_CODE) else CLAUDE_CODE + name
                out.append(Record(
                    stable_id(key, time), time,
                    level_of(log.severity_number, log.severity_text),
                    as_text(body) or event or "", attrs, resource, hex_id(log.trace_id),
                    hex_id(log.span_id), event if event and event.startswith(CLAUDE_CODE)
                    else None))
    return out


@dataclass
class _Rows:
    prompts: list[dict[str, Any]] = field(default_factory=list)
    agent_logs: list[dict[str, Any]] = field(default_factory=list)
    system_logs: list[dict[str, Any]] = field(default_factory=list)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)  # Claude Code runs
    orchestrators: dict[str, Orchestrator] = field(default_factory=dict)


async def ingest_records(storage: Storage, batch: list[Record]) -> Outcome:
    """Store log records; return how many were refused and why."""
    for attempt in range(RETRIES + 1):
        try:
            return await _ingest(storage, batch)
        except ConstraintError:
            storage.forget_orchestrators()
            if attempt == RETRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _ingest(storage: Storage, batch: list[Record]) -> Outcome:
    outcome = Outcome()
    unique = {r.key: r for r in batch}
    keys = {(r.trace_id, r.span_id) for r in unique.values()
            if r.trace_id and r.span_id and r.event is None}
    holders = await storage.holders((t, s) for t, s in keys if t and s)
    rows = await asyncio.to_thread(_rows, list(unique.values()), holders, utc_now())
    ids = {key: await storage.orchestrator_id(o) for key, o in rows.orchestrators.items()}
    for agent in rows.agents.values():
        agent["orchestrator_agent_id"] = ids[agent["id"]]
    checked: dict[str, list[dict[str, Any]]] = {}
    refused_agents: set[str] = set()
    for table, table_rows in (("agents", list(rows.agents.values())), ("prompts", rows.prompts),
                              ("agent_logs", rows.agent_logs),
                              ("system_logs", rows.system_logs)):
        checked[table] = []
        for row in table_rows:
            if row.get("agent_id") in refused_agents:  # its run could not be stored
                outcome.refuse([row["id"]], outcome.message)
                continue
            try:
                checked[table].append(validated(table, row))
            except ValidationError as exc:
                if table == "agents":
                    refused_agents.add(row["id"])
                    outcome.message = outcome.message or f"a Claude Code session: {exc.message}"
                else:
                    outcome.refuse([row["id"]], f"a log record: {exc.message}")
    # Records put under a trace's implicit agent: their span may have moved to its agent run
    # since it was looked up (another process), so they look again once written.
    waiting = {trace_id for (trace_id, span_id), holder in holders.items()
               if holder == implicit_agent_id(trace_id)}
    async with storage.db.transaction():
        for table, table_rows in checked.items():
            row_ids = [r["id"] for r in table_rows]
            present: set[str] = set()
            # A record kept as a system log (its span had not arrived) and sent again once the
            # span is stored would become an agent log too: a record is looked for in both.
            for holder in LOG_TABLES if table in LOG_TABLES else (table,):
                present |= await storage.existing(holder, row_ids)
            await storage.insert(table, [r for r in table_rows if r["id"] not in present])
            if table == "agents":
                await _widen_runs(storage, [r for r in table_rows if r["id"] in present])
        await resolve_records(storage, waiting)
    await resolve_records_committed(storage, waiting)
    return outcome


async def _widen_runs(storage: Storage, runs: list[dict[str, Any]]) -> None:
    """Give Claude Code runs stored by an earlier batch what this one knows better.

    Claude Code exports every few seconds, so a session's first batch often holds only a
    ``user_prompt`` (no model) and a later one an earlier event: the run takes the first model
    seen and the earliest time, as it would had all come in one batch.
    """
    for run in runs:
        if run["model"] is not None:
            q = storage.db.store.query()
            await storage.execute(f"UPDATE agents SET model = {q.p(run['model'])} "
                                  f"WHERE id = {q.p(run['id'])} AND model IS NULL", q.params)
        q = storage.db.store.query()
        when = storage.db.store.ts(run["started_at"])
        await storage.execute(
            f"UPDATE agents SET started_at = {q.p(when)}, created_at = {q.p(when)} "
            f"WHERE id = {q.p(run['id'])} AND started_at > {q.p(when)}", q.params)


def _rows(batch: Iterable[Record], holders: dict[tuple[str, str], str], now: datetime) -> _Rows:
    rows = _Rows()
    for record in batch:
        if record.event is not None:
            session = as_text(first(record.attrs, "session.id") or
                              first(record.resource, "session.id"))
            if session:
                _claude_code(rows, record, clean_text(session, MAX_NAME_CHARS), now)
                continue
        details = clean_value(record.attrs)
        holder = holders.get((record.trace_id or "", record.span_id or ""))
        when = record.time or now
        if record.trace_id and record.span_id:  # kept, to find the trace it belongs to
            details = {**details, "trace_id": record.trace_id, "span_id": record.span_id}
        if holder is not None:
            rows.agent_logs.append({
                "id": record.key, "agent_id": holder, "log_level": record.level,
                "log_type": RECORD_LOG_TYPE, "message": clean_text(record.message, MAX_MESSAGE_CHARS),
                "details": details or None, "created_at": when})
        else:
            rows.system_logs.append({
                "id": record.key, "log_level": record.level,
                "source": clean_text(record.service, 1000),
                "message": clean_text(record.message, MAX_MESSAGE_CHARS),
                "details": details or None, "created_at": when})
    return rows


def _claude_code(rows: _Rows, record: Record, session: str, now: datetime) -> None:
    """One Claude Code event: a prompt (api_request) or a log of the session's run."""
    service = clean_text(record.service, MAX_NAME_CHARS)
    agent_id = stable_id(b"claude_code\0" + service.encode() + b"\0" + session.encode(), None)
    attrs = record.attrs
    when = _event_time(record) or now
    model = as_text(attrs.get("model"))
    model = clean_text(model, MAX_SHORT_CHARS) if model else None
    agent = rows.agents.get(agent_id)
    if agent is None:
        rows.orchestrators[agent_id] = Orchestrator(service)
        agent = rows.agents[agent_id] = {
            "id": agent_id, "session_id": session, "name": service, "model": model,
            "status": "executing", "metadata": {"service": service, "source": "claude_code"},
            "created_at": when, "updated_at": now, "started_at": when, "completed_at": None,
            "parent_agent_id": None, "trace_id": None, "span_id": None}
    agent["created_at"] = agent["started_at"] = min(agent["started_at"], when)
    agent["model"] = agent["model"] or model
    event = (record.event or "").removeprefix(CLAUDE_CODE)
    details = clean_value(attrs)
    if event == "api_request":
        _api_request(rows, record, agent_id, model, when)
        return
    level = record.level
    if event == "tool_result":
        ok = str(attrs.get("success", "true")).lower() != "false"
        message = f"{attrs.get('tool_name', 'tool')} {'succeeded' if ok else 'failed'}"
        if attrs.get("duration_ms") is not None:
            message += f" in {attrs['duration_ms']} ms"
        if not ok:
            level = "ERROR" if record.level == "INFO" else record.level
            if attrs.get("error"):
                message += f": {attrs['error']}"
    elif event == "tool_decision":
        message = (f"{attrs.get('tool_name', 'tool')}: {attrs.get('decision', 'decided')}"
                   + (f" ({attrs['source']})" if attrs.get("source") else ""))
    elif event == "user_prompt":
        prompt = as_text(attrs.get("prompt"))
        message = prompt if prompt else (
            f"user prompt ({attrs.get('prompt_length', '?')} characters; the text is exported "
            "only with OTEL_LOG_USER_PROMPTS=1)")
    elif event == "api_error":
        level = "ERROR" if record.level in ("DEBUG", "INFO") else record.level
        message = f"API error: {attrs.get('error') or attrs.get('status_code') or 'unknown'}"
    else:
        message = record.message or record.event or "event"
    rows.agent_logs.append({
        "id": record.key, "agent_id": agent_id, "log_level": level, "log_type": event or "event",
        "message": clean_text(message, MAX_MESSAGE_CHARS), "details": details or None,
        "created_at": when})


def _api_request(rows: _Rows, record: Record, agent_id: str, model: str | None,
                 when: datetime) -> None:
    attrs = record.attrs
    cache_read = as_int(attrs.get("cache_read_tokens")) or 0
    cache_write = as_int(attrs.get("cache_creation_tokens")) or 0
    # Anthropic counts cache reads and writes apart from input_tokens; the GenAI conventions
    # (and this database) include them in the input.
    tokens_input = (as_int(attrs.get("input_tokens")) or 0) + cache_read + cache_write
    tokens_output = as_int(attrs.get("output_tokens")) or 0
    cost = as_float(attrs.get("cost_usd"))
    if cost is None:
        cost = pricing.price(model, tokens_input, tokens_output, provider="anthropic",
                             cache_read=cache_read, cache_write=cache_write, when=when) or 0.0
    duration = as_float(attrs.get("duration_ms"))
    started = when
    if duration is not None:
        try:
            from_start = when.timestamp() - duration / 1000
            started = datetime.fromtimestamp(from_start, when.tzinfo)
        except (OverflowError, OSError, ValueError):
            started = when
    prompt_id = as_text(attrs.get("prompt.id"))
    content = "Claude Code API request" + (f" (prompt {prompt_id})" if prompt_id else "")
    rows.prompts.append({
        "id": record.key, "agent_id": agent_id, "content": clean_text(content, MAX_CONTENT_CHARS),
        "response": None, "model": model,
        "status": "completed", "tokens_input": min(tokens_input, 10**12),
        "tokens_output": min(tokens_output, 10**12), "cost_usd": min(cost, 1e9),
        "created_at": started, "completed_at": when, "trace_id": None, "span_id": None})


def _event_time(record: Record) -> datetime | None:
    """The event's own time (``event.timestamp``), else the record's: a time that cannot be
    stored must not refuse the session's other events."""
    text = record.attrs.get("event.timestamp")
    if isinstance(text, str):
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if value.tzinfo is None:
                return record.time
            return storable_ts(value)
        except ValueError:  # TimeRangeError too
            return record.time
    return record.time


__all__ = ["Record", "ingest_records", "level_of", "records"]
