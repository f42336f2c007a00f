"""Hand-built OTLP requests (the opentelemetry-proto classes) and the ways to send them."""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
from typing import Any

import httpx
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

PROTOBUF = "application/x-protobuf"
NOW = time.time_ns()


def new_trace() -> bytes:
    return os.urandom(16)


def new_span() -> bytes:
    return os.urandom(8)


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(kv(k, v) for k, v in value.items())
        return out
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    return AnyValue(string_value=str(value))


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def span(trace: bytes, span_id: bytes, name: str, *, parent: bytes | None = None,
         attrs: dict[str, Any] | None = None, start: int | None = None, duration_ms: int = 100,
         error: str | None = None, events: list[tuple[str, dict[str, Any]]] | None = None
         ) -> Span:
    begin = NOW if start is None else start
    out = Span(trace_id=trace, span_id=span_id, parent_span_id=parent or b"", name=name,
               start_time_unix_nano=begin, end_time_unix_nano=begin + duration_ms * 1_000_000)
    out.attributes.extend(kv(k, v) for k, v in (attrs or {}).items())
    if error is not None:
        out.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    for event_name, event_attrs in events or []:
        event = out.events.add(name=event_name, time_unix_nano=begin + 1000)
        event.attributes.extend(kv(k, v) for k, v in event_attrs.items())
    return out


def traces(spans: list[Span], service: str = "test-service",
           resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        kv(k, v) for k, v in {"service.name": service, **(resource or {})}.items())
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def log(body: Any, *, attrs: dict[str, Any] | None = None, severity: int = 9,
        trace: bytes = b"", span_id: bytes = b"", at: int | None = None) -> LogRecord:
    record = LogRecord(time_unix_nano=NOW if at is None else at, severity_number=severity,
                       trace_id=trace, span_id=span_id)
    record.body.CopyFrom(any_value(body))
    record.attributes.extend(kv(k, v) for k, v in (attrs or {}).items())
    return record


def logs(records: list[LogRecord], service: str = "test-service",
         resource: dict[str, Any] | None = None) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(
        kv(k, v) for k, v in {"service.name": service, **(resource or {})}.items())
    resource_logs.scope_logs.add().log_records.extend(records)
    return request


def otlp_json(message: Any) -> bytes:
    """OTLP JSON as the specification writes it: lowerCamelCase, ids as hex, not base64."""
    document = json_format.MessageToDict(message)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(document)
    return json.dumps(document).encode()


async def send(client: httpx.AsyncClient, message: Any, *, as_json: bool = False,
               gzipped: bool = False, headers: dict[str, str] | None = None) -> httpx.Response:
    """POST an export request to /v1/traces or /v1/logs (by its type)."""
    path = "/v1/traces" if isinstance(message, ExportTraceServiceRequest) else "/v1/logs"
    body = otlp_json(message) if as_json else message.SerializeToString()
    all_headers = {"content-type": "application/json" if as_json else PROTOBUF}
    if gzipped:
        body = gzip.compress(body)
        all_headers["content-encoding"] = "gzip"
    all_headers.update(headers or {})
    return await client.post(path, content=body, headers=all_headers)


def partial_success(response: httpx.Response, signal: str = "traces") -> tuple[int, str]:
    """The (rejected count, error message) of an export response, in either encoding."""
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("application/json"):
        partial = response.json().get("partialSuccess", {})
        key = "rejectedSpans" if signal == "traces" else "rejectedLogRecords"
        return int(partial.get(key, 0)), partial.get("errorMessage", "")
    assert response.headers["content-type"] == PROTOBUF
    message = ExportTraceServiceResponse() if signal == "traces" else ExportLogsServiceResponse()
    message.ParseFromString(response.content)
    rejected = (message.partial_success.rejected_spans if signal == "traces"
                else message.partial_success.rejected_log_records)
    return rejected, message.partial_success.error_message


def hexid(raw: bytes) -> str:
    return raw.hex()


CHAT = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 200,
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
            {"type": "text", "content": "Plan the feature"}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "text", "content": "1. ..."}]}])}


def agent_attrs(name: str, **extra: Any) -> dict[str, Any]:
    return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name, **extra}


def tool_attrs(name: str, **extra: Any) -> dict[str, Any]:
    return {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, **extra}
