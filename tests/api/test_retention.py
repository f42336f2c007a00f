"""The service applies ORCHESTRATOR_RETENTION_DAYS periodically while it runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator_db import DatabaseManager
from orchestrator_db.api import create_app


async def test_service_prunes_old_rows_when_retention_is_set(db_url: str,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    async with DatabaseManager(url=db_url) as db:
        oa = await db.create_orchestrator_agent("o")
        agent = await db.create_agent(oa, "s")
        await db.create_agent_log(agent, "old", created_at=datetime.now(UTC) - timedelta(days=3))
        await db.create_agent_log(agent, "new")
        monkeypatch.setenv("ORCHESTRATOR_RETENTION_DAYS", "2")
        app = create_app(url=db_url, retention_interval=0.05)
        async with app.router.lifespan_context(app):
            assert isinstance(app.state.retention, asyncio.Task)
            for _ in range(200):
                if [r["message"] for r in await db.list_agent_logs(agent)] == ["new"]:
                    break
                await asyncio.sleep(0.05)
        assert [r["message"] for r in await db.list_agent_logs(agent)] == ["new"]


async def test_no_retention_without_the_setting(db_url: str, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    monkeypatch.delenv("ORCHESTRATOR_RETENTION_DAYS", raising=False)
    async with DatabaseManager(url=db_url) as db:
        oa = await db.create_orchestrator_agent("o")
        agent = await db.create_agent(oa, "s")
        await db.create_agent_log(agent, "old", created_at=datetime.now(UTC) - timedelta(days=300))
        app = create_app(url=db_url, retention_interval=0.01)
        async with app.router.lifespan_context(app):
            # No retention task is started at all (not merely one that has not run yet).
            assert app.state.retention is None
        assert [r["message"] for r in await db.list_agent_logs(agent)] == ["old"]
