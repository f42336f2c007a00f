"""Fixtures for the service tests: an in-process app and client, real uvicorn servers.

In-process tests drive the app through ``httpx.ASGITransport`` inside the app's own lifespan
(``app.router.lifespan_context``), so the DatabaseManager and the ChangeFeed are the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from apihelpers import Server, start_server
from fastapi import FastAPI

from orchestrator_db.api import create_app


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[FastAPI]:
    """The app on a fresh database (both engines), its lifespan running."""
    application = create_app(db_url)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``app`` in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    """A factory of real servers, all stopped after the test."""
    started: list[Server] = []

    def start(url: str, **kwargs: Any) -> Server:
        server = start_server(url, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
