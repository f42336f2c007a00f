"""A migration whose row in ``schema_migrations`` is gone is applied again, with every later one,
and nothing changes: no column added twice, no index a later migration dropped coming back, no
cost counted twice (upgrade used to fail on 0004 and double the pruned cost with 0005)."""

from __future__ import annotations

from typing import Any

from dbhelpers import run_sql
from orchestrator_db import DatabaseManager
from orchestrator_db.config import Dialect
from orchestrator_db.models import utc_now
from orchestrator_db.store.migrations import load_migrations

VERSIONS = [m.version for m in load_migrations(Dialect.SQLITE)]


async def _populate(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("planner")
    for session in ("s-1", "s-2"):
        agent = await db.create_agent(oa, session, model="opus")
        for i, model in enumerate(("opus", None, "haiku")):
            prompt = await db.create_prompt(agent, f"p{i}", model=model)
            await db.complete_prompt(prompt, "r", tokens_input=10 + i, tokens_output=i,
                                     cost_usd=0.125 * (i + 1))
        await db.create_agent_log(agent, "a line")
    cutoff = utc_now()
    late = await db.create_agent(oa, "s-3")
    await db.create_prompt(late, "kept", model="opus")
    assert (await db.prune(cutoff, tables=("prompts",)))["prompts"] == 6  # into cost_rollups


async def _indexes(db: DatabaseManager) -> list[str]:
    sql = ("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
           if db.db_path is not None else
           "SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()")
    return sorted(r["name"] for r in await db.store.fetch(sql))


async def _state(db: DatabaseManager) -> dict[str, Any]:
    stats = await db.stats()
    return {
        "indexes": await _indexes(db),
        "costs": {group: await db.cost_summary(group)
                  for group in ("model", "day", "session", "agent", "orchestrator_agent")},
        "sessions": await db.list_sessions(),
        "counts": stats["counts"],
        "version": await db.schema_version(),
    }


async def test_each_migration_applied_again_changes_nothing(db: DatabaseManager) -> None:
    await _populate(db)
    before = await _state(db)
    assert before["costs"]["model"] and before["version"] == VERSIONS[-1]
    url = db.target.url
    for version in VERSIONS:
        await run_sql(db, f"DELETE FROM schema_migrations WHERE version = {version}",
                      f"DELETE FROM schema_migrations WHERE version = {version}")
        async with DatabaseManager(url=url) as again:
            assert again.applied_migrations == [version]
            assert await _state(again) == before, f"after applying {version} again"
            rows = await again.store.fetch("SELECT version FROM schema_migrations")
            assert sorted(r["version"] for r in rows) == VERSIONS
