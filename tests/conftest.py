"""Shared fixtures: real SQLite files and a real PostgreSQL server, each test on a fresh one.

PostgreSQL comes from ORCHESTRATOR_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/test);
each test gets its own schema (selected through the URL's search_path, so subprocesses given the
URL see the same schema), dropped afterwards. When no server answers, PostgreSQL tests are
skipped with the reason, unless ORCHESTRATOR_REQUIRE_PG=1 (CI), where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from orchestrator_db import DatabaseManager
from orchestrator_db.api import create_app

PG_URL = os.environ.get("ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("ORCHESTRATOR_REQUIRE_PG") == "1"
ENGINES = ["sqlite", "postgresql"]


def _pg_execute(sql: str) -> None:
    """Run one statement on the test server (in a thread: callers may be inside a loop)."""

    async def run() -> None:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()


@cache
def pg_unavailable() -> str | None:
    """Return why PostgreSQL cannot be used for tests, or None when it can."""
    try:
        _pg_execute("SELECT 1")
    except Exception as exc:  # any failure to reach the server is a reason to skip
        return f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {exc}"
    return None


def require_pg() -> None:
    """Skip (or, in CI, fail) the current test when PostgreSQL is not there."""
    reason = pg_unavailable()
    if reason is None:
        return
    if REQUIRE_PG:
        pytest.fail(f"ORCHESTRATOR_REQUIRE_PG=1 but {reason}")
    pytest.skip(reason)


def _with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}search_path={schema}"


@pytest.fixture
def pg_server_url() -> str:
    """The test server's base URL (for tests that make their own schemas)."""
    require_pg()
    return PG_URL


@pytest.fixture
def pg_schema_url() -> Callable[[str], str]:
    """Turn a schema name into a URL of the test server selecting that schema."""
    require_pg()
    return lambda schema: _with_search_path(PG_URL, schema)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL to a fresh, empty PostgreSQL schema, dropped after the test."""
    require_pg()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    _pg_execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_search_path(PG_URL, schema)
    finally:
        _pg_execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A URL to a SQLite file that does not exist yet, in the test's tmp dir."""
    return f"sqlite:///{tmp_path}/data/orchestrator.db"


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL, once per engine."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[DatabaseManager]:
    """A connected DatabaseManager on a fresh database, once per engine."""
    async with DatabaseManager(url=db_url) as manager:
        yield manager


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[FastAPI]:
    """The service on a fresh database (both engines), its lifespan (feed, OTLP receiver) on."""
    application = create_app(db_url)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``app`` in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright cannot download its own browser here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright; in CI (CI=true) a missing browser fails."""
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
