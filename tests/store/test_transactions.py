"""transaction(): commit on success, roll back on exception, nested blocks are savepoints."""

from __future__ import annotations

import pytest

from orchestrator_db import DatabaseManager, ValidationError


async def test_commit_and_rollback(db: DatabaseManager) -> None:
    async with db.transaction():
        oa = await db.create_orchestrator_agent("kept")
        await db.create_agent(oa, "s")
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.create_orchestrator_agent("lost")
            raise RuntimeError("boom")
    assert [o["name"] for o in await db.list_orchestrator_agents()] == ["kept"]


async def test_error_inside_rolls_back_everything(db: DatabaseManager) -> None:
    with pytest.raises(ValidationError):
        async with db.transaction():
            oa = await db.create_orchestrator_agent("a")
            await db.create_agent(oa, "s", status="bogus")
    assert await db.list_orchestrator_agents() == []


async def test_nested_savepoint(db: DatabaseManager) -> None:
    async with db.transaction():
        await db.create_system_log("outer")
        with pytest.raises(KeyError):
            async with db.transaction():
                await db.create_system_log("inner, rolled back")
                raise KeyError("x")
        async with db.transaction():
            await db.create_system_log("inner, kept")
    assert [r["message"] for r in await db.list_system_logs()] == ["outer", "inner, kept"]


async def test_reads_inside_see_own_writes(db: DatabaseManager) -> None:
    async with db.transaction():
        oa = await db.create_orchestrator_agent("a")
        assert (await db.get_orchestrator_agent(oa) or {})["name"] == "a"
        assert len(await db.list_orchestrator_agents()) == 1
