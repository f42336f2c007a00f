"""Live events end to end: real uvicorn servers, writers in other processes, WebSocket clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from apihelpers import Server, run_writer
from websockets.asyncio.client import ClientConnection, connect

EVENT_TIMEOUT = 30.0  # generous: the machine is shared; events normally arrive in < 0.1 s


async def next_event(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT))  # type: ignore[no-any-return]


async def events_until(ws: ClientConnection, stop: Callable[[dict[str, Any]], bool]
                       ) -> list[dict[str, Any]]:
    """Receive events up to and including the first one for which ``stop`` is true."""
    out = []
    while True:
        event = await next_event(ws)
        out.append(event)
        if stop(event):
            return out


def log_insert(ids: list[str]) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["table"] == "agent_logs" and e["op"] == "insert" and e["id"] in ids


async def writer(url: str, *args: str) -> Any:
    return await asyncio.to_thread(run_writer, url, *args)


async def test_event_from_another_process(db_url: str, servers: Callable[..., Server]) -> None:
    server = servers(db_url)
    async with connect(f"{server.ws}/ws/events") as ws:
        made = await writer(db_url, "setup", "live-1")
        [log_id] = await writer(db_url, "logs", made["agent_id"], "1", "hello")
        events = await events_until(ws, log_insert([log_id]))
    event = events[-1]
    assert event["row"]["message"] == "hello 0"
    assert event["row"]["agent_id"] == made["agent_id"]
    assert event["session_id"] == "live-1" and event["agent_id"] == made["agent_id"]
    assert event["log_level"] == "INFO"
    assert {"orchestrator_agents", "agents"} <= {e["table"] for e in events}
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


async def test_reconnect_with_after_gets_exactly_the_missed_events(
        db_url: str, servers: Callable[..., Server]) -> None:
    server = servers(db_url)
    made = await writer(db_url, "setup", "live-2")
    async with connect(f"{server.ws}/ws/events?session_id=live-2") as ws:
        [first] = await writer(db_url, "logs", made["agent_id"], "1", "before")
        seen = await events_until(ws, log_insert([first]))
    last_position = seen[-1]["position"]

    missed = await writer(db_url, "logs", made["agent_id"], "3", "while away")
    async with connect(f"{server.ws}/ws/events?session_id=live-2&after={last_position}") as ws:
        replayed = [await next_event(ws) for _ in missed]
        [after] = await writer(db_url, "logs", made["agent_id"], "1", "live again")
        live = await next_event(ws)
    assert [e["id"] for e in replayed] == missed
    assert [e["row"]["message"] for e in replayed] == [f"while away {i}" for i in range(3)]
    assert all(e["position"] > last_position for e in replayed)
    # Nothing missed, nothing repeated: the next event is the next write.
    assert live["id"] == after


async def test_filters(db_url: str, servers: Callable[..., Server]) -> None:
    server = servers(db_url)
    mine = await writer(db_url, "setup", "mine")
    other = await writer(db_url, "setup", "other")
    async with connect(f"{server.ws}/ws/events?session_id=mine&min_level=warning") as ws:
        await writer(db_url, "logs", other["agent_id"], "2", "other", "ERROR")
        await writer(db_url, "logs", mine["agent_id"], "2", "quiet", "INFO")
        [loud] = await writer(db_url, "logs", mine["agent_id"], "1", "loud", "ERROR")
        event = await next_event(ws)
    # Events of the other session and log lines below WARNING were filtered out.
    assert event["id"] == loud and event["session_id"] == "mine"

    async with connect(f"{server.ws}/ws/events?min_level=LOUDEST") as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT))
        assert error["error"]["field"] == "min_level"
        await asyncio.wait_for(ws.wait_closed(), EVENT_TIMEOUT)
        assert ws.close_code == 1008


async def test_two_servers_on_postgresql_both_see_every_event(
        pg_url: str, servers: Callable[..., Server]) -> None:
    first, second = servers(pg_url), servers(pg_url)
    made = await writer(pg_url, "setup", "fanout")
    async with connect(f"{first.ws}/ws/events?session_id=fanout") as ws1, \
            connect(f"{second.ws}/ws/events?session_id=fanout") as ws2:
        ids = await writer(pg_url, "logs", made["agent_id"], "5", "fan")
        got1 = await events_until(ws1, log_insert(ids[-1:]))
        got2 = await events_until(ws2, log_insert(ids[-1:]))
    assert [e["id"] for e in got1 if e["table"] == "agent_logs"] == ids
    assert [e["id"] for e in got2 if e["table"] == "agent_logs"] == ids
    assert [e["position"] for e in got1] == [e["position"] for e in got2]


@pytest.mark.parametrize("engine", ["sqlite"])
async def test_rest_and_events_agree(engine: str, sqlite_url: str,
                                     servers: Callable[..., Server]) -> None:
    """A write through the REST API of one server is an event on its WebSocket."""
    server = servers(sqlite_url)
    async with httpx.AsyncClient(base_url=server.http) as client, \
            connect(f"{server.ws}/ws/events") as ws:
        r = await client.post("/api/system-logs", json={"message": "via rest",
                                                        "log_level": "ERROR"})
        assert r.status_code == 201
        row = r.json()
        events = await events_until(ws, lambda e: e["id"] == row["id"])
    assert events[-1]["table"] == "system_logs" and events[-1]["row"] == row
