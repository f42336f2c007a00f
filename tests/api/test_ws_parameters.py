"""``/ws/events`` refuses what the REST routes refuse, with its one error message and close 1008.

Before, ``?level=ERROR`` (meant: ``min_level``) and ``?colour=red`` were ignored, the socket
streaming every event; and a percent-encoded lone surrogate got a bare HTTP 403 with no body
(the middleware closed the socket before accepting it, which uvicorn answers with 403).
Against real uvicorn servers: the query string reaches the app as the client sent it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from apihelpers import Server
from websockets.asyncio.client import connect

TIMEOUT = 30.0  # generous: the machine is shared
KNOWN = "known: after, agent_id, batch, min_level, session_id"
NOT_UTF8 = "is not valid UTF-8 once percent-decoded (a lone surrogate or a stray byte)"


async def refusal(server: Server, query: str) -> dict[str, Any]:
    """Connect with ``query``; return the error of the one message, after the close 1008."""
    async with connect(f"{server.ws}/ws/events?{query}") as ws:
        message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert ws.close_code == 1008, query
    assert set(message) == {"error"}, message
    assert message["error"]["type"] == "ValidationError", message
    return message["error"]  # type: ignore[no-any-return]


@pytest.fixture
def server(db_url: str, servers: Callable[..., Server]) -> Server:
    return servers(db_url)


# One server a test (each takes a second or two to start): the cases run in a loop.
UNKNOWN = [
    ("level=ERROR", "level"),
    ("colour=red", "colour"),
    ("session_id=s&sessionid=s", "sessionid"),
    ("min_level=ERROR&level=ERROR", "level"),  # refused although min_level is good
]
NOT_UTF8_VALUES = [
    ("session_id=%ED%A0%80", "session_id"),
    ("agent_id=%ED%B2%80&session_id=s", "agent_id"),
    ("session_id=%FF%FE", "session_id"),
    ("%ED%A0%80=x", None),  # a name that is not UTF-8 names no field
]


async def test_unknown_parameters_are_refused_naming_the_known_ones(server: Server) -> None:
    for query, name in UNKNOWN:
        error = await refusal(server, query)
        assert error == {"type": "ValidationError", "field": name,
                         "message": f"unknown query parameter {name!r}; {KNOWN}"}, query
    # Without a token configured, ?token= is still no unknown parameter (as over REST): the
    # error is the bad level's.
    error = await refusal(server, "token=abc&min_level=LOUDEST")
    assert error["field"] == "min_level"
    # int() reads any script's digits; a position is ASCII digits, as REST's numbers are.
    error = await refusal(server, "after=%EF%BC%91")  # FULLWIDTH DIGIT ONE
    assert error["field"] == "after" and "whole number" in error["message"]


async def test_a_value_that_is_not_utf8_is_refused_like_other_bad_parameters(
        server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http) as client:
        for query, field in NOT_UTF8_VALUES:
            error = await refusal(server, query)
            assert error["field"] == field, query
            assert error["message"] == f"{field or 'the URL'} {NOT_UTF8}", query
            # The REST answer to the same query string: 400 with the same error.
            r = await client.get(f"/api/agents?{query}")
            assert r.status_code == 400 and r.json() == {"error": error}, query


async def test_good_parameters_still_stream(server: Server) -> None:
    query = ("session_id=s&agent_id=0190a000-0000-7000-8000-000000000000&min_level=info"
             "&after=0&batch=0&token=abc")
    async with connect(f"{server.ws}/ws/events?{query}") as ws, \
            httpx.AsyncClient(base_url=server.http) as client:
        with pytest.raises(TimeoutError):  # no error message: the socket streams (nothing yet)
            await asyncio.wait_for(ws.recv(), 0.5)
        assert (await client.get("/healthz")).status_code == 200
        assert ws.close_code is None
