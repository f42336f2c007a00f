"""OTLP log records as real emitters send them at the edges: retries after the span arrived,
repeats, events without a time, Claude Code sessions over several batches, unusable values."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from otlphelpers import (
    NOW,
    agent_attrs,
    log,
    logs,
    new_span,
    new_trace,
    partial_success,
    send,
    span,
    traces,
)

from orchestrator_db import DatabaseManager
from orchestrator_db.otlp import logs as otlp_logs
from orchestrator_db.otlp.logs import Record

SESSION = "cc-edge-session"


async def _ok(client: httpx.AsyncClient, request: object, **kwargs: object) -> None:
    assert partial_success(await send(client, request, **kwargs), "logs") == (0, "")


def _claude(event: str, at: int, **attrs: object) -> object:
    return log(f"claude_code.{event}", at=at,
               attrs={"event.name": event, "session.id": SESSION, **attrs})


async def test_a_record_retried_after_its_span_arrived_is_stored_once(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    trace, agent = new_trace(), new_span()
    request = logs([log("waiting for the span", trace=trace, span_id=agent)])
    await _ok(client, request)  # its span is unknown: a system log
    assert partial_success(await send(client, traces([
        span(trace, agent, "invoke_agent a", attrs=agent_attrs("a"))]))) == (0, "")
    await _ok(client, request)  # the exporter's retry (the first answer came too late)
    [run] = await manager.list_agents(session_id=trace.hex())
    held = [x["message"] for x in await manager.list_agent_logs(run["id"], log_type="log")]
    kept = [x["message"] for x in await manager.list_system_logs()]
    assert (held, kept) == ([], ["waiting for the span"])
    [system_log] = await manager.list_system_logs()  # it can still be found by its trace
    assert (system_log["details"]["trace_id"], system_log["details"]["span_id"]) == (
        trace.hex(), agent.hex())


async def test_identical_records_in_one_request_are_each_kept(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    # An emitter with a millisecond clock logs the same line twice in one millisecond.
    request = logs([log("retrying", at=NOW), log("retrying", at=NOW), log("done", at=NOW)])
    await _ok(client, request)
    await _ok(client, request)  # a retry of the whole request still adds nothing
    assert sorted(r["message"] for r in await manager.list_system_logs()) == [
        "done", "retrying", "retrying"]


async def test_records_without_any_time_are_not_taken_for_retries(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    timeless = log("upstream connection lost", severity=17)
    timeless.time_unix_nano = 0
    for _ in range(3):
        await _ok(client, logs([timeless]))
    await _ok(client, logs([timeless, timeless]))
    rows = await manager.list_system_logs()
    assert [r["message"] for r in rows] == ["upstream connection lost"] * 5
    assert {r["log_level"] for r in rows} == {"ERROR"}


async def test_an_event_name_is_kept_beside_its_body(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    question, answer = log({"content": "What is 2+2?"}), log({"content": "4"}, at=NOW + 1)
    question.event_name, answer.event_name = "gen_ai.user.message", "gen_ai.choice"
    await _ok(client, logs([question, answer]))
    rows = await manager.list_system_logs()
    assert sorted((r["message"], r["details"]) for r in rows) == [
        ('{"content": "4"}', {"event.name": "gen_ai.choice"}),
        ('{"content": "What is 2+2?"}', {"event.name": "gen_ai.user.message"})]


async def test_an_event_in_the_last_instant_is_priced_and_stored(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    # No cost_usd: it is priced at its time, which a float timestamp rounds into the year 10000.
    await _ok(client, logs([
        _claude("api_request", NOW, **{"event.timestamp": "9999-12-31T23:59:59.999999Z",
                                       "model": "claude-sonnet-4-5", "input_tokens": 100,
                                       "output_tokens": 50}),
        _claude("tool_result", NOW + 1, tool_name="Bash")], service="claude-code"))
    [run] = await manager.list_agents(session_id=SESSION)
    [prompt] = await manager.list_prompts(agent_id=run["id"])
    assert prompt["cost_usd"] > 0 and prompt["completed_at"].startswith("20")
    assert [x["log_type"] for x in await manager.list_agent_logs(run["id"])] == ["tool_result"]


async def test_one_unusable_event_refuses_none_of_its_session(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    await _ok(client, logs([_claude("tool_result", NOW, tool_name="Read")],
                           service="claude-code"))
    await _ok(client, logs([
        _claude("tool_result", NOW + 1, tool_name="Edit"),
        _claude("user_prompt", NOW + 2, prompt="hi",
                **{"event.timestamp": "0001-01-01T00:00:00+05:00"}),
        _claude("api_request", NOW + 3, model="m" * 5000, input_tokens=1, cost_usd=0.5),
    ], service="claude-code"))
    [run] = await manager.list_agents(session_id=SESSION)
    stored = await manager.list_agent_logs(run["id"])
    assert sorted(x["log_type"] for x in stored) == ["tool_result", "tool_result", "user_prompt"]
    [prompt] = await manager.list_prompts(agent_id=run["id"])
    assert len(prompt["model"]) <= 1000 and prompt["model"].endswith("m… [truncated]")
    assert prompt["cost_usd"] == 0.5


async def test_a_session_over_several_batches_gets_its_model_and_first_time(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    # Claude Code exports every few seconds: a user_prompt (no model) usually comes alone.
    await _ok(client, logs([_claude("user_prompt", NOW + 5 * 10**9, prompt="go")],
                           service="claude-code"))
    await _ok(client, logs([_claude("api_request", NOW + 10 * 10**9,
                                    model="claude-sonnet-4-5", cost_usd=0.1)],
                           service="claude-code"))
    await _ok(client, logs([_claude("tool_result", NOW, tool_name="Bash")],
                           service="claude-code"))
    await _ok(client, logs([_claude("api_request", NOW + 20 * 10**9, model="another-model",
                                    cost_usd=0.1)], service="claude-code"))
    [run] = await manager.list_agents(session_id=SESSION)
    assert run["model"] == "claude-sonnet-4-5"
    [earliest] = [x for x in await manager.list_agent_logs(run["id"])
                  if x["log_type"] == "tool_result"]
    assert run["started_at"] == run["created_at"] == earliest["created_at"]
    summary = await manager.session_summary(SESSION)
    assert summary is not None and summary["first_activity"] == earliest["created_at"]


async def test_a_request_that_cannot_be_written_fails_alone(
        client: httpx.AsyncClient, manager: DatabaseManager,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Requests queued while the writer is busy are written as one batch: an unexpected error in
    # one of them (here injected for one record) must not fail the others with a 503.
    def rows(batch: list[Record], *args: Any) -> Any:
        if any(r.message == "poison" for r in batch):
            raise RuntimeError("this record cannot be written")
        return original(batch, *args)

    original = otlp_logs._rows
    monkeypatch.setattr(otlp_logs, "_rows", rows)
    requests = [logs([log(f"line {i}" if i != 3 else "poison", at=NOW + i)]) for i in range(8)]
    answers = await asyncio.gather(*(send(client, r) for r in requests))
    assert [a.status_code for a in answers] == [503 if i == 3 else 200 for i in range(8)]
    stored = {r["message"] for r in await manager.list_system_logs(limit=100)}
    assert stored == {f"line {i}" for i in range(8) if i != 3}
