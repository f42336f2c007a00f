"""Fuzzing the REST API in-process: hostile bodies, query strings and paths, on both engines.

Never a 5xx; every 4xx body is ``{"error": {"type", "message", "field"}}``; a 201 answer is
what a GET of the new record then returns, and holds what the oracle says must be stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from fuzz_inputs import (
    AGENT,
    AGENT_LOG,
    AGENT_LOG_UPDATE,
    AGENT_UPDATE,
    ORCHESTRATOR_AGENT,
    ORCHESTRATOR_AGENT_UPDATE,
    PROMPT,
    PROMPT_UPDATE,
    SHORT,
    SYSTEM_LOG,
    SYSTEM_LOG_UPDATE,
    Accepted,
    Refused,
    Spec,
    Verdict,
    assert_stored,
    count,
    fuzz_settings,
    hostile_text,
    jsonable,
    refusals,
    show,
    text_values,
    timestamp_values,
    verdicts,
)
from hypothesis import given
from hypothesis import strategies as st

from orchestrator_db import DatabaseManager
from orchestrator_db.api import create_app, routes
from orchestrator_db.api.limits import body_limits


@pytest.fixture
async def api(db: DatabaseManager) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on ``db`` (both engines), its lifespan running; 500s stay responses."""
    app = create_app(manager=db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


def answered(response: httpx.Response, what: str) -> Any:
    """Never a 5xx; a 4xx in the one error shape. Returns the decoded body."""
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    body = response.json() if response.content else None
    if response.status_code >= 400:
        assert isinstance(body, dict) and set(body) == {"error"}, f"{what}: {response.text[:300]}"
        error = body["error"]
        assert set(error) == {"type", "message", "field"}, f"{what}: {response.text[:300]}"
        assert isinstance(error["type"], str) and isinstance(error["message"], str), what
        assert error["field"] is None or isinstance(error["field"], str), what
    count("rest", str(response.status_code))
    return body


def as_json(value: Any) -> Any:
    """A value as a JSON body carries it: datetimes as ISO text (the oracle sees the same)."""
    return value.isoformat() if isinstance(value, datetime) else value


def body_of(data: st.DataObject, specs: Mapping[str, Spec], base: dict[str, Any]
            ) -> tuple[dict[str, Any], dict[str, Verdict]]:
    """``base`` with one to three fields replaced by hostile values a JSON body can carry."""
    names = data.draw(st.lists(st.sampled_from(sorted(specs)), min_size=1, max_size=3,
                               unique=True), label="hostile fields")
    body = dict(base)
    for name in names:
        value = data.draw(specs[name].values.map(as_json).filter(small).filter(jsonable),
                          label=name)
        # What the server decodes: "\ud800\udc00" escaped in JSON is one character, U+10000.
        body[name] = json.loads(json.dumps(value))
    return body, verdicts(specs, body)


def small(value: Any) -> bool:
    # 10-million-character contents only meet the 1 MB body limit (413): a few are enough.
    return not isinstance(value, str) or len(value) <= 1_100_000


def size(body: Any) -> int:
    return len(json.dumps(body).encode())


async def send(api: httpx.AsyncClient, method: str, url: str, body: Any) -> httpx.Response:
    # json.dumps escapes lone surrogates (\udc80) and writes NaN: as a hostile client would.
    return await api.request(method, url, content=json.dumps(body).encode(),
                             headers={"content-type": "application/json"})


RESOURCES = ["orchestrator-agents", "agents", "prompts", "agent-logs", "system-logs"]
CREATE = {"orchestrator-agents": ORCHESTRATOR_AGENT, "agents": AGENT, "prompts": PROMPT,
          "agent-logs": AGENT_LOG, "system-logs": SYSTEM_LOG}
UPDATE = {"orchestrator-agents": ORCHESTRATOR_AGENT_UPDATE, "agents": AGENT_UPDATE,
          "prompts": PROMPT_UPDATE, "agent-logs": AGENT_LOG_UPDATE,
          "system-logs": SYSTEM_LOG_UPDATE}
NOT_NULL = {"orchestrator-agents": {"name", "status"}, "agents": {"session_id"},
            "prompts": {"content", "tokens_input", "tokens_output", "cost_usd", "status"},
            "agent-logs": {"message", "log_type", "log_level"},
            "system-logs": {"message", "log_level"}}
# Filled in by the service when not given: not predicted.
NOW_FIELDS = {"created_at", "started_at", "completed_at"}


async def valid_body(db: DatabaseManager, resource: str) -> dict[str, Any]:
    oa = await db.create_orchestrator_agent(f"rest-{uuid.uuid4()}")
    agent = await db.create_agent(oa, "rest-session")
    return {
        "orchestrator-agents": {"name": f"rest-{uuid.uuid4()}"},
        "agents": {"orchestrator_agent_id": oa, "session_id": "s"},
        "prompts": {"agent_id": agent, "content": "c"},
        "agent-logs": {"agent_id": agent, "message": "m"},
        "system-logs": {"message": "m"},
    }[resource]


# Each record route admits its largest valid record (api/limits.py); larger bodies are 413.
BODY_LIMITS = body_limits(routes.router.routes, 1_000_000)


def check_status(what: str, status: int, expected: Mapping[str, Verdict], ok: int,
                 taken: bool = False, size: int = 0, limit: int = 1_000_000) -> bool:
    if size > limit:
        assert status == 413, f"{what}: {status} for a body of {size} bytes, expected 413"
        return False
    if refused := refusals(expected):
        assert status in (400, 422), f"{what}: {status}, expected 400/422 for {refused}"
        return False
    if taken:
        assert status == 409, f"{what}: {status}, expected 409 (name taken)"
        return False
    assert status == ok, f"{what}: {status}, expected {ok}"
    return True


@pytest.fixture
def names() -> set[str]:
    """Orchestrator agent names taken so far in this test (a second POST of one is a 409)."""
    return set()


@fuzz_settings(share=0.5)
@given(data=st.data())
async def test_create_then_read_back(api: httpx.AsyncClient, db: DatabaseManager,
                                     names: set[str], data: st.DataObject) -> None:
    """POST hostile bodies, then PATCH them: 201/200 read back identical via GET, else 4xx."""
    resource = data.draw(st.sampled_from(RESOURCES), label="resource")
    body, expected = body_of(data, CREATE[resource], {})
    update, update_expected = body_of(data, UPDATE[resource], {})
    for name in NOT_NULL[resource]:
        if name in update and update[name] is None:
            update_expected[name] = Refused(f"{name} cannot be set to None")
    body = {**await valid_body(db, resource), **body}
    what = f"POST /api/{resource} {show(body)}"
    name = body.get("name") if resource == "orchestrator-agents" else None
    taken = name in names
    created = await send(api, "POST", f"/api/{resource}", body)
    record = answered(created, what)
    if created.status_code == 201 and name is not None:
        names.add(name)
    limit = BODY_LIMITS[f"/api/{resource}"]
    if not check_status(what, created.status_code, expected, 201, taken, size(body), limit):
        return
    fetched = answered(await api.get(f"/api/{resource}/{record['id']}"), f"GET after {what}")
    assert fetched == record, f"{what}: GET differs:\n {show(fetched)}\n {show(record)}"
    wanted = {k: v for k, v in expected.items() if k not in NOW_FIELDS or v != Accepted(None)}
    assert_stored(what, {"rest": record}, wanted)

    what = f"PATCH /api/{resource}/… {show(update)}"
    patched = await send(api, "PATCH", f"/api/{resource}/{record['id']}", update)
    result = answered(patched, what)
    new_name = update.get("name") if resource == "orchestrator-agents" else None
    taken = new_name is not None and new_name != name and new_name in names
    if patched.status_code == 200 and new_name is not None:
        names.discard(name)
        names.add(new_name)
    if check_status(what, patched.status_code, update_expected, 200, taken, size(update),
                    limit):
        fetched = answered(await api.get(f"/api/{resource}/{record['id']}"), f"GET after {what}")
        assert fetched == result, f"{what}: GET differs:\n {show(fetched)}\n {show(result)}"
        assert_stored(what, {"rest": result}, update_expected)


def encoded(value: Any) -> str:
    """A query value percent-encoded from its UTF-8 bytes; lone surrogates as their 3 bytes."""
    text = value if isinstance(value, str) else show(value, 10_000)
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


RAW_QUERY_VALUES = ["%ZZ", "%", "%ED%A0%80", "%C0%80", "%00", "%FF%FE", "%E2%82", "a%2Cb",
                    "+", "%2B", "&", "=", "%3D%3D"]
query_values = st.one_of(
    text_values(SHORT).map(encoded), timestamp_values.map(lambda v: encoded(
        v.isoformat() if isinstance(v, datetime) else v)),
    st.sampled_from(RAW_QUERY_VALUES),
    st.sampled_from(["0", "-1", "1001", "1e3", "2.5", "9" * 30, "true", "asc", "desc", "ERROR",
                     "warning", str(uuid.uuid4()), "1" * 5000]),
)
PARAMETERS = {
    "orchestrator-agents": ["status", "agent_type", "name"],
    "agents": ["session_id", "orchestrator_agent_id", "status", "since", "until"],
    "prompts": ["agent_id", "session_id", "status", "model", "since", "until"],
    "agent-logs": ["agent_id", "session_id", "log_level", "min_level", "log_type", "since",
                   "until"],
    "system-logs": ["log_level", "min_level", "source", "since", "until"],
}
COMMON = ["limit", "cursor", "order", "unknown"]


@fuzz_settings(share=0.5)
@given(data=st.data())
async def test_list_queries(api: httpx.AsyncClient, data: st.DataObject) -> None:
    """Hostile query strings on every list: never a 5xx, errors in the one shape."""
    resource = data.draw(st.sampled_from(RESOURCES), label="resource")
    params = data.draw(st.lists(st.sampled_from(PARAMETERS[resource] + COMMON), min_size=1,
                                max_size=4), label="parameters")
    query = "&".join(f"{p}={data.draw(query_values, label=p)}" for p in params)
    what = f"GET /api/{resource}?{query[:300]}"
    body = answered(await api.get(f"/api/{resource}?{query}"), what)
    if isinstance(body, dict) and "items" in body:
        assert isinstance(body["items"], list) and "next_cursor" in body, what


@fuzz_settings(share=0.25)
@given(data=st.data())
async def test_aggregates(api: httpx.AsyncClient, data: st.DataObject) -> None:
    """Session summaries by hostile ids (path), costs and sessions with hostile queries."""
    session = data.draw(text_values(SHORT).map(encoded), label="session")
    answered(await api.get(f"/api/sessions/{session}/summary"), f"summary of {session[:200]}")
    query = "&".join(f"{p}={data.draw(query_values, label=p)}" for p in data.draw(
        st.lists(st.sampled_from(["group_by", "since", "until", "limit", "cursor"]),
                 max_size=3), label="parameters"))
    for path in ("/api/costs", "/api/sessions"):
        answered(await api.get(f"{path}?{query}"), f"GET {path}?{query[:300]}")


def nested(depth: int) -> bytes:
    return b'{"message":"m","details":' + b"[" * depth + b"1" + b"]" * depth + b"}"


RAW_BODIES = [b"", b"{", b"null", b"[]", b'"x"', b"1", b"NaN", b"\xff\xfe", b"\x00",
              b'{"message":"\\ud800"}', b'{"message":"a\\u0000b"}', b'{"message":1}',
              b'{"message":"m","details":' + b"1" * 5000 + b"}",
              b'{"message":"m","details":{"a":1e999}}', b'{"message":"m","details":-0.0}',
              b'{"message":"m","message":"n"}', b'{"message":"m","created_at":"9999-12-31T23:59:59-01:00"}',
              b'{"message":"m","log_level":"info","extra":1}', b'{"\\udc80":1}',
              b'{"message":"' + b"x" * 1_000_001 + b'"}', nested(100), nested(101), nested(254),
              nested(256), nested(990), nested(5000)]
raw_bodies = st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=64),
                       hostile_text(40).map(lambda t: t.encode("utf-8", "surrogatepass")))


