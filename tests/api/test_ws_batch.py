"""``/ws/events?batch=1``: each message is a JSON array of the events ready at once, in order.

The default stream (one event a message) is covered by test_live.py and stays as it was.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from apihelpers import Server, run_writer
from websockets.asyncio.client import ClientConnection, connect

EVENT_TIMEOUT = 30.0  # generous: the machine is shared; events normally arrive in < 0.1 s


async def writer(url: str, *args: str) -> Any:
    return await asyncio.to_thread(run_writer, url, *args)


@asynccontextmanager
async def subscribed(servers: Callable[..., Server], url: str, session: str, query: str
                     ) -> AsyncIterator[tuple[ClientConnection, str]]:
    """A server on ``url``, a new agent run in ``session`` (written by another process) and a
    socket on ``/ws/events?session_id=<session>&<query>``; yield the socket and the agent."""
    server = servers(url)
    made = await writer(url, "setup", session)
    async with connect(f"{server.ws}/ws/events?session_id={session}&{query}") as ws:
        yield ws, made["agent_id"]


async def receive(ws: ClientConnection) -> Any:
    """Return the next message, decoded; fail after EVENT_TIMEOUT."""
    return json.loads(await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT))


async def messages_until(ws: ClientConnection, log_ids: list[str]) -> list[Any]:
    """Receive messages until the last of ``log_ids`` has arrived; return the decoded messages."""
    out: list[Any] = []
    while True:
        out.append(await receive(ws))
        if any(e["id"] == log_ids[-1] for e in out[-1]):
            return out


async def test_batched_messages_are_arrays_of_events(db_url: str,
                                                     servers: Callable[..., Server]) -> None:
    async with subscribed(servers, db_url, "batch-1", "batch=1") as (ws, agent):
        ids = await writer(db_url, "logs", agent, "20", "burst")
        messages = await messages_until(ws, ids)
    assert all(isinstance(m, list) and m for m in messages)
    events = [e for m in messages for e in m]
    logs = [e for e in events if e["table"] == "agent_logs"]
    assert [e["id"] for e in logs] == ids
    assert [e["row"]["message"] for e in logs] == [f"burst {i}" for i in range(20)]
    assert all(e["session_id"] == "batch-1" for e in events)
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    # Same fields as an unbatched event.
    assert set(logs[0]) == {"position", "table", "op", "id", "row", "session_id", "agent_id",
                            "log_level"}


async def test_replay_after_a_position_is_batched(db_url: str,
                                                  servers: Callable[..., Server]) -> None:
    server = servers(db_url)
    made = await writer(db_url, "setup", "batch-2")
    async with connect(f"{server.ws}/ws/events?session_id=batch-2") as ws:
        [first] = await writer(db_url, "logs", made["agent_id"], "1", "before")
        while (event := await receive(ws))["id"] != first:
            pass
    last = event["position"]
    missed = await writer(db_url, "logs", made["agent_id"], "5", "while away", "ERROR")
    async with connect(f"{server.ws}/ws/events?session_id=batch-2&after={last}&batch=true"
                       "&min_level=error") as ws:
        replayed = await messages_until(ws, missed)
        [live] = await writer(db_url, "logs", made["agent_id"], "1", "live", "CRITICAL")
        after = await receive(ws)
    # The missed events (usually one replayed batch, one message), then the live one: nothing
    # below min_level, nothing repeated.
    assert [e["id"] for m in replayed for e in m] == missed
    assert [e["id"] for e in after] == [live]


async def test_batch_false_is_one_event_a_message(db_url: str,
                                                  servers: Callable[..., Server]) -> None:
    async with subscribed(servers, db_url, "batch-3", "batch=0") as (ws, agent):
        ids = await writer(db_url, "logs", agent, "3", "single")
        got: list[dict[str, Any]] = []
        while not got or got[-1]["id"] != ids[-1]:
            got.append(await receive(ws))
    assert all(isinstance(m, dict) for m in got)
    assert [m["id"] for m in got if m["table"] == "agent_logs"] == ids


async def test_bad_batch_value(db_url: str, servers: Callable[..., Server]) -> None:
    server = servers(db_url)
    async with connect(f"{server.ws}/ws/events?batch=sometimes") as ws:
        error = await receive(ws)
        await asyncio.wait_for(ws.wait_closed(), EVENT_TIMEOUT)
    assert error["error"]["field"] == "batch" and error["error"]["type"] == "ValidationError"
    assert ws.close_code == 1008
