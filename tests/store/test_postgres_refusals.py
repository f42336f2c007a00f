"""PostgreSQL refusing work after the manager connected: the caller gets UnavailableError (a 503
with Retry-After from the service), never a bare "PostgreSQL error" (a 500)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from orchestrator_db import DatabaseManager
from orchestrator_db.api import create_app
from orchestrator_db.errors import UnavailableError


async def test_a_deadlock_victim_gets_unavailable(pg_url: str) -> None:
    async with DatabaseManager(url=pg_url) as db:
        oa = await db.create_orchestrator_agent("deadlocks")
        agent = await db.create_agent(oa, "a")
        first, second = [await db.create_prompt(agent, f"p{i}") for i in range(2)]
        other = await asyncpg.connect(pg_url)
        try:
            await other.execute("BEGIN")
            await other.execute("UPDATE prompts SET response = 'x' WHERE id = $1", second)
            with pytest.raises(UnavailableError, match="conflict with another"):
                async with db.transaction():
                    await db.update_prompt(first, response="mine")
                    # Waits for `other`, which then waits for this transaction: PostgreSQL's
                    # deadlock check runs first where the wait began first, here.
                    mine = asyncio.ensure_future(db.update_prompt(second, response="mine"))
                    await asyncio.sleep(0.3)
                    theirs = asyncio.ensure_future(other.execute(
                        "UPDATE prompts SET response = 'x' WHERE id = $1", first))
                    await mine
            await theirs
            await other.execute("COMMIT")
        finally:
            await other.close()
        assert (await db.get_prompt(first))["response"] == "x"


async def test_a_dropped_database_answers_503(pg_server_url: str) -> None:
    name = f"t_dropped_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        url = pg_server_url.rsplit("/", 1)[0] + f"/{name}"
        app = create_app(url=url)
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1") as client:
            assert (await client.get("/api/agents")).status_code == 200
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
            for path in ("/api/agents", "/api/system-logs"):
                response = await client.get(path)
                assert response.status_code == 503, response.text
                assert "Retry-After" in response.headers
                assert "dropped" in response.json()["error"]["message"]
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