@fuzz_settings(share=0.5)
@given(data=st.data())
async def test_raw_bodies(api: httpx.AsyncClient, db: DatabaseManager,
                          data: st.DataObject) -> None:
    """Bytes that are barely (or not) JSON, to every POST and PATCH: never a 5xx."""
    resource = data.draw(st.sampled_from(RESOURCES), label="resource")
    raw = data.draw(raw_bodies, label="body")
    content_type = data.draw(st.sampled_from(["application/json", "text/plain", None]),
                             label="content type")
    headers = {"content-type": content_type} if content_type else {}
    what = f"POST /api/{resource} {show(raw[:200])}"
    answered(await api.post(f"/api/{resource}", content=raw, headers=headers), what)
    row_id = data.draw(st.sampled_from([str(uuid.uuid4()), "not-a-uuid", "%00", "%ED%A0%80"]),
                       label="id")
    answered(await api.patch(f"/api/{resource}/{row_id}", content=raw, headers=headers),
             f"PATCH {what}")
    answered(await api.get(f"/api/{resource}/{row_id}"), f"GET /api/{resource}/{row_id}")


@pytest.mark.parametrize("depth", [100, 101, 252, 300])
async def test_deep_details_never_500(api: httpx.AsyncClient, db: DatabaseManager,
                                      depth: int) -> None:
    """JSON nested past what the serialiser writes is refused on the way in, not a 500 on the
    way out (pydantic-core stops at 255 levels; a list page adds 3)."""
    created = await api.post("/api/system-logs", content=nested(depth),
                             headers={"content-type": "application/json"})
    answered(created, f"POST details nested {depth} deep")
    assert created.status_code == (201 if depth <= 100 else 422), created.text[:200]
    answered(await api.get("/api/system-logs", params={"order": "desc", "limit": 5}),
             "list after it")
