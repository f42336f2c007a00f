"""WebSocket ``/ws/events``: every change, as JSON, from the process's one change feed.

Query parameters: ``session_id``, ``agent_id``, ``min_level`` (log rows below it are skipped) and
``after`` (a position: the events after it are replayed from the database first, then live ones
follow, so a client that reconnects with its last position misses nothing; when retention
pruned the change log past that position, a ``reset`` notice says so first).

Each message is one ``ChangeEvent.to_dict()``; with ``batch=1`` each message is instead a JSON
array of one or more of them, in position order: every event ready when the server sends (a
burst of commits, a replayed batch, up to ``MAX_BATCH``), so the server sends one message per
burst rather than one per event (what the dashboard asks for). The server only sends; anything
the client sends is ignored. A bad parameter, an unknown one (as the REST routes refuse them) or
one that is not UTF-8 once percent-decoded (security.StrictUtf8) closes the socket with code
1008 after one ``{"error": ...}`` message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ..events import ChangeEvent
from ..models import LOG_LEVELS
from .errors import error_body
from .queryparams import unknown_parameter

router = APIRouter()
# Events one subscriber sends before letting the other tasks run: a burst of events reaches
# every subscriber at once, and what all of them send in one turn of the loop is how long the
# loop's timers and requests wait (20 subscribers x 5 sends of ~60 µs, a syscall each: ~6 ms).
YIELD_EVERY = 5
# Events in one message of a batched stream. Measured with 20 subscribers following a writer of
# 500 log lines a second: one message per event was ~9,000 sends a second, about half of the
# loop's time (a syscall and ~40 µs of ASGI and framing each); one per burst is ~200.
MAX_BATCH = 500
FLAGS = {"1": True, "true": True, "0": False, "false": False}
# The query parameters /ws/events takes; others are refused (the API token is always allowed).
PARAMETERS = frozenset({"session_id", "agent_id", "min_level", "after", "batch"})
logger = logging.getLogger("orchestrator_db.api")


def _filters(params: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Parse the query parameters into subscribe() arguments, or an error body."""
    out: dict[str, Any] = {}
    unknown = unknown_parameter(params, PARAMETERS)
    if unknown is not None:
        return out, error_body(type(unknown).__name__, unknown.message, unknown.field)
    after = params.get("after")
    if after not in (None, ""):
        try:
            out["after"] = int(after)  # ASCII only, as REST's numbers: int() takes any digits
            if out["after"] < 0 or not after.isascii():
                raise ValueError(after)
        except ValueError:
            return out, error_body("ValidationError",
                                   f"after must be a whole number ≥ 0, got {after!r}", "after")
    session_id = params.get("session_id")
    if session_id not in (None, ""):
        if "\x00" in session_id or len(session_id) > 1000:
            return out, error_body("ValidationError", "session_id is too long or contains NUL",
                                   "session_id")
        out["session_id"] = session_id
    agent_id = params.get("agent_id")
    if agent_id not in (None, ""):
        try:
            out["agent_id"] = str(uuid.UUID(agent_id))
        except ValueError:
            return out, error_body("ValidationError",
                                   f"agent_id must be a UUID string, got {agent_id!r}", "agent_id")
    batch = params.get("batch")
    if batch not in (None, ""):
        if batch.lower() not in FLAGS:
            return out, error_body("ValidationError",
                                   f"batch must be 1, true, 0 or false; got {batch!r}", "batch")
        out["batch"] = FLAGS[batch.lower()]
    min_level = params.get("min_level")
    if min_level not in (None, ""):
        level = min_level.upper()
        if level not in LOG_LEVELS:
            return out, error_body(
                "ValidationError",
                f"min_level must be one of {', '.join(LOG_LEVELS)}; got {min_level!r}",
                "min_level")
        out["min_level"] = level
    return out, None


async def _pump(websocket: WebSocket, batches: AsyncIterator[list[ChangeEvent]]) -> None:
    """Send each event as a message of its own."""
    sent = 0
    async for batch in batches:
        for event in batch:
            await websocket.send_text(event.json)  # encoded once for every subscriber
            sent += 1
            if sent % YIELD_EVERY == 0:
                # Neither a queued event nor a send into a socket buffer with room suspends: a
                # subscriber catching up would keep the loop from every other request until
                # done.
                await asyncio.sleep(0)


async def _pump_batched(websocket: WebSocket,
                        batches: AsyncIterator[list[ChangeEvent]]) -> None:
    """Send each list of events as one message: a JSON array of the events' cached texts."""
    async for batch in batches:
        await websocket.send_text(f"[{','.join([event.json for event in batch])}]")
        # A send into a socket buffer with room does not suspend: let the others run.
        await asyncio.sleep(0)


async def _drain(websocket: WebSocket) -> None:
    # Reading is how a server learns that the client went away.
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


@router.websocket("/ws/events")
async def events(websocket: WebSocket) -> None:
    """Stream change events to one client until it disconnects or the server stops."""
    filters, error = _filters(websocket.query_params)
    feed = websocket.app.state.feed
    if error is None and "after" not in filters:
        # Start from the position before the handshake completes: a client that connects and
        # then makes (or causes) a write is sure to receive it.
        filters["after"] = await feed.current_position()
    await websocket.accept()
    if error is not None:
        await websocket.send_text(json.dumps(error))
        await websocket.close(code=1008)
        return
    batched = filters.pop("batch", False)
    subscription = feed.subscribe_batches(**filters, max_batch=MAX_BATCH)
    pump = asyncio.create_task((_pump_batched if batched else _pump)(websocket, subscription))
    drain = asyncio.create_task(_drain(websocket))
    try:
        done, _ = await asyncio.wait({pump, drain}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, drain):
            task.cancel()
        for task in (pump, drain):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
        aclose = getattr(subscription, "aclose", None)
        if aclose is not None:
            await aclose()
    if pump in done and not pump.cancelled() and pump.exception() is not None:
        exc = pump.exception()
        if not isinstance(exc, WebSocketDisconnect | OSError | RuntimeError):
            logger.error("live event stream failed", exc_info=exc)
        with contextlib.suppress(Exception):
            await websocket.close(code=1011)
    elif pump in done:  # the feed ended: the server is stopping
        with contextlib.suppress(Exception):
            await websocket.close(code=1001)
