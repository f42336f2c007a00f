"""A database that cannot serve now is a 503 (with Retry-After), not a 500, and /healthz says
so; the retention task counts a failure and goes on.

Before: a SQLite database locked past the busy timeout (or a full disk, a PostgreSQL server
refusing connections) answered 500; /healthz answered 500 when the database did not answer;
an unexpected error ended the retention task for good, unnoticed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from orchestrator_db import DatabaseManager, UnavailableError
from orchestrator_db.api import app as app_module
from orchestrator_db.api import create_app
from orchestrator_db.store.postgres_driver import translate_error


async def test_a_database_locked_too_long_is_503_with_retry_after(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    async with DatabaseManager(path, busy_timeout_ms=200) as db:
        app = create_app(manager=db)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                other = sqlite3.connect(path, isolation_level=None)
                other.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
                try:
                    response = await c.post("/api/system-logs", json={"message": "m"})
                finally:
                    other.execute("ROLLBACK")
                    other.close()
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "5"
                assert response.json()["error"]["type"] == "UnavailableError"
                assert "locked" in response.json()["error"]["message"]
                ok = await c.post("/api/system-logs", json={"message": "m"})
                assert ok.status_code == 201
    with pytest.raises(UnavailableError):
        raise UnavailableError("importable from the package")


async def test_healthz_is_503_when_the_database_does_not_answer(db_url: str) -> None:
    app = create_app(db_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            assert (await c.get("/healthz")).json()["database_error"] is None
            await app.state.db.store.close()  # the database goes away under the service
            response = await c.get("/healthz")
            await app.state.db.store.open()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded" and body["schema_version"] is None
    assert body["database_error"]


async def test_retention_counts_a_failure_and_runs_again(sqlite_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    async def flaky(db: Any) -> dict[str, int]:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("a bug in one run")
        return {}

    monkeypatch.setenv("ORCHESTRATOR_RETENTION_DAYS", "30")
    monkeypatch.setattr(app_module, "apply_retention_policy", flaky)
    app = create_app(sqlite_url, retention_interval=0.01)
    async with app.router.lifespan_context(app):
        for _ in range(500):
            if len(calls) >= 3:
                break
            await asyncio.sleep(0.01)
        assert not app.state.retention.done()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            retention = (await c.get("/healthz")).json()["retention"]
    assert len(calls) >= 3
    assert retention["failures"] == 1 and "a bug in one run" in retention["last_error"]
    assert retention["runs"] >= 3


@pytest.mark.parametrize("exc", [
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.DiskFullError("could not extend file: No space left on device"),
    asyncpg.ObjectNotInPrerequisiteStateError(
        'database "x" is not currently accepting connections'),  # ALLOW_CONNECTIONS false
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in "
                                "progress"),
    ConnectionRefusedError(111, "Connection refused"),
], ids=lambda e: type(e).__name__)
def test_postgresql_errors_of_a_server_that_cannot_serve_now_are_unavailable(
        exc: Exception) -> None:
    # What a dropped, refusing or full server raises (a pool connection it dropped is found
    # when used: "another operation is in progress"); each was a 500 before.
    assert isinstance(translate_error(exc), UnavailableError)
