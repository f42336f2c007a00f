"""Fixtures for the OTLP tests: the app in-process (both engines) and its manager."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from orchestrator_db import DatabaseManager
from orchestrator_db.api import create_app

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "api"))  # apihelpers: real `serve` processes


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[FastAPI]:
    """The app on a fresh database (both engines), its lifespan (and OTLP receiver) running."""
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
def manager(app: FastAPI) -> DatabaseManager:
    """The app's own manager, to read back what was stored."""
    db: DatabaseManager = app.state.db
    return db
