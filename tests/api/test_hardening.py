"""The service under hostile requests and settings, on both engines, in-process.

Ids with "/" route; a wrong method says which ones are allowed; unsafe tokens and retention
settings stop ``create_app`` with one line; the token never reaches the access log; ``/healthz``
reports a failing change feed; filters no database text could equal answer 400, never 500.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from dbhelpers import run_sql
from orchestrator_db import DatabaseManager
from orchestrator_db.api import ApiConfigError, create_app
from orchestrator_db.api.security import redact_tokens_in_access_log

TOKEN_ENV = "ORCHESTRATOR_API_TOKEN"
RETENTION_ENV = "ORCHESTRATOR_RETENTION_DAYS"
MISSING = "01900000-0000-7000-8000-000000000000"


def error_of(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """Assert the one error shape with this status (and field) and return its inner object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "field"}
    assert body["error"]["message"]
    if field is not None:
        assert body["error"]["field"] == field, body
    return body["error"]  # type: ignore[no-any-return]


async def make_agent(client: httpx.AsyncClient, session: str) -> dict[str, Any]:
    r = await client.post("/api/orchestrator-agents", json={"name": f"oa-{session}"})
    assert r.status_code == 201, r.text
    r = await client.post("/api/agents", json={"orchestrator_agent_id": r.json()["id"],
                                               "session_id": session})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


# routing ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("session, path", [
    ("team/run-1", "team%2Frun-1"),
    ("a/b/c", "a%2Fb%2Fc"),
    ("team/run-1", "team/run-1"),
    ("trailing/", "trailing%2F"),
    ("sp ace?#", "sp%20ace%3F%23"),
])
async def test_a_session_id_with_a_slash_has_a_summary(client: httpx.AsyncClient, session: str,
                                                       path: str) -> None:
    agent = await make_agent(client, session)
    await make_agent(client, "other")
    r = await client.get(f"/api/sessions/{path}/summary")
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["session_id"] == session
    assert summary["agents"] == 1 and summary["agents_by_status"]["pending"] == 1
    r = await client.get("/api/agents", params={"session_id": session})
    assert [a["id"] for a in r.json()["items"]] == [agent["id"]]


async def test_an_unknown_session_with_a_slash_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/sessions/team%2Fnobody/summary")
    assert error_of(r, 404, "session_id")["type"] == "NotFoundError"


@pytest.mark.parametrize("resource", ["agents", "prompts", "agent-logs", "system-logs",
                                      "orchestrator-agents"])
async def test_a_wrong_method_lists_every_method_of_the_path(
        client: httpx.AsyncClient, resource: str) -> None:
    r = await client.put(f"/api/{resource}/{MISSING}", json={})
    error = error_of(r, 405)
    assert error["type"] == "MethodNotAllowed"
    allow = r.headers.get_list("allow")
    assert len(allow) == 1, allow  # one header, not Starlette's and ours
    methods = {m.strip() for m in allow[0].split(",")}
    assert {"DELETE", "GET", "PATCH"} <= methods <= {"DELETE", "GET", "PATCH", "HEAD"}


async def test_a_wrong_method_on_a_single_route_path_is_405(client: httpx.AsyncClient) -> None:
    r = await client.delete("/api/stats")
    assert error_of(r, 405)["type"] == "MethodNotAllowed"
    assert "GET" in r.headers.get("allow", "")


# configuration refused by create_app ----------------------------------------------------------
@pytest.mark.parametrize("token", ["bad token;x", "semi;colon", "tökén-with-ümlauts",
                                   "new\nline", "quote\"d", "comma,s", "\u00a0nbsp"])
def test_an_unsafe_token_is_refused(token: str, sqlite_url: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ApiConfigError) as info:
        create_app(sqlite_url, token=token)
    message = str(info.value)
    assert "\n" not in message
    assert token not in message  # the secret is not echoed


def test_an_unsafe_token_from_the_environment_is_refused(sqlite_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "bad token;x")
    with pytest.raises(ApiConfigError):
        create_app(sqlite_url)


