"""The OpenTelemetry SDK's own OTLP/HTTP exporters against a real ``orchestrator-db serve``.

Configured as the README says: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the SDK appends /v1/traces and
/v1/logs), ``OTEL_EXPORTER_OTLP_HEADERS`` for the token, ``OTEL_EXPORTER_OTLP_COMPRESSION``.
Python's SDK has no OTLP/JSON exporter, so JSON is sent as that exporter would: the SDK's own
protobuf encoding of the spans, written as OTLP JSON (hex ids) with protobuf's json_format.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from apihelpers import Server, start_server
from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlphelpers import CHAT, otlp_json, partial_success

TOKEN = "otlp-test-token"


@pytest.fixture
def server(servers: Callable[..., Server], db_url: str) -> Server:
    return servers(db_url, env={"ORCHESTRATOR_API_TOKEN": TOKEN})


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(url: str, **kwargs: Any) -> Server:
        started.append(start_server(url, **kwargs))
        return started[-1]

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def otel_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.http)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{TOKEN}")
    return server


def _api(server: Server, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.http}{path}", params=params,
                         headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
    response.raise_for_status()
    return response.json()


def _run_agent(provider: TracerProvider, session: str) -> None:
    tracer = provider.get_tracer("test.agents")
    with tracer.start_as_current_span("invoke_agent lead", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "lead",
            "gen_ai.conversation.id": session}):
        with tracer.start_as_current_span("chat gpt-4o", attributes=CHAT):
            pass
        with tracer.start_as_current_span("invoke_agent helper", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper"}), \
                tracer.start_as_current_span("execute_tool grep", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "grep"}):
            pass


def _check_session(server: Server, session: str) -> None:
    agents = {a["name"]: a for a in _api(server, "/api/agents", session_id=session)["items"]}
    assert set(agents) == {"lead", "helper"}
    assert agents["helper"]["parent_agent_id"] == agents["lead"]["id"]
    prompts = _api(server, "/api/prompts", agent_id=agents["lead"]["id"])["items"]
    assert [(p["model"], p["tokens_input"], p["tokens_output"]) for p in prompts] == [
        ("gpt-4o", 1000, 200)]
    assert prompts[0]["cost_usd"] > 0
    [tool] = _api(server, "/api/agent-logs", agent_id=agents["helper"]["id"])["items"]
    assert tool["log_type"] == "tool_call" and tool["details"]["tool"] == "grep"
    children = _api(server, "/api/agents", parent_agent_id=agents["lead"]["id"])["items"]
    assert [c["id"] for c in children] == [agents["helper"]["id"]]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_sdk_protobuf_exporter(otel_env: Server, monkeypatch: pytest.MonkeyPatch,
                               compression: str) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-test"}))
    # Batched, as in production: spans leave as they end, children before their parents.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), max_export_batch_size=2,
                                                   schedule_delay_millis=50))
    session = f"sdk-{compression}"
    _run_agent(provider, session)
    assert provider.force_flush(10_000)
    provider.shutdown()
    _check_session(otel_env, session)
    # The exporter's retry of the same spans (an export it thinks failed) stores nothing twice.
    stats = _api(otel_env, "/api/stats")["counts"]
    assert stats["agents"] == 2 and stats["prompts"] == 1 and stats["agent_logs"] == 1


def test_sdk_exporter_without_the_token_is_refused(server: Server) -> None:
    exporter = OTLPSpanExporter(endpoint=f"{server.http}/v1/traces")
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("x"):
        pass
    assert exporter.export(memory.get_finished_spans()).name == "FAILURE"
    assert _api(server, "/api/stats")["counts"]["agent_logs"] == 0
    exporter.shutdown()


def test_otlp_json_from_sdk_spans(server: Server) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "json-test"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _run_agent(provider, "json-session")
    body = otlp_json(encode_spans(memory.get_finished_spans()))
    assert len(json.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]) == 32
    for _ in range(2):  # sent twice: stored once
        response = httpx.post(f"{server.http}/v1/traces", content=body, timeout=10, headers={
            "content-type": "application/json", "authorization": f"Bearer {TOKEN}"})
        assert response.headers["content-type"] == "application/json"
        assert partial_success(response) == (0, "")
    _check_session(server, "json-session")
    assert _api(server, "/api/stats")["counts"]["prompts"] == 1


def test_sdk_log_exporter(otel_env: Server) -> None:
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "log-test"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    logger_provider = LoggerProvider(resource=Resource.create({"service.name": "log-test"}))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter()))
    logger = logger_provider.get_logger("test.logs")
    tracer = tracer_provider.get_tracer("test.logs")
    with tracer.start_as_current_span("invoke_agent worker", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "worker",
            "session.id": "log-session"}) as span:
        context = trace_api.set_span_in_context(span)
    logger.emit(body="outside any span", severity_number=SeverityNumber.WARN,
                attributes={"component": "scheduler"})
    # Emitted after the span has been exported (SimpleSpanProcessor): its id is known.
    logger.emit(body="inside the agent", severity_number=SeverityNumber.ERROR, context=context)
    assert logger_provider.force_flush(10_000)
    logger_provider.shutdown()
    tracer_provider.shutdown()
    deadline = time.monotonic() + 10
    while True:
        system = _api(otel_env, "/api/system-logs", source="log-test")["items"]
        [agent] = _api(otel_env, "/api/agents", session_id="log-session")["items"]
        agent_logs = _api(otel_env, "/api/agent-logs", agent_id=agent["id"], log_type="log")
        if system and agent_logs["items"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(s["log_level"], s["message"], s["details"]["component"]) for s in system] == [
        ("WARNING", "outside any span", "scheduler")]
    assert [(x["log_level"], x["message"]) for x in agent_logs["items"]] == [
        ("ERROR", "inside the agent")]
