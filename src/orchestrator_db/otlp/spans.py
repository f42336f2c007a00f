"""Spans as the mapping sees them, and what each attribute convention says about them.

Design §11: the OpenTelemetry GenAI semantic conventions first, then OpenInference, then
OpenLLMetry (Traceloop); the first attribute present wins.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .values import any_value, as_float, as_int, as_text, attributes, first, from_nanos, hex_id

Kind = Literal["agent", "llm", "tool", "other"]
STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR

AGENT_OPERATIONS = frozenset({"invoke_agent", "create_agent"})
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
TOOL_OPERATIONS = frozenset({"execute_tool"})
SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "langfuse.session.id")


@dataclass(slots=True)
class Event:
    """A span event: its name, time and attributes."""

    name: str
    time: datetime | None
    attrs: dict[str, Any]


@dataclass(slots=True)
class SpanView:
    """One span with its resource, decoded once."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    attrs: dict[str, Any]
    resource: dict[str, Any]
    start: datetime | None
    end: datetime | None
    error: bool
    status_message: str
    events: list[Event] = field(default_factory=list)
    scope: str = ""
    kind: Kind = "other"

    @property
    def service(self) -> str:
        """The emitting service's name (``service.name``)."""
        name = self.resource.get("service.name")
        return name if isinstance(name, str) and name.strip() else "unknown_service"


def classify(name: str, attrs: dict[str, Any]) -> Kind:
    """Return what a span is: an agent run, an LLM call, a tool call or anything else."""
    operation = attrs.get("gen_ai.operation.name")
    openinference = attrs.get("openinference.span.kind")
    if isinstance(openinference, str):
        openinference = openinference.upper()
    traceloop = attrs.get("traceloop.span.kind")
    if operation in AGENT_OPERATIONS or openinference == "AGENT" or traceloop == "agent":
        return "agent"
    if (operation in LLM_OPERATIONS or openinference == "LLM"
            or attrs.get("llm.request.type") in ("chat", "completion")):
        return "llm"
    if operation in TOOL_OPERATIONS or openinference == "TOOL" or traceloop == "tool":
        return "tool"
    return "other"


def views(request: Any) -> tuple[list[SpanView], int, str]:
    """Return the spans of an ExportTraceServiceRequest, with how many were unusable and why."""
    out: list[SpanView] = []
    rejected = 0
    reason = ""
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                trace_id, span_id = hex_id(span.trace_id), hex_id(span.span_id)
                if trace_id is None or span_id is None or len(trace_id) != 32 \
                        or len(span_id) != 16:
                    rejected += 1
                    reason = "spans need a 16-byte trace_id and an 8-byte span_id"
                    continue
                parent = hex_id(span.parent_span_id)
                attrs = attributes(span.attributes)
                events = [Event(e.name, from_nanos(e.time_unix_nano), attributes(e.attributes))
                          for e in span.events]
                view = SpanView(
                    trace_id, span_id, parent if parent and len(parent) == 16 else None,
                    span.name, attrs, resource, from_nanos(span.start_time_unix_nano),
                    from_nanos(span.end_time_unix_nano), span.status.code == STATUS_ERROR,
                    span.status.message, events, scope, classify(span.name, attrs))
                out.append(view)
    return out, rejected, reason


# What the conventions say ---------------------------------------------------------------------
def session_of(span: SpanView) -> str | None:
    """The session a span names (its own attributes, then its resource's), if any."""
    value = first(span.attrs, *SESSION_KEYS) or first(span.resource, *SESSION_KEYS)
    return as_text(value)


def agent_name(span: SpanView) -> str:
    """The orchestrator agent an agent span runs."""
    value = first(span.attrs, "gen_ai.agent.name", "agent.name")
    if value is None and span.name.startswith("invoke_agent "):
        value = span.name[len("invoke_agent "):]
    if value is None:
        value = first(span.attrs, "traceloop.entity.name")
    return as_text(value) or span.name or span.service


def model_of(attrs: dict[str, Any]) -> str | None:
    """The model a call used (the response's, else the request's)."""
    return as_text(first(attrs, "gen_ai.response.model", "gen_ai.request.model",
                         "llm.model_name", "llm.response.model", "llm.request.model"))


