"""The token rule: off loopback a token is mandatory, and then every request must carry it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from apihelpers import Server
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from orchestrator_db.api import ApiConfigError, create_app, is_loopback

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(autouse=True)
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRATOR_API_TOKEN", raising=False)


@pytest.fixture
async def exposed_app(sqlite_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(sqlite_url, host="0.0.0.0", token=TOKEN)
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI, **kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                             **kwargs)  # type: ignore[arg-type]


def test_loopback_detection() -> None:
    for host in ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"]:
        assert is_loopback(host), host
    for host in ["0.0.0.0", "", "::", "192.168.1.10", "example.com"]:
        assert not is_loopback(host), host


def test_non_loopback_without_token_is_refused(sqlite_url: str) -> None:
    with pytest.raises(ApiConfigError, match="ORCHESTRATOR_API_TOKEN"):
        create_app(sqlite_url, host="0.0.0.0")
    with pytest.raises(ApiConfigError, match="empty"):
        create_app(sqlite_url, host="0.0.0.0", token="  ")


def test_token_from_environment(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", TOKEN)
    assert create_app(sqlite_url, host="0.0.0.0").state.token_required


async def test_loopback_is_zero_config(sqlite_url: str) -> None:
    app = create_app(sqlite_url)
    assert not app.state.token_required
    async with app.router.lifespan_context(app), client_for(app) as client:
        assert (await client.get("/api/agents")).status_code == 200


async def test_requests_need_the_token(exposed_app: FastAPI) -> None:
    async with client_for(exposed_app) as client:
        for path in ["/api/agents", "/api/stats", "/", "/static/app.js", "/openapi.json"]:
            r = await client.get(path)
            assert r.status_code == 401, path
            assert r.json()["error"]["type"] == "Unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
        r = await client.post("/api/system-logs", json={"message": "sneaky"})
        assert r.status_code == 401
        r = await client.get("/api/agents", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = await client.get("/api/agents", params={"token": "wrong"})
        assert r.status_code == 401
        # Health checks stay open; they say nothing about the data.
        assert (await client.get("/healthz")).status_code == 200

        r = await client.get("/api/agents", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
        r = await client.post("/api/system-logs", json={"message": "allowed"},
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 201
        r = await client.get("/api/system-logs", headers={"Authorization": f"bearer {TOKEN}"})
        assert [row["message"] for row in r.json()["items"]] == ["allowed"]


async def test_browser_token_becomes_a_cookie(exposed_app: FastAPI) -> None:
    async with client_for(exposed_app) as client:
        r = await client.get("/", params={"token": TOKEN})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        # The client kept the cookie: the dashboard's own requests now pass without a token.
        assert (await client.get("/static/app.js")).status_code == 200
        assert (await client.get("/api/stats")).status_code == 200
    async with client_for(exposed_app, cookies={"orchestrator_db_token": "wrong"}) as client:
        assert (await client.get("/api/stats")).status_code == 401


async def test_body_limit_applies_after_auth(exposed_app: FastAPI) -> None:
    async with client_for(exposed_app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        # Over the limit of system logs (about 18 MB: a message of 1,000,000 characters and
        # details of 1 MB, at their costliest in JSON; test_body_limits.py).
        r = await client.post("/api/system-logs", content=b" " * 20_000_000,
                              headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"]["type"] == "PayloadTooLarge"


async def test_websocket_needs_the_token(sqlite_url: str,
                                         servers: Callable[..., Server]) -> None:
    server = servers(sqlite_url, host="127.0.0.1", env={"ORCHESTRATOR_API_TOKEN": TOKEN})
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{server.ws}/ws/events"):
            pass
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        async with connect(f"{server.ws}/ws/events",
                           additional_headers={"Authorization": "Bearer wrong"}):
            pass

    async with httpx.AsyncClient(base_url=server.http) as client:
        assert (await client.get("/api/stats")).status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with connect(f"{server.ws}/ws/events", additional_headers=headers) as ws, \
                connect(f"{server.ws}/ws/events?token={TOKEN}") as ws_browser:
            r = await client.post("/api/system-logs", json={"message": "hello"}, headers=headers)
            assert r.status_code == 201
            for sock in (ws, ws_browser):
                while True:
                    event = json.loads(await asyncio.wait_for(sock.recv(), 30))
                    if event["id"] == r.json()["id"]:
                        break


def test_serve_refuses_a_public_address_without_token(sqlite_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_API_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-c", "from orchestrator_db.cli import main; main()", "serve",
         "--host", "0.0.0.0", "--port", "0", "--url", sqlite_url],
        capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert "ORCHESTRATOR_API_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


async def test_loopback_answers_only_loopback_names(sqlite_url: str) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    app = create_app(sqlite_url)
    async with app.router.lifespan_context(app):
        async with client_for(app) as client:
            assert (await client.get("/api/stats")).status_code == 200
            r = await client.get("/api/stats", headers={"Host": "evil.example:8000"})
            assert r.status_code == 403 and r.json()["error"]["type"] == "Forbidden"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://localhost:8000") as client:
            assert (await client.get("/api/stats")).status_code == 200
    proxied = create_app(sqlite_url, allowed_hosts=["127.0.0.1", "orchestrator.internal"])
    async with proxied.router.lifespan_context(proxied), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=proxied),
            base_url="http://orchestrator.internal") as client:
        assert (await client.get("/api/stats")).status_code == 200


async def test_cross_origin_websocket_is_refused(sqlite_url: str,
                                                 servers: Callable[..., Server]) -> None:
    server = servers(sqlite_url)
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{server.ws}/ws/events", origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    async with connect(f"{server.ws}/ws/events",
                       origin=f"http://127.0.0.1:{server.port}") as ws:  # type: ignore[arg-type]
        await ws.ping()
