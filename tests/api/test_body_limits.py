"""Each record route admits the largest record its schema accepts, and refuses larger bodies.

Before, every route but ``/api/prompts`` refused bodies over 1,000,000 bytes with 413, although a
log message may hold 1,000,000 characters (up to 12 bytes each in JSON) and a description
10,000,000: the limits are now derived from the payload models (``api/limits.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from apihelpers import error_of

from orchestrator_db.models import (
    MAX_CAPABILITIES,
    MAX_CONTENT_CHARS,
    MAX_JSON_BYTES,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_SHORT_CHARS,
)

RESOURCES = ["orchestrator-agents", "agents", "prompts", "agent-logs", "system-logs"]
EMOJI = "\U0001f600"  # json.dumps writes it as "\ud83d\ude00": 12 bytes for one character
MISSING = "0190a000-0000-7000-8000-000000000000"


def short(chars: int = MAX_SHORT_CHARS) -> str:
    return EMOJI * chars


def largest_details() -> dict[str, Any]:
    """A JSON object of MAX_JSON_BYTES as the library encodes it (UTF-8, ", " and ": ")."""
    value = {"d": ""}
    room = MAX_JSON_BYTES - len(json.dumps(value, ensure_ascii=False).encode())
    value["d"] = "é" * (room // 2)  # two bytes each; six in the body ("\u00e9")
    return value


async def largest(client: httpx.AsyncClient, resource: str) -> dict[str, Any]:
    """A create body with every field at its largest: text of emoji where that is affordable
    (the 10,000,000-character fields are plain, to keep the bodies at 12 and 20 MB)."""
    if resource == "orchestrator-agents":
        return {"name": short(MAX_NAME_CHARS), "description": "d" * MAX_CONTENT_CHARS,
                "agent_type": short(), "default_model": short(), "status": "archived",
                "capabilities": [short(MAX_NAME_CHARS)] * 10, "metadata": largest_details()}
    if resource == "system-logs":
        return {"message": EMOJI * MAX_MESSAGE_CHARS, "log_level": "CRITICAL", "source": short(),
                "details": largest_details()}
    oa_id = (await client.post("/api/orchestrator-agents", json={"name": "parent"})).json()["id"]
    if resource == "agents":
        return {"orchestrator_agent_id": oa_id, "session_id": short(MAX_NAME_CHARS),
                "name": short(), "model": short(), "status": "executing",
                "metadata": largest_details(), "trace_id": "a" * 32, "span_id": "b" * 16}
    agent = await client.post("/api/agents", json={"orchestrator_agent_id": oa_id,
                                                   "session_id": "big"})
    if resource == "prompts":
        return {"agent_id": agent.json()["id"], "content": "c" * MAX_CONTENT_CHARS,
                "response": "r" * MAX_CONTENT_CHARS, "model": short(), "status": "completed",
                "tokens_input": 10**12, "tokens_output": 10**12, "cost_usd": 1e9}
    assert resource == "agent-logs"
    return {"agent_id": agent.json()["id"], "message": EMOJI * MAX_MESSAGE_CHARS,
            "log_level": "CRITICAL", "log_type": short(), "details": largest_details()}


async def never_read() -> AsyncIterator[bytes]:
    raise AssertionError("a body over the limit was read")
    yield b""  # an async generator


async def limit_of(client: httpx.AsyncClient, method: str, url: str) -> int:
    """The body limit of a route, as its 413 to a declared 1 TB body (not sent) says."""
    r = await client.request(method, url, content=never_read(), headers={
        "content-type": "application/json", "content-length": str(10**12)})
    error = error_of(r, 413, "PayloadTooLarge")
    match = re.fullmatch(r"request body is larger than (\d+) bytes", error["message"])
    assert match is not None, error
    return int(match.group(1))


async def post(client: httpx.AsyncClient, method: str, url: str, body: Any) -> httpx.Response:
    # json.dumps escapes every character outside ASCII: the costliest encoding a client makes.
    return await client.request(method, url, content=json.dumps(body).encode(),
                                headers={"content-type": "application/json"})


@pytest.mark.parametrize("resource", RESOURCES)
async def test_the_largest_record_is_accepted_and_read_back(client: httpx.AsyncClient,
                                                            resource: str) -> None:
    body = await largest(client, resource)
    created = await post(client, "POST", f"/api/{resource}", body)
    assert created.status_code == 201, created.text[:300]
    record = created.json()
    fetched = (await client.get(f"/api/{resource}/{record['id']}")).json()
    assert fetched == record
    for name, value in body.items():
        assert record[name] == value, name

    # The same fields again, through PATCH (agents: those AgentUpdate takes).
    update = {k: v for k, v in body.items() if k not in ("agent_id", "trace_id", "span_id")}
    if resource == "orchestrator-agents":
        update["name"] = short(MAX_NAME_CHARS - 1) + "x"
    patched = await post(client, "PATCH", f"/api/{resource}/{record['id']}", update)
    assert patched.status_code == 200, patched.text[:300]
    fetched = (await client.get(f"/api/{resource}/{record['id']}")).json()
    assert fetched == patched.json()
    for name, value in update.items():
        assert fetched[name] == value, name


async def test_the_limits_admit_the_costliest_encoding_and_no_more(
        client: httpx.AsyncClient) -> None:
    # What each limit must hold at least: its big fields, 12 bytes a character (an escaped
    # surrogate pair) and 6 a byte of JSON.
    text, json_field = 12, 6 * MAX_JSON_BYTES
    floors = {
        "orchestrator-agents": text * MAX_CONTENT_CHARS + json_field  # and capabilities:
        + MAX_CAPABILITIES * (text * MAX_NAME_CHARS + 3),
        "agents": json_field,
        "prompts": 2 * text * MAX_CONTENT_CHARS,
        "agent-logs": text * MAX_MESSAGE_CHARS + json_field,
        "system-logs": text * MAX_MESSAGE_CHARS + json_field,
    }
    for resource, floor in floors.items():
        limit = await limit_of(client, "POST", f"/api/{resource}")
        # The small fields (names, ids, times, numbers) and whitespace add less than 1 MB.
        assert floor < limit < floor + 1_000_000, resource
        assert await limit_of(client, "PATCH", f"/api/{resource}/{MISSING}") == limit
    assert await limit_of(client, "POST", "/api/stats") == 1_000_000  # no record: the default


@pytest.mark.parametrize("resource", RESOURCES)
async def test_a_body_over_the_limit_is_413_before_it_is_read(client: httpx.AsyncClient,
                                                             resource: str) -> None:
    limit = await limit_of(client, "POST", f"/api/{resource}")
    for method, url in [("POST", f"/api/{resource}"), ("PATCH", f"/api/{resource}/{MISSING}")]:
        r = await client.request(method, url, content=never_read(), headers={
            "content-type": "application/json", "content-length": str(limit + 1)})
        error = error_of(r, 413, "PayloadTooLarge")
        assert error["message"] == f"request body is larger than {limit} bytes"


async def test_a_streamed_body_is_cut_off_at_the_limit(client: httpx.AsyncClient) -> None:
    limit = await limit_of(client, "POST", "/api/system-logs")

    async def chunks(size: int) -> AsyncIterator[bytes]:  # no Content-Length: chunked
        chunk = b" " * 1_000_000
        for _ in range(size // len(chunk)):
            yield chunk
        yield b" " * (size % len(chunk))

    at_limit = await client.post("/api/system-logs", content=chunks(limit),
                                 headers={"content-type": "application/json"})
    error_of(at_limit, 422, "ValidationError")  # read whole: whitespace is not a record
    over = await client.post("/api/system-logs", content=chunks(limit + 1),
                             headers={"content-type": "application/json"})
    error_of(over, 413, "PayloadTooLarge")


@pytest.mark.parametrize("resource, field, chars", [
    ("system-logs", "message", MAX_MESSAGE_CHARS),
    ("agent-logs", "message", MAX_MESSAGE_CHARS),
    ("orchestrator-agents", "description", MAX_CONTENT_CHARS),
])
async def test_a_field_over_its_limit_is_named_not_413(client: httpx.AsyncClient, resource: str,
                                                       field: str, chars: int) -> None:
    body = await largest(client, resource)
    body[field] = "é" * (chars + 1)
    r = await post(client, "POST", f"/api/{resource}", body)
    error = error_of(r, 422, "ValidationError", field)
    assert f"at most {chars} characters" in error["message"]
