"""From spans to rows (design §11): the mapping itself, with no database in sight.

Every span becomes exactly one primary record — an agent run, a prompt, or an agent log (a tool
call, or any other span at DEBUG) — plus, for agent and LLM spans that carry events, one agent
log of those events. So ``(trace_id, span_id)`` is unique in each table, and a span's records are
found again by its ids.

Each span also gets a link (``otlp_spans``): its parent and the agent run that holds its records
— itself for an agent span, else the nearest enclosing agent span, else the trace's implicit
agent (named after ``service.name``). A span whose parent has not arrived yet is an *orphan*,
held by the implicit agent until the parent comes; ``Plan.adopted`` then says which orphans the
new spans are parents of, and under which agent run they belong (``traces.py`` moves them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import pricing
from ..models import MAX_CONTENT_CHARS, MAX_MESSAGE_CHARS, MAX_NAME_CHARS, MAX_SHORT_CHARS, clean_text
from .spans import (
    SpanView,
    agent_name,
    content_of,
    model_of,
    provider_of,
    response_of,
    session_of,
    timing,
    tool_details,
    usage_of,
)
from .values import MAX_ATTRIBUTE_CHARS, as_text, clean_value, stable_id

# Other spans' attributes go into their DEBUG log; long values there are cut shorter than a
# tool's arguments and result, which are what a reader of a tool call wants to see.
MAX_SPAN_ATTRIBUTE_CHARS = 4_096


@dataclass(frozen=True, slots=True)
class Link:
    """One ``otlp_spans`` row."""

    span_id: str
    trace_id: str
    parent_span_id: str | None
    agent_id: str
    is_agent: bool
    orphan: bool


@dataclass(frozen=True, slots=True)
class Orchestrator:
    """An orchestrator agent a span needs (created when new)."""

    name: str
    description: str | None = None
    default_model: str | None = None


@dataclass
class Plan:
    """The rows one batch of spans becomes, and the links it resolves."""

    implicit: dict[str, dict[str, Any]] = field(default_factory=dict)  # trace -> agent row
    agents: list[dict[str, Any]] = field(default_factory=list)  # parents before children
    prompts: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    # Orphans already stored whose parent is in this batch, with the agent run above them now.
    adopted: list[tuple[Link, str | None]] = field(default_factory=list)
    # Each row's orchestrator agent, by row id (agent rows carry it until it is resolved).
    orchestrators: dict[str, Orchestrator] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)  # trace -> session of this batch
    spans_of_row: dict[str, tuple[str, str]] = field(default_factory=dict)  # row id -> span
    now: datetime | None = None  # the time of ingest: rows of spans without times get it


def implicit_agent_id(trace_id: str) -> str:
    """The id of a trace's implicit agent (the same in every process, every time)."""
    return stable_id(b"implicit\0" + trace_id.encode(), None)


