"""Retries store nothing twice; children that arrive before their parents are linked later."""

from __future__ import annotations

import asyncio

import httpx
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


async def _counts(db: DatabaseManager) -> dict[str, int]:
    return (await db.stats())["counts"]


async def _ok(client: httpx.AsyncClient, *spans: object, **kwargs: object) -> None:
    assert partial_success(await send(client, traces(list(spans)), **kwargs)) == (0, "")


async def test_the_same_request_twice_stores_nothing_twice(client: httpx.AsyncClient,
                                                           manager: DatabaseManager) -> None:
    trace, agent, chat, tool, other = new_trace(), new_span(), new_span(), new_span(), new_span()
    request = traces([
        span(trace, agent, "invoke_agent a", attrs=agent_attrs("a"),
             events=[("exception", {"exception.type": "E"})]),
        span(trace, chat, "chat", parent=agent, attrs=CHAT),
        span(trace, tool, "execute_tool t", parent=agent, attrs=tool_attrs("t")),
        span(trace, other, "outside"),
    ])
    assert partial_success(await send(client, request)) == (0, "")
    before = await _counts(manager)
    assert before["agents"] == 2 and before["prompts"] == 1 and before["agent_logs"] == 3
    # Retries, in either encoding, gzipped, and concurrently.
    assert partial_success(await send(client, request, as_json=True)) == (0, "")
    responses = await asyncio.gather(*(send(client, request, gzipped=True) for _ in range(4)))
    assert all(partial_success(r) == (0, "") for r in responses)
    assert await _counts(manager) == before


async def test_a_span_resent_in_another_batch_is_skipped(client: httpx.AsyncClient,
                                                         manager: DatabaseManager) -> None:
    trace, agent, chat, chat2 = new_trace(), new_span(), new_span(), new_span()
    first = span(trace, chat, "chat", parent=agent, attrs=CHAT)
    await _ok(client, span(trace, agent, "invoke_agent a", attrs=agent_attrs("a")), first)
    await _ok(client, first, span(trace, chat2, "chat", parent=agent, attrs=CHAT, start=NOW + 5))
    assert (await _counts(manager))["prompts"] == 2
    assert len(await manager.list_prompts(session_id=trace.hex())) == 2


async def test_children_before_their_agent(client: httpx.AsyncClient,
                                           manager: DatabaseManager) -> None:
    trace, agent, chat, step, deep = new_trace(), new_span(), new_span(), new_span(), new_span()
    implicit = implicit_agent_id(trace.hex())
    # A BatchSpanProcessor exports spans as they end: the agent span, which ends last, comes
    # in a later request than its children (and a grandchild's parent may come between).
    await _ok(client, span(trace, chat, "chat", parent=agent, attrs=CHAT),
              span(trace, deep, "execute_tool t", parent=step, attrs=tool_attrs("t")))
    held = await manager.get_agent(implicit)
    assert held is not None and len(await manager.list_prompts(agent_id=implicit)) == 1
    await _ok(client, span(trace, step, "step", parent=agent))
    await _ok(client, span(trace, agent, "invoke_agent a", attrs=agent_attrs(
        "a", **{"gen_ai.conversation.id": "late-session"})))
    [run] = await manager.list_agents(session_id="late-session")
    assert run["name"] == "a"
    assert [p["span_id"] for p in await manager.list_prompts(agent_id=run["id"])] == [chat.hex()]
    logs = await manager.list_agent_logs(run["id"])
    assert sorted(x["span_id"] for x in logs) == sorted([deep.hex(), step.hex()])
    assert await manager.get_agent(implicit) is None  # left holding nothing: gone
    assert (await _counts(manager))["agents"] == 1


async def test_sub_agent_before_its_parent(client: httpx.AsyncClient,
                                           manager: DatabaseManager) -> None:
    trace, top, handoff, sub, chat = new_trace(), new_span(), new_span(), new_span(), new_span()
    await _ok(client, span(trace, sub, "invoke_agent researcher", parent=handoff,
                           attrs=agent_attrs("researcher")),
              span(trace, chat, "chat", parent=sub, attrs=CHAT))
    [researcher] = await manager.list_agents(session_id=trace.hex())
    assert researcher["parent_agent_id"] is None
    await _ok(client, span(trace, top, "invoke_agent lead", attrs=agent_attrs("lead")),
              span(trace, handoff, "handoff", parent=top))
    agents = {a["name"]: a for a in await manager.list_agents(session_id=trace.hex())}
    assert agents["researcher"]["parent_agent_id"] == agents["lead"]["id"]
    assert len(await manager.list_prompts(agent_id=agents["researcher"]["id"])) == 1
    assert [x["message"] for x in await manager.list_agent_logs(agents["lead"]["id"])] == [
        "handoff"]


async def test_grandparent_last(client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    trace, top, mid, leaf = new_trace(), new_span(), new_span(), new_span()
    await _ok(client, span(trace, leaf, "chat", parent=mid, attrs=CHAT))
    await _ok(client, span(trace, mid, "plan step", parent=top))  # an orphan under an orphan
    implicit = implicit_agent_id(trace.hex())
    assert len(await manager.list_prompts(agent_id=implicit)) == 1
    await _ok(client, span(trace, top, "invoke_agent boss", attrs=agent_attrs("boss")))
    [boss] = await manager.list_agents(session_id=trace.hex())
    assert boss["name"] == "boss"
    assert len(await manager.list_prompts(agent_id=boss["id"])) == 1
    assert [x["message"] for x in await manager.list_agent_logs(boss["id"])] == ["plan step"]


async def test_out_of_order_within_one_request(client: httpx.AsyncClient,
                                               manager: DatabaseManager) -> None:
    trace, top, sub, chat = new_trace(), new_span(), new_span(), new_span()
    await _ok(client, span(trace, chat, "chat", parent=sub, attrs=CHAT),
              span(trace, sub, "invoke_agent sub", parent=top, attrs=agent_attrs("sub")),
              span(trace, top, "invoke_agent top", attrs=agent_attrs("top")))
    agents = {a["name"]: a for a in await manager.list_agents(session_id=trace.hex())}
    assert set(agents) == {"top", "sub"}
    assert agents["sub"]["parent_agent_id"] == agents["top"]["id"]
    assert len(await manager.list_prompts(agent_id=agents["sub"]["id"])) == 1


async def test_deleting_an_agent_keeps_its_sub_agents(client: httpx.AsyncClient,
                                                      manager: DatabaseManager) -> None:
    trace, top, sub = new_trace(), new_span(), new_span()
    await _ok(client, span(trace, top, "invoke_agent top", attrs=agent_attrs("top")),
              span(trace, sub, "invoke_agent sub", parent=top, attrs=agent_attrs("sub")))
    agents = {a["name"]: a for a in await manager.list_agents(session_id=trace.hex())}
    assert await manager.delete_agent(agents["top"]["id"])
    child = await manager.get_agent(agents["sub"]["id"])
    assert child is not None and child["parent_agent_id"] is None
    # The deleted agent's span is forgotten with it: sent again, it is stored again.
    await _ok(client, span(trace, top, "invoke_agent top", attrs=agent_attrs("top")))
    assert len(await manager.list_agents(session_id=trace.hex())) == 2
