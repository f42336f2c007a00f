"""Design §11: GenAI, OpenInference and OpenLLMetry spans become agents, prompts and logs."""

from __future__ import annotations

import json

import httpx
import pytest
from otlphelpers import (
    CHAT,
    NOW,
    agent_attrs,
    new_span,
    new_trace,
    partial_success,
    send,
    span,
    tool_attrs,
    traces,
)

from orchestrator_db import DatabaseManager
from orchestrator_db.otlp.plan import implicit_agent_id


async def _ingest(client: httpx.AsyncClient, *spans: object, **kwargs: object) -> None:
    assert partial_success(await send(client, traces(list(spans), **kwargs))) == (0, "")


async def test_genai_agent_with_chat_and_tool(client: httpx.AsyncClient,
                                              manager: DatabaseManager) -> None:
    trace, agent, chat, tool = new_trace(), new_span(), new_span(), new_span()
    await _ingest(
        client,
        span(trace, agent, "invoke_agent planner", start=NOW, duration_ms=3000, attrs=agent_attrs(
            "planner", **{"gen_ai.conversation.id": "conv-42",
                          "gen_ai.agent.description": "Plans the work",
                          "gen_ai.request.model": "gpt-4o"})),
        span(trace, chat, "chat gpt-4o", parent=agent, start=NOW + 10**6, duration_ms=1500,
             attrs={**CHAT, "gen_ai.system_instructions": json.dumps(
                 [{"type": "text", "content": "be brief"}])}),
        span(trace, tool, "execute_tool search", parent=agent, start=NOW + 2 * 10**6,
             attrs=tool_attrs("search", **{"gen_ai.tool.call.id": "call_1",
                                           "gen_ai.tool.call.arguments": '{"q": "otel"}',
                                           "gen_ai.tool.call.result": "3 hits"})),
    )
    [run] = await manager.list_agents(session_id="conv-42")
    assert run["name"] == "planner" and run["model"] == "gpt-4o"
    assert run["status"] == "completed" and run["parent_agent_id"] is None
    assert (run["trace_id"], run["span_id"]) == (trace.hex(), agent.hex())
    assert run["started_at"] < run["completed_at"]
    oa = await manager.get_orchestrator_agent(run["orchestrator_agent_id"])
    assert oa is not None and oa["name"] == "planner"
    assert oa["description"] == "Plans the work"

    [prompt] = await manager.list_prompts(agent_id=run["id"])
    assert prompt["model"] == "gpt-4o" and prompt["status"] == "completed"
    assert (prompt["tokens_input"], prompt["tokens_output"]) == (1000, 200)
    assert prompt["cost_usd"] == pytest.approx(1000 * 2.5e-6 + 200 * 10e-6)
    content = json.loads(prompt["content"])
    assert content[0] == {"role": "system", "parts": [{"type": "text", "content": "be brief"}]}
    assert content[1]["parts"][0]["content"] == "Plan the feature"
    assert json.loads(prompt["response"])[0]["role"] == "assistant"
    assert (prompt["trace_id"], prompt["span_id"]) == (trace.hex(), chat.hex())

    [log] = await manager.list_agent_logs(run["id"])
    assert (log["log_type"], log["log_level"], log["message"]) == ("tool_call", "INFO",
                                                                   "tool search")
    assert log["details"]["tool"] == "search" and log["details"]["call_id"] == "call_1"
    assert log["details"]["arguments"] == '{"q": "otel"}'
    assert log["details"]["result"] == "3 hits"
    assert log["details"]["duration_ms"] == pytest.approx(100.0)
    assert log["span_id"] == tool.hex()


async def test_failures_and_exception_events(client: httpx.AsyncClient,
                                             manager: DatabaseManager) -> None:
    trace, agent, chat, tool = new_trace(), new_span(), new_span(), new_span()
    exc = ("exception", {"exception.type": "ValueError", "exception.message": "bad input",
                         "exception.stacktrace": "Traceback ...\nValueError: bad input"})
    await _ingest(
        client,
        span(trace, agent, "invoke_agent builder", attrs=agent_attrs("builder"), error="boom",
             events=[exc]),
        span(trace, chat, "chat", parent=agent, attrs=CHAT, error="rate limited"),
        span(trace, tool, "execute_tool run", parent=agent, attrs=tool_attrs("run"),
             error="exit 1", events=[exc]),
    )
    [run] = await manager.list_agents(session_id=trace.hex())
    assert run["status"] == "failed"
    [prompt] = await manager.list_prompts(agent_id=run["id"])
    assert prompt["status"] == "failed"
    logs = {log["log_type"]: log for log in await manager.list_agent_logs(run["id"])}
    assert logs["exception"]["log_level"] == "ERROR"
    assert logs["exception"]["message"] == "ValueError: bad input"
    assert logs["exception"]["details"]["exception"]["stacktrace"].startswith("Traceback")
    assert logs["tool_call"]["log_level"] == "ERROR"
    assert logs["tool_call"]["message"] == "tool run failed: exit 1"
    assert logs["tool_call"]["details"]["events"][0]["type"] == "ValueError"


