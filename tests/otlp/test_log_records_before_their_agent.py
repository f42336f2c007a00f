"""A log record of a span held by the trace's implicit agent moves with the span (design §11).

The three pieces — a ``chat`` span, a log record carrying its trace and span id, and the
``invoke_agent`` span above the chat — may arrive in any order; the result is the same.
"""

from __future__ import annotations

import itertools

import httpx
import pytest
from otlphelpers import (
    CHAT,
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
from orchestrator_db.otlp.plan import implicit_agent_id

PIECES = ("chat", "log", "agent")


@pytest.mark.parametrize("order", list(itertools.permutations(PIECES)),
                         ids=lambda order: "-".join(order))
async def test_the_log_follows_its_span_in_any_order(order: tuple[str, ...],
                                                     client: httpx.AsyncClient,
                                                     manager: DatabaseManager) -> None:
    trace, agent, chat = new_trace(), new_span(), new_span()
    requests = {
        "chat": traces([span(trace, chat, "chat", parent=agent, attrs=CHAT)]),
        "log": logs([log("thinking", trace=trace, span_id=chat, attrs={"step": 1})]),
        "agent": traces([span(trace, agent, "invoke_agent a", attrs=agent_attrs("a"))]),
    }
    for piece in order:
        signal = "logs" if piece == "log" else "traces"
        assert partial_success(await send(client, requests[piece]), signal) == (0, "")
    [run] = await manager.list_agents()
    assert run["name"] == "a" and run["session_id"] == trace.hex()
    assert [p["agent_id"] for p in await manager.list_prompts()] == [run["id"]]
    assert await manager.get_agent(implicit_agent_id(trace.hex())) is None
    records = await manager.list_agent_logs(run["id"], log_type="log")
    system = await manager.list_system_logs()
    if order.index("log") < order.index("chat"):
        # Before its span the record names nothing stored: a system log, and it stays one.
        assert records == []
        assert [(r["message"], r["source"]) for r in system] == [("thinking", "test-service")]
    else:
        assert system == []
        assert [(r["message"], r["details"]["step"]) for r in records] == [("thinking", 1)]
    assert (await manager.stats())["counts"]["agents"] == 1