def provider_of(span: SpanView) -> str | None:
    """The LLM provider (``gen_ai.provider.name``, the older ``gen_ai.system``, ...)."""
    return as_text(first(span.attrs, "gen_ai.provider.name", "gen_ai.system", "llm.provider",
                         "llm.system"))


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts and the cost a span reports (None: not reported)."""

    tokens_input: int
    tokens_output: int
    cache_read: int
    cache_write: int
    cost: float | None


_INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                 "llm.token_count.prompt", "llm.usage.prompt_tokens")
_OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                  "llm.token_count.completion", "llm.usage.completion_tokens")
_CACHE_READ = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
               "llm.token_count.prompt_details.cache_read")
_CACHE_WRITE = ("gen_ai.usage.cache_creation.input_tokens",
                "gen_ai.usage.cache_creation_input_tokens",
                "llm.token_count.prompt_details.cache_write")


def usage_of(attrs: dict[str, Any]) -> Usage:
    """The tokens (input including cache reads/writes) and cost an LLM span reports."""
    def count(keys: tuple[str, ...]) -> int:
        value = attrs.get(keys[0])  # the GenAI name: the usual case, one lookup
        if type(value) is int and value >= 0:
            return value
        return as_int(first(attrs, *keys)) or 0

    return Usage(count(_INPUT_TOKENS), count(_OUTPUT_TOKENS), count(_CACHE_READ),
                 count(_CACHE_WRITE),
                 as_float(first(attrs, "gen_ai.usage.cost", "llm.cost.total")))


_INDEXED = re.compile(r"(\d+)\.(.+)")


def _messages(attrs: dict[str, Any], prefix: str) -> str | None:
    """Rebuild flattened messages (``llm.input_messages.0.message.role`` ...) as JSON text."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        match = _INDEXED.fullmatch(key[len(prefix):])
        if match is None:
            continue
        name = match.group(2).removeprefix("message.")
        found.setdefault(int(match.group(1)), {})[name] = value
    if not found:
        return None
    return json.dumps([found[i] for i in sorted(found)], ensure_ascii=False)


def content_of(attrs: dict[str, Any]) -> str | None:
    """What was sent to the model, as the JSON text the span carries."""
    messages = as_text(attrs.get("gen_ai.input.messages"))
    system = as_text(attrs.get("gen_ai.system_instructions"))
    if messages is not None or system is not None:
        return _with_system(messages, system)
    return (as_text(attrs.get("input.value"))
            or _messages(attrs, "llm.input_messages.")
            or as_text(attrs.get("traceloop.entity.input"))
            or _messages(attrs, "gen_ai.prompt."))


def _with_system(messages: str | None, system: str | None) -> str:
    if system is None:
        return messages or ""
    if messages is None:
        return system
    try:
        parsed_messages, parsed_system = json.loads(messages), json.loads(system)
    except ValueError:
        return f"{system}\n{messages}"
    if not isinstance(parsed_messages, list):
        return f"{system}\n{messages}"
    parts = parsed_system if isinstance(parsed_system, list) else [parsed_system]
    return json.dumps([{"role": "system", "parts": parts}, *parsed_messages], ensure_ascii=False)


def response_of(attrs: dict[str, Any]) -> str | None:
    """What the model answered, as the JSON text the span carries."""
    return (as_text(attrs.get("gen_ai.output.messages"))
            or as_text(attrs.get("output.value"))
            or _messages(attrs, "llm.output_messages.")
            or as_text(attrs.get("traceloop.entity.output"))
            or _messages(attrs, "gen_ai.completion."))


def tool_details(span: SpanView) -> dict[str, Any]:
    """A tool call's name, call id, arguments, result, duration and status."""
    attrs = span.attrs
    details: dict[str, Any] = {
        "tool": as_text(first(attrs, "gen_ai.tool.name", "tool.name", "traceloop.entity.name"))
        or span.name,
        "call_id": as_text(first(attrs, "gen_ai.tool.call.id", "tool_call.id", "tool.call_id")),
        "arguments": first(attrs, "gen_ai.tool.call.arguments", "tool.parameters",
                           "input.value", "traceloop.entity.input"),
        "result": first(attrs, "gen_ai.tool.call.result", "output.value",
                        "traceloop.entity.output"),
    }
    return {k: v for k, v in details.items() if v is not None} | timing(span)


def timing(span: SpanView) -> dict[str, Any]:
    """A span's duration and status, for a log's details."""
    out: dict[str, Any] = {"status": "error" if span.error else "ok"}
    if span.start is not None and span.end is not None:
        out["duration_ms"] = round((span.end - span.start).total_seconds() * 1000, 3)
    if span.status_message:
        out["status_message"] = span.status_message
    return out


__all__ = ["Event", "Kind", "SpanView", "Usage", "agent_name", "any_value", "classify",
           "content_of", "model_of", "provider_of", "response_of", "session_of", "timing",
           "tool_details", "usage_of", "views"]