def _ordered(spans: list[SpanView]) -> list[SpanView]:
    """The spans of one trace with every parent before its children."""
    by_id = {s.span_id: s for s in spans}
    children: dict[str | None, list[SpanView]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in by_id else None
        children.setdefault(parent, []).append(span)
    out: list[SpanView] = []
    seen: set[str] = set()
    stack = list(reversed(children.get(None, [])))
    while stack:
        span = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        out.append(span)
        stack.extend(reversed(children.get(span.span_id, [])))
    # A cycle of parents (a broken exporter) has no root: take its spans as they came.
    out.extend(s for s in spans if s.span_id not in seen)
    return out


def make_plan(spans: list[SpanView], known: Mapping[tuple[str, str], Link],
              orphans: list[Link], stored_sessions: Mapping[str, str], now: datetime) -> Plan:
    """Map new spans to rows.

    Args:
        spans: spans not stored yet, each once.
        known: stored links of the spans' parents, by (trace_id, span_id).
        orphans: stored orphans whose parent is among ``spans``.
        stored_sessions: the session already given to each trace's agents, if any.
        now: the time of ingest (``updated_at``).
    """
    plan = Plan(now=now)
    by_trace: dict[str, list[SpanView]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    ancestors: dict[tuple[str, str], str | None] = {}
    for trace_id, trace_spans in by_trace.items():
        session = next((s for s in map(session_of, trace_spans) if s), None)
        session = clean_text(session or stored_sessions.get(trace_id) or trace_id, MAX_NAME_CHARS)
        plan.sessions[trace_id] = session
        implicit = implicit_agent_id(trace_id)
        for span in _ordered(trace_spans):
            parent = span.parent_span_id
            orphan = False
            ancestor: str | None = None
            if parent is not None:
                if (trace_id, parent) in ancestors:
                    ancestor = ancestors[(trace_id, parent)]
                elif (link := known.get((trace_id, parent))) is not None:
                    ancestor = None if link.agent_id == implicit else link.agent_id
                else:
                    orphan = True
            if span.kind == "agent":
                holder = _agent(plan, span, session, ancestor, now)
                ancestors[(trace_id, span.span_id)] = holder
            else:
                ancestors[(trace_id, span.span_id)] = ancestor
                holder = ancestor or implicit
                if holder == implicit:
                    _implicit(plan, span, session, implicit, now)
                _record(plan, span, holder)
            if span.events and span.kind in ("agent", "llm"):
                _events_log(plan, span, holder)
            plan.links.append(Link(span.span_id, trace_id, parent, holder,
                                   span.kind == "agent", orphan))
    for link in orphans:
        plan.adopted.append((link, ancestors.get((link.trace_id, link.parent_span_id or ""))))
    _models_from_calls(plan, spans)
    return plan


def _agent(plan: Plan, span: SpanView, session: str, parent: str | None, now: datetime) -> str:
    agent_id = stable_id(b"agent\0" + span.trace_id.encode() + span.span_id.encode(), span.start)
    name = clean_text(agent_name(span), MAX_NAME_CHARS)
    model = model_of(span.attrs)
    plan.orchestrators[agent_id] = Orchestrator(
        name, _short(as_text(span.attrs.get("gen_ai.agent.description"))), _short(model))
    metadata = {k: v for k, v in {
        "span_name": span.name, "service": span.service, "scope": span.scope or None,
        "gen_ai.agent.id": as_text(span.attrs.get("gen_ai.agent.id")),
    }.items() if v}
    own_session = session_of(span)
    plan.agents.append({
        "id": agent_id,
        "session_id": clean_text(own_session, MAX_NAME_CHARS) if own_session else session,
        "name": _short(name), "model": _short(model),
        "status": "failed" if span.error else "completed", "metadata": clean_value(metadata),
        "created_at": span.start or now, "updated_at": now, "started_at": span.start,
        "completed_at": span.end, "parent_agent_id": parent, "trace_id": span.trace_id,
        "span_id": span.span_id,
    })
    plan.spans_of_row[agent_id] = (span.trace_id, span.span_id)
    return agent_id


def _implicit(plan: Plan, span: SpanView, session: str, agent_id: str, now: datetime) -> None:
    row = plan.implicit.get(span.trace_id)
    start, end = span.start or now, span.end or span.start or now
    if row is None:
        service = clean_text(span.service, MAX_NAME_CHARS)
        plan.orchestrators[agent_id] = Orchestrator(service)
        plan.implicit[span.trace_id] = {
            "id": agent_id, "session_id": session, "name": _short(service), "model": None,
            "status": "completed", "metadata": {"implicit": True, "service": service},
            "created_at": start, "updated_at": now, "started_at": start, "completed_at": end,
            "parent_agent_id": None, "trace_id": span.trace_id, "span_id": None,
        }
        return
    row["created_at"] = row["started_at"] = min(row["started_at"], start)
    row["completed_at"] = max(row["completed_at"], end)


def _record(plan: Plan, span: SpanView, holder: str) -> None:
    """The prompt or log a non-agent span becomes."""
    if span.kind == "llm":
        _prompt(plan, span, holder)
        return
    seed = b"log\0" + span.trace_id.encode() + span.span_id.encode()
    failed = span.error or any(e.name == "exception" for e in span.events)
    if span.kind == "tool":
        details = tool_details(span)
        message = f"tool {details['tool']}"
        if failed:
            message += f" failed: {span.status_message}" if span.status_message else " failed"
        level, log_type = ("ERROR" if failed else "INFO"), "tool_call"
    else:
        attrs = clean_value(span.attrs, MAX_SPAN_ATTRIBUTE_CHARS)  # shorter than the default
        details = {"span": span.name, "attributes": attrs} | timing(span)
        message, level, log_type = span.name or "span", ("ERROR" if failed else "DEBUG"), "span"
    if span.events:
        details["events"] = [_event(e) for e in span.events]
    _log(plan, span, holder, seed, level, log_type, message, details, span.start)


def _prompt(plan: Plan, span: SpanView, holder: str) -> None:
    attrs = span.attrs
    model = model_of(attrs)
    usage = usage_of(attrs)
    cost = usage.cost
    if cost is None:
        cost = pricing.price(model, usage.tokens_input, usage.tokens_output,
                             provider=provider_of(span), cache_read=usage.cache_read,
                             cache_write=usage.cache_write, when=span.start) or 0.0
    prompt_id = stable_id(b"prompt\0" + span.trace_id.encode() + span.span_id.encode(),
                          span.start)
    response = response_of(attrs)
    plan.prompts.append({
        "id": prompt_id, "agent_id": holder,
        "content": clean_text(content_of(attrs) or "", MAX_CONTENT_CHARS),
        "response": clean_text(response, MAX_CONTENT_CHARS) if response is not None else None,
        "model": _short(model), "status": "failed" if span.error else "completed",
        "tokens_input": min(usage.tokens_input, 10**12),
        "tokens_output": min(usage.tokens_output, 10**12), "cost_usd": min(cost, 1e9),
        "created_at": span.start or plan.now, "completed_at": span.end,
        "trace_id": span.trace_id, "span_id": span.span_id,
    })
    plan.spans_of_row[prompt_id] = (span.trace_id, span.span_id)


def _events_log(plan: Plan, span: SpanView, holder: str) -> None:
    """One agent log for the events of an agent or LLM span (exceptions make it an ERROR)."""
    exceptions = [e for e in span.events if e.name == "exception"]
    if exceptions:
        first_exc = _event(exceptions[0])
        message = ": ".join(str(x) for x in (first_exc.get("type"), first_exc.get("message"))
                            if x) or "exception"
        level, log_type = "ERROR", "exception"
    else:
        names = sorted({e.name for e in span.events})
        message, level, log_type = ", ".join(names)[:MAX_SHORT_CHARS], "DEBUG", "event"
    details: dict[str, Any] = {"span": span.name, "events": [_event(e) for e in span.events]}
    if exceptions:
        details["exception"] = _event(exceptions[0])
    seed = b"events\0" + span.trace_id.encode() + span.span_id.encode()
    time = exceptions[0].time if exceptions else span.events[0].time
    _log(plan, span, holder, seed, level, log_type, message, details, time or span.start)


def _event(event: Any) -> dict[str, Any]:
    if event.name == "exception":
        out = {"type": as_text(event.attrs.get("exception.type")),
               "message": as_text(event.attrs.get("exception.message")),
               "stacktrace": as_text(event.attrs.get("exception.stacktrace"))}
        data: dict[str, Any] = {k: v for k, v in out.items() if v is not None}
    else:
        data = {"name": event.name, "attributes": event.attrs}
    if event.time is not None:
        data["time"] = event.time.isoformat()
    return dict(clean_value(data, MAX_ATTRIBUTE_CHARS))


def _log(plan: Plan, span: SpanView, holder: str, seed: bytes, level: str, log_type: str,
         message: str, details: dict[str, Any], when: datetime | None) -> None:
    log_id = stable_id(seed, span.start)
    plan.logs.append({
        "id": log_id, "agent_id": holder, "log_level": level, "log_type": log_type,
        "message": clean_text(message, MAX_MESSAGE_CHARS), "details": clean_value(details),
        "created_at": when or span.start or plan.now, "trace_id": span.trace_id,
        "span_id": span.span_id,
    })
    plan.spans_of_row[log_id] = (span.trace_id, span.span_id)


def _models_from_calls(plan: Plan, spans: list[SpanView]) -> None:
    """An agent span without a model takes the model of its first LLM call in the batch."""
    missing = {row["id"]: row for row in plan.agents if row["model"] is None}
    if not missing:
        return
    for prompt in plan.prompts:
        row = missing.pop(prompt["agent_id"], None)
        if row is not None and prompt["model"]:
            row["model"] = prompt["model"]
            orchestrator = plan.orchestrators[row["id"]]
            if orchestrator.default_model is None:
                plan.orchestrators[row["id"]] = Orchestrator(
                    orchestrator.name, orchestrator.description, prompt["model"])


def _short(text: str | None) -> str | None:
    return clean_text(text, MAX_SHORT_CHARS) if text is not None else None


__all__ = ["Link", "Orchestrator", "Plan", "implicit_agent_id", "make_plan"]