async def test_a_url_safe_token_works(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv(RETENTION_ENV, raising=False)
    token = secrets.token_urlsafe(32)
    app = create_app(sqlite_url, token=token)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            assert (await c.get("/api/stats")).status_code == 401
            wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
            r = await c.get("/api/stats", headers={"Authorization": f"Bearer {wrong}"})
            assert r.status_code == 401
            r = await c.get("/api/stats", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and r.json()["engine"] == "sqlite"
            # From a browser: ?token= once, then the cookie it sets.
            assert (await c.get("/api/stats", params={"token": token})).status_code == 200
            assert (await c.get("/api/stats")).status_code == 200


@pytest.mark.parametrize("days", ["nan", "inf", "-1", "1e9", "ten", "NaN", "-inf"])
def test_a_bad_retention_setting_stops_create_app_in_one_line(
        days: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.setenv(RETENTION_ENV, days)
    with pytest.raises(ApiConfigError) as info:
        create_app(sqlite_url)
    message = str(info.value)
    assert RETENTION_ENV in message
    assert "\n" not in message and message.strip() == message


async def test_a_good_retention_setting_is_accepted(sqlite_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.setenv(RETENTION_ENV, "30")
    app = create_app(sqlite_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            assert (await c.get("/healthz")).status_code == 200


# the token stays out of the access log --------------------------------------------------------
class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_log() -> Iterator[_Keep]:
    logger = logging.getLogger("uvicorn.access")
    keep = _Keep()
    level, disabled = logger.level, logger.disabled
    logger.setLevel(logging.INFO)
    logger.disabled = False
    logger.addHandler(keep)
    yield keep
    logger.removeHandler(keep)
    logger.setLevel(level)
    logger.disabled = disabled


@pytest.mark.parametrize("path, shown", [
    ("/?token=s3cret", "/?token=***"),
    ("/api/stats?limit=5&token=s3cret&order=asc", "/api/stats?limit=5&token=***&order=asc"),
    ("/ws/events?token=s3cret", "/ws/events?token=***"),
    ("/?token=s3cret&token=s3cret", "/?token=***&token=***"),
])
def test_the_token_in_a_query_string_is_not_in_the_access_log(access_log: _Keep, path: str,
                                                               shown: str) -> None:
    redact_tokens_in_access_log()
    redact_tokens_in_access_log()  # idempotent
    logger = logging.getLogger("uvicorn.access")
    # uvicorn's access log call: '%s - "%s %s HTTP/%s" %d' with these arguments.
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", path, "1.1", 200)
    (line,) = access_log.lines
    assert "s3cret" not in line
    assert "token=***" in line
    assert line == f'127.0.0.1:5 - "GET {shown} HTTP/1.1" 200'
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/api/stats?mytoken=x", "1.1",
                200)
    assert access_log.lines[-1].endswith('"GET /api/stats?mytoken=x HTTP/1.1" 200')


def test_create_app_installs_the_redaction(access_log: _Keep, sqlite_url: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv(RETENTION_ENV, raising=False)
    create_app(sqlite_url, token=secrets.token_urlsafe(16))
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET",
                                             "/?token=s3cret", "1.1", 200)
    assert access_log.lines == ['127.0.0.1:5 - "GET /?token=*** HTTP/1.1" 200']


# /healthz reports the change feed ---------------------------------------------------------------
async def rename_table(db: DatabaseManager, old: str, new: str) -> None:
    sql = f"ALTER TABLE {old} RENAME TO {new}"
    await run_sql(db, sql, sql)


async def health_becomes(client: httpx.AsyncClient, status: int, timeout: float
                         ) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get("/healthz")
        if r.status_code == status or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.05)


async def test_healthz_reports_a_failing_feed_and_its_recovery(app: FastAPI,
                                                               client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert body["feed"]["healthy"] is True and body["feed"]["failures"] == 0
    db: DatabaseManager = app.state.db
    assert body["engine"] == db.dialect.value

    await rename_table(db, "changes", "changes_away")
    try:
        r = await health_becomes(client, 503, 5.0)
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["status"] == "degraded"
        assert body["feed"]["healthy"] is False and body["feed"]["failures"] >= 1
        assert body["feed"]["last_error"]
        await asyncio.sleep(1.0)  # still degraded while the log is away
        assert (await client.get("/healthz")).status_code == 503
    finally:
        await rename_table(db, "changes_away", "changes")
    r = await health_becomes(client, 200, 15.0)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok" and r.json()["feed"]["healthy"] is True


# filters that no stored text could equal: 400, never 500 ----------------------------------------
FILTERS = [
    ("/api/agents", "session_id"),
    ("/api/prompts", "session_id"),
    ("/api/prompts", "model"),
    ("/api/agent-logs", "session_id"),
    ("/api/agent-logs", "log_type"),
    ("/api/system-logs", "source"),
    ("/api/orchestrator-agents", "name"),
    ("/api/orchestrator-agents", "agent_type"),
]
FILTER_IDS = [f"{path.rsplit('/', 1)[1]}-{field}" for path, field in FILTERS]
NUL = "%00"
INVALID_UTF8 = "%ED%B2%80"  # the UTF-8 form of a lone surrogate, which is not valid UTF-8


@pytest.mark.parametrize("path, field", FILTERS, ids=FILTER_IDS)
@pytest.mark.parametrize("value", [NUL, f"a{NUL}b"], ids=["nul", "nul-inside"])
async def test_nul_in_a_filter_is_400(client: httpx.AsyncClient, path: str, field: str,
                                      value: str) -> None:
    await make_agent(client, "s-1")
    error = error_of(await client.get(f"{path}?{field}={value}"), 400, field)
    assert error["type"] == "ValidationError"


@pytest.mark.parametrize("value", [NUL, f"a{NUL}b"], ids=["nul", "nul-inside"])
async def test_nul_in_a_session_path_is_400(client: httpx.AsyncClient, value: str) -> None:
    error = error_of(await client.get(f"/api/sessions/{value}/summary"), 400, "session_id")
    assert error["type"] == "ValidationError"


@pytest.mark.parametrize("url", [
    *[f"{path}?{field}={INVALID_UTF8}" for path, field in FILTERS],
    *[f"{path}?{field}=%FF%FE" for path, field in FILTERS[:2]],
    f"/api/sessions/{INVALID_UTF8}/summary",
    "/api/sessions/%C0%AF/summary",
], ids=[*[f"{i}-surrogate" for i in FILTER_IDS], *[f"{i}-ff" for i in FILTER_IDS[:2]],
        "summary-surrogate", "summary-overlong"])
async def test_invalid_utf8_in_a_filter_is_never_a_server_error(client: httpx.AsyncClient,
                                                                url: str) -> None:
    await make_agent(client, "s-1")
    r = await client.get(url)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        error_of(r, r.status_code)
    else:
        assert r.json()["items"] == []


@pytest.mark.parametrize("url", [
    *[f"{path}?{field}={INVALID_UTF8}" for path, field in FILTERS],
    f"/api/sessions/{INVALID_UTF8}/summary",
], ids=[*FILTER_IDS, "summary"])
async def test_invalid_utf8_in_a_filter_is_400(client: httpx.AsyncClient, url: str) -> None:
    r = await client.get(url)
    error_of(r, 400)


def _cursor(created_at: str) -> str:
    raw = json.dumps([created_at, MISSING, "asc"], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("query, field", [
    (f"cursor={_cursor('9999-12-31T23:59:59-01:00')}", "cursor"),
    (f"cursor={_cursor('0001-01-01T00:00:00+01:00')}", "cursor"),
    ("since=9999-12-31T23:59:59-01:00", "since"),
    ("until=0001-01-01T00:00:00%2B01:00", "until"),
], ids=["cursor-late", "cursor-early", "since-late", "until-early"])
@pytest.mark.parametrize("path", ["/api/agents", "/api/prompts", "/api/agent-logs",
                                  "/api/system-logs"])
async def test_times_outside_years_1_to_9999_are_400(client: httpx.AsyncClient, path: str,
                                                     query: str, field: str) -> None:
    await make_agent(client, "s-1")
    r = await client.get(f"{path}?{query}")
    assert r.status_code == 400, r.text
    error_of(r, 400, field)


@pytest.mark.parametrize("query", ["since=9999-12-31T23:59:59-01:00",
                                   "until=0001-01-01T00:00:00%2B01:00"])
async def test_cost_summary_times_outside_the_range_are_400(client: httpx.AsyncClient,
                                                            query: str) -> None:
    r = await client.get(f"/api/costs?group_by=day&{query}")
    error_of(r, 400, query.split("=", 1)[0])


async def test_prompt_bodies_may_be_as_large_as_the_library_accepts(
        client: httpx.AsyncClient) -> None:
    # The OpenAPI schema says content may hold 10,000,000 characters: a body of 3 MB is
    # accepted (every record route admits its largest record: test_body_limits.py).
    agent = await make_agent(client, "big-prompts")
    r = await client.post("/api/prompts", json={"agent_id": agent["id"], "content": "x" * 3_000_000})
    assert r.status_code == 201, r.text
    r = await client.patch(f"/api/prompts/{r.json()['id']}", json={"response": "y" * 3_000_000})
    assert r.status_code == 200 and len(r.json()["response"]) == 3_000_000
    # A message over its 1,000,000 characters is within the body limit: refused by its field.
    r = await client.post("/api/system-logs", json={"message": "z" * 1_100_000})
    assert error_of(r, 422, "message")["type"] == "ValidationError"
