"""OTLP log records become agent logs or system logs; Claude Code's events, a watchable run."""

from __future__ import annotations

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
from orchestrator_db.otlp.logs import level_of


async def _ok(client: httpx.AsyncClient, request: object, **kwargs: object) -> None:
    assert partial_success(await send(client, request, **kwargs), "logs") == (0, "")


@pytest.mark.parametrize(("number", "text", "level"), [
    (1, "", "DEBUG"), (8, "", "DEBUG"), (9, "", "INFO"), (12, "", "INFO"), (13, "", "WARNING"),
    (16, "", "WARNING"), (17, "", "ERROR"), (20, "", "ERROR"), (21, "", "CRITICAL"),
    (24, "", "CRITICAL"), (0, "", "INFO"), (0, "warn", "WARNING"), (0, "FATAL", "CRITICAL"),
    (0, "error", "ERROR"), (0, "nonsense", "INFO"),
])
def test_severity_to_level(number: int, text: str, level: str) -> None:
    assert level_of(number, text) == level


async def test_records_without_a_known_span_are_system_logs(client: httpx.AsyncClient,
                                                            manager: DatabaseManager) -> None:
    await _ok(client, logs([
        log("disk almost full", severity=13, attrs={"disk": "/dev/sda", "free.pct": 3}),
        log({"structured": ["body"]}, severity=17, trace=new_trace(), span_id=new_span(),
            at=NOW + 1000),
    ], service="billing"))
    rows = await manager.list_system_logs(source="billing")
    assert [(r["log_level"], r["message"]) for r in rows] == [
        ("WARNING", "disk almost full"), ("ERROR", '{"structured": ["body"]}')]
    assert rows[0]["details"] == {"disk": "/dev/sda", "free.pct": 3}


async def test_records_of_a_known_span_are_agent_logs(client: httpx.AsyncClient,
                                                      manager: DatabaseManager) -> None:
    trace, agent, step = new_trace(), new_span(), new_span()
    assert partial_success(await send(client, traces([
        span(trace, agent, "invoke_agent a", attrs=agent_attrs("a")),
        span(trace, step, "step", parent=agent)]))) == (0, "")
    await _ok(client, logs([log("thinking", trace=trace, span_id=step, severity=5),
                            log("done", trace=trace, span_id=agent)]), as_json=True)
    [run] = await manager.list_agents(session_id=trace.hex())
    got = [(x["log_type"], x["log_level"], x["message"])
           for x in await manager.list_agent_logs(run["id"], log_type="log")]
    assert sorted(got) == [("log", "DEBUG", "thinking"), ("log", "INFO", "done")]
    assert await manager.list_system_logs() == []


async def test_log_records_sent_twice_are_stored_once(client: httpx.AsyncClient,
                                                      manager: DatabaseManager) -> None:
    request = logs([log("one", at=NOW), log("two", at=NOW + 1000), log("one", at=NOW + 2000)])
    await _ok(client, request)
    await _ok(client, request, gzipped=True)
    await _ok(client, request, as_json=True)
    assert [r["message"] for r in await manager.list_system_logs()] == ["one", "two", "one"]


def _claude(event: str, attrs: dict[str, object], at: int) -> object:
    # As Claude Code sends them: the body names the event, numbers often arrive as text.
    return log(f"claude_code.{event}", at=at, attrs={
        "event.name": event, "session.id": "cc-session-1", "event.sequence": at - NOW,
        "prompt.id": "p-1", **attrs})


async def test_claude_code_events(client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    resource = {"service.version": "2.1.0"}
    await _ok(client, logs([
        _claude("user_prompt", {"prompt_length": "18", "prompt": "fix the failing test"},
                NOW),
        _claude("api_request", {"model": "claude-sonnet-4-5", "input_tokens": "10",
                                "output_tokens": "250", "cache_read_tokens": "30000",
                                "cache_creation_tokens": "1200", "cost_usd": "0.0179",
                                "duration_ms": "2400"}, NOW + 10**9),
        _claude("tool_decision", {"tool_name": "Bash", "decision": "accept",
                                  "source": "config"}, NOW + 2 * 10**9),
        _claude("tool_result", {"tool_name": "Bash", "success": "false", "duration_ms": "87",
                                "error": "exit 1"}, NOW + 3 * 10**9),
        _claude("api_error", {"model": "claude-sonnet-4-5", "error": "overloaded",
                              "status_code": "529"}, NOW + 4 * 10**9),
        _claude("api_request", {"model": "claude-sonnet-4-5", "input_tokens": 100,
                                "output_tokens": 50}, NOW + 5 * 10**9),
    ], service="claude-code", resource=resource))
    [run] = await manager.list_agents(session_id="cc-session-1")
    assert (run["name"], run["model"], run["status"]) == ("claude-code", "claude-sonnet-4-5",
                                                          "executing")
    first, second = await manager.list_prompts(agent_id=run["id"])
    assert first["status"] == "completed" and first["model"] == "claude-sonnet-4-5"
    assert (first["tokens_input"], first["tokens_output"]) == (10 + 30000 + 1200, 250)
    assert first["cost_usd"] == 0.0179  # Claude Code's own figure
    assert first["created_at"] < first["completed_at"]
    assert second["cost_usd"] == pytest.approx(100 * 3e-6 + 50 * 15e-6)  # priced: none sent
    logs_by_type = {x["log_type"]: x for x in await manager.list_agent_logs(run["id"])}
    assert logs_by_type["user_prompt"]["message"] == "fix the failing test"
    assert logs_by_type["tool_decision"]["message"] == "Bash: accept (config)"
    assert logs_by_type["tool_result"]["log_level"] == "ERROR"
    assert logs_by_type["tool_result"]["message"] == "Bash failed in 87 ms: exit 1"
    assert logs_by_type["api_error"]["log_level"] == "ERROR"
    assert logs_by_type["tool_result"]["details"]["tool_name"] == "Bash"
    summary = await manager.session_summary("cc-session-1")
    assert summary is not None and summary["prompts"] == 2


async def test_claude_code_prompt_text_absent(client: httpx.AsyncClient,
                                              manager: DatabaseManager) -> None:
    await _ok(client, logs([_claude("user_prompt", {"prompt_length": "42"}, NOW)],
                           service="claude-code"))
    [run] = await manager.list_agents(session_id="cc-session-1")
    [entry] = await manager.list_agent_logs(run["id"])
    assert entry["message"].startswith("user prompt (42 characters")