async def test_spans_outside_agents_belong_to_an_implicit_agent(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    trace, root, chat, step = new_trace(), new_span(), new_span(), new_span()
    await _ingest(
        client,
        span(trace, root, "handle request", attrs={"http.route": "/ask"}),
        span(trace, chat, "chat", parent=root, attrs=CHAT),
        span(trace, step, "retrieve", parent=root, attrs={"session.id": "s-7"}),
        service="rag-api",
    )
    [run] = await manager.list_agents(session_id="s-7")
    assert run["id"] == implicit_agent_id(trace.hex())
    assert run["name"] == "rag-api" and run["span_id"] is None
    assert run["trace_id"] == trace.hex()
    oa = await manager.get_orchestrator_agent(run["orchestrator_agent_id"])
    assert oa is not None and oa["name"] == "rag-api"
    assert len(await manager.list_prompts(agent_id=run["id"])) == 1
    logs = await manager.list_agent_logs(run["id"])
    assert {(log["log_type"], log["log_level"], log["message"]) for log in logs} == {
        ("span", "DEBUG", "handle request"), ("span", "DEBUG", "retrieve")}
    assert next(x for x in logs if x["message"] == "handle request")["details"][
        "attributes"] == {"http.route": "/ask"}


@pytest.mark.parametrize(("attrs", "expected"), [
    ({"gen_ai.conversation.id": "a", "session.id": "b", "langfuse.session.id": "c"}, "a"),
    ({"session.id": "b", "langfuse.session.id": "c"}, "b"),
    ({"langfuse.session.id": "c"}, "c"),
    ({}, None),
])
async def test_session_precedence(client: httpx.AsyncClient, manager: DatabaseManager,
                                  attrs: dict[str, str], expected: str | None) -> None:
    trace = new_trace()
    await _ingest(client, span(trace, new_span(), "invoke_agent x",
                               attrs=agent_attrs("x", **attrs)))
    [run] = await manager.list_agents(orchestrator_agent_id=(
        await manager.get_orchestrator_agent_by_name("x"))["id"])  # type: ignore[index]
    assert run["session_id"] == (expected or trace.hex())


async def test_nested_agents_get_parent_agent_id(client: httpx.AsyncClient,
                                                 manager: DatabaseManager) -> None:
    trace, top, step, sub, chat = new_trace(), new_span(), new_span(), new_span(), new_span()
    await _ingest(
        client,
        span(trace, top, "invoke_agent orchestrator", attrs=agent_attrs("orchestrator")),
        span(trace, step, "handoff", parent=top),
        span(trace, sub, "invoke_agent researcher", parent=step, attrs=agent_attrs("researcher")),
        span(trace, chat, "chat", parent=sub, attrs=CHAT),
    )
    agents = {a["name"]: a for a in await manager.list_agents(session_id=trace.hex())}
    assert agents["researcher"]["parent_agent_id"] == agents["orchestrator"]["id"]
    assert agents["orchestrator"]["parent_agent_id"] is None
    assert [a["id"] for a in await manager.list_agents(
        parent_agent_id=agents["orchestrator"]["id"])] == [agents["researcher"]["id"]]
    assert len(await manager.list_prompts(agent_id=agents["researcher"]["id"])) == 1
    [handoff] = await manager.list_agent_logs(agents["orchestrator"]["id"])
    assert handoff["message"] == "handoff"


async def test_openinference_attributes(client: httpx.AsyncClient,
                                        manager: DatabaseManager) -> None:
    trace, agent, llm, tool = new_trace(), new_span(), new_span(), new_span()
    await _ingest(
        client,
        span(trace, agent, "Agent", attrs={"openinference.span.kind": "AGENT",
                                           "agent.name": "triage", "session.id": "oi-1"}),
        span(trace, llm, "ChatCompletion", parent=agent, attrs={
            "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
            "llm.provider": "openai",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "You triage.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "Help!",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "On it.",
            "llm.token_count.prompt": 40, "llm.token_count.completion": 5,
            "llm.cost.total": 0.125}),
        span(trace, tool, "lookup", parent=agent, attrs={
            "openinference.span.kind": "TOOL", "tool.name": "lookup",
            "input.value": '{"id": 7}', "output.value": "found"}),
    )
    [run] = await manager.list_agents(session_id="oi-1")
    assert run["name"] == "triage" and run["model"] == "gpt-4o-mini"
    [prompt] = await manager.list_prompts(agent_id=run["id"])
    assert json.loads(prompt["content"]) == [{"role": "system", "content": "You triage."},
                                             {"role": "user", "content": "Help!"}]
    assert json.loads(prompt["response"]) == [{"role": "assistant", "content": "On it."}]
    assert (prompt["tokens_input"], prompt["tokens_output"]) == (40, 5)
    assert prompt["cost_usd"] == 0.125  # the span's own cost wins over the price table
    [log] = await manager.list_agent_logs(run["id"])
    assert log["details"]["tool"] == "lookup" and log["details"]["arguments"] == '{"id": 7}'
    assert log["details"]["result"] == "found"


async def test_openinference_input_value_is_the_content(client: httpx.AsyncClient,
                                                        manager: DatabaseManager) -> None:
    trace = new_trace()
    await _ingest(client, span(trace, new_span(), "llm", attrs={
        "openinference.span.kind": "LLM", "input.value": '{"messages": ["hi"]}',
        "output.value": "hello", "llm.model_name": "no-such-model-xyz"}))
    [prompt] = await manager.list_prompts(session_id=trace.hex())
    assert (prompt["content"], prompt["response"]) == ('{"messages": ["hi"]}', "hello")
    assert prompt["cost_usd"] == 0.0  # an unknown model is never guessed


async def test_openllmetry_attributes(client: httpx.AsyncClient,
                                      manager: DatabaseManager) -> None:
    trace, workflow, agent, llm, tool = (new_trace(), new_span(), new_span(), new_span(),
                                         new_span())
    await _ingest(
        client,
        span(trace, workflow, "joke_workflow.workflow", attrs={
            "traceloop.span.kind": "workflow", "traceloop.entity.name": "joke_workflow"}),
        span(trace, agent, "joke_agent.agent", parent=workflow, attrs={
            "traceloop.span.kind": "agent", "traceloop.entity.name": "joke_agent"}),
        span(trace, llm, "openai.chat", parent=agent, attrs={
            "llm.request.type": "chat", "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Tell a joke",
            "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "Knock knock",
            "gen_ai.usage.prompt_tokens": 12, "gen_ai.usage.completion_tokens": 7}),
        span(trace, tool, "pun_tool.tool", parent=agent, attrs={
            "traceloop.span.kind": "tool", "traceloop.entity.name": "pun_tool",
            "traceloop.entity.input": '{"topic": "otel"}',
            "traceloop.entity.output": '"a pun"'}),
        service="joke-service",
    )
    agents = await manager.list_agents(session_id=trace.hex())
    by_name = {a["name"]: a for a in agents}
    run = by_name["joke_agent"]
    assert run["model"] == "gpt-4o-mini-2024-07-18"  # the agent span had none: its call's
    [prompt] = await manager.list_prompts(agent_id=run["id"])
    assert json.loads(prompt["content"]) == [{"role": "user", "content": "Tell a joke"}]
    assert json.loads(prompt["response"]) == [{"role": "assistant", "content": "Knock knock"}]
    assert (prompt["tokens_input"], prompt["tokens_output"]) == (12, 7)
    assert prompt["cost_usd"] == pytest.approx(12 * 0.15e-6 + 7 * 0.6e-6)
    [tool_log] = await manager.list_agent_logs(run["id"])
    assert tool_log["details"]["tool"] == "pun_tool"
    assert tool_log["details"]["arguments"] == '{"topic": "otel"}'
    # The workflow span sits outside any agent: the trace's implicit agent holds it.
    assert by_name["joke-service"]["id"] == implicit_agent_id(trace.hex())


async def test_cost_with_cache_tokens_and_explicit_cost(client: httpx.AsyncClient,
                                                        manager: DatabaseManager) -> None:
    trace, a, b = new_trace(), new_span(), new_span()
    cached = {**CHAT, "gen_ai.usage.input_tokens": 1000,
              "gen_ai.usage.cache_read.input_tokens": 600,
              "gen_ai.usage.cache_creation.input_tokens": 0}
    await _ingest(client, span(trace, a, "chat", attrs=cached, start=NOW),
                  span(trace, b, "chat", attrs={**CHAT, "gen_ai.usage.cost": 1.5},
                       start=NOW + 1000))
    first, second = await manager.list_prompts(session_id=trace.hex())
    assert first["cost_usd"] == pytest.approx(400 * 2.5e-6 + 600 * 1.25e-6 + 200 * 10e-6)
    assert second["cost_usd"] == 1.5


async def test_hostile_text_is_cleaned_not_refused(client: httpx.AsyncClient,
                                                   manager: DatabaseManager) -> None:
    trace = new_trace()
    await _ingest(client, span(trace, new_span(), "invoke_agent a\x00b", attrs=agent_attrs(
        "n" * 500, **{"session.id": "s\x00" + "x" * 400}), events=[
            ("exception", {"exception.message": "\x00" * 5})]))
    [run] = await manager.list_agents(session_id=("s\\x00" + "x" * 400)[:180] + "… [truncated]")
    assert len(run["name"]) <= 1000
    oa = await manager.get_orchestrator_agent(run["orchestrator_agent_id"])
    assert oa is not None and len(oa["name"]) <= 200
