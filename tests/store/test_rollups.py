"""The aggregates of migration 0005 equal a direct sum of the rows, after every kind of write.

``cost_days`` (live prompts per day, agent and model) and ``sessions`` (the session list's
order) are kept by triggers; these tests compare what ``cost_summary``, ``session_summary`` and
``page_sessions`` answer with the same figures computed here from the prompts and agents read
back one by one, after inserts, updates, deletes, agent moves and prune, on both engines.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbhelpers import run_sql
from orchestrator_db import DatabaseManager, ValidationError
from orchestrator_db.store.base import uuid7
from orchestrator_db.summaries import GROUPS

NOW = datetime.now(UTC)
MIDNIGHT = NOW.replace(hour=0, minute=0, second=0, microsecond=0)


async def _populate(db: DatabaseManager, rng: random.Random) -> tuple[list[str], list[str]]:
    """Three orchestrator agents, eight agents in four sessions, prompts over ten days."""
    oas = [await db.create_orchestrator_agent(f"oa{i}") for i in range(3)]
    agents = [await db.create_agent(oas[i % 3], f"session-{i % 4}", name=f"agent{i}")
              for i in range(8)]
    rows = [{
        "id": uuid7(), "agent_id": rng.choice(agents), "content": f"p{i}", "response": "r",
        "model": rng.choice(["m-a", "m-b", "", None]), "status": "completed",
        "tokens_input": rng.randint(0, 5000), "tokens_output": rng.randint(0, 5000),
        # multiples of 1/1024 add up exactly, in any order, on both engines
        "cost_usd": rng.randint(0, 4096) / 1024,
        "created_at": NOW - timedelta(days=rng.uniform(0, 10), seconds=i), "completed_at": None,
    } for i in range(120)]
    await db.import_rows("prompts", rows)
    return agents, oas


async def _direct(db: DatabaseManager) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every live prompt, and every agent by id, read back through the record API."""
    prompts = [p async for p in db.iter_prompts()]
    agents = {a["id"]: a async for a in db.iter_agents()}
    return prompts, agents


def _expected(prompts: list[dict[str, Any]], agents: dict[str, dict[str, Any]], group_by: str,
              since: datetime | None = None, until: datetime | None = None
              ) -> list[tuple[Any, ...]]:
    sums: dict[Any, list[Any]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for p in prompts:
        created = datetime.fromisoformat(p["created_at"])
        if (since and created < since) or (until and created >= until):
            continue
        agent = agents[p["agent_id"]]
        key = {"session": agent["session_id"], "agent": p["agent_id"],
               "orchestrator_agent": agent["orchestrator_agent_id"], "model": p["model"],
               "day": p["created_at"][:10]}[group_by]
        acc = sums[key]
        acc[0] += 1
        acc[1] += p["tokens_input"]
        acc[2] += p["tokens_output"]
        acc[3] += p["cost_usd"]
    return sorted(((k, *v[:3], round(v[3], 9)) for k, v in sums.items()),
                  key=lambda r: (r[0] is None, r[0] or ""))


def _answered(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["key"], r["prompts"], r["tokens_input"], r["tokens_output"], r["cost_usd"])
            for r in rows]


RANGES = [
    (None, None),
    (MIDNIGHT - timedelta(days=6), MIDNIGHT - timedelta(days=2)),  # whole days
    (MIDNIGHT - timedelta(days=7, hours=5, minutes=3), NOW - timedelta(days=1, hours=2)),  # parts
    (MIDNIGHT - timedelta(days=3, hours=-2), MIDNIGHT - timedelta(days=3, hours=-9)),  # one day
    (MIDNIGHT - timedelta(days=4), None),
    (None, NOW - timedelta(days=5, minutes=17)),
]


async def _check(db: DatabaseManager) -> None:
    prompts, agents = await _direct(db)
    for group_by in GROUPS:
        for since, until in RANGES:
            got = _answered(await db.cost_summary(group_by, since=since, until=until))
            assert got == _expected(prompts, agents, group_by, since, until), (group_by, since)
    by_session = {k: v for k, *v in _expected(prompts, agents, "session")}
    for session in {a["session_id"] for a in agents.values()}:
        summary = await db.session_summary(session)
        assert summary is not None
        assert [summary["prompts"], summary["tokens_input"], summary["tokens_output"],
                summary["cost_usd"]] == by_session.get(session, [0, 0, 0, 0.0])


async def test_costs_equal_a_direct_sum_after_inserts_updates_and_deletes(
        db: DatabaseManager) -> None:
    rng = random.Random(5)
    agents, oas = await _populate(db, rng)
    await _check(db)

    prompts, _ = await _direct(db)
    for p in rng.sample(prompts, 30):  # counted fields, then fields that count nothing
        await db.update_prompt(p["id"], tokens_input=rng.randint(0, 9000),
                               cost_usd=rng.randint(0, 4096) / 1024,
                               model=rng.choice(["m-a", "m-c", None, ""]))
    for p in rng.sample(prompts, 10):
        await db.update_prompt(p["id"], response="edited", status="failed")
    for p in rng.sample(prompts, 15):
        await db.delete_prompt(p["id"])
    await _check(db)

    await db.update_agent(agents[0], session_id="session-moved")
    await db.update_agent(agents[1], orchestrator_agent_id=oas[2])
    await db.delete_agent(agents[2])
    await db.create_prompt(agents[3], "new", model="m-a", tokens_input=7, cost_usd=0.5)
    await _check(db)


async def test_rolled_back_writes_leave_the_totals_alone(db: DatabaseManager) -> None:
    agents, _ = await _populate(db, random.Random(6))
    before = await db.cost_summary("agent")
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.create_prompt(agents[0], "gone", tokens_input=1000, cost_usd=8.0)
            await db.delete_agent(agents[1])
            raise RuntimeError("roll back")
    assert await db.cost_summary("agent") == before


async def test_prune_moves_cost_without_counting_it_twice(db: DatabaseManager) -> None:
    await _populate(db, random.Random(7))
    prompts, agents = await _direct(db)
    whole = {g: _expected(prompts, agents, g) for g in GROUPS}
    pruned = await db.prune(MIDNIGHT - timedelta(days=4), tables=["prompts"], batch_size=7)
    assert pruned["prompts"] > 0
    for group_by in GROUPS:
        assert _answered(await db.cost_summary(group_by)) == whole[group_by], group_by
    # whole days still split exactly between pruned days and live ones
    since = MIDNIGHT - timedelta(days=6)
    assert _answered(await db.cost_summary("day", since=since)) == _expected(
        prompts, agents, "day", since=since)


async def test_the_migration_fills_the_aggregates_of_an_existing_database(
        db: DatabaseManager, db_url: str) -> None:
    await _populate(db, random.Random(8))
    before = {g: await db.cost_summary(g) for g in GROUPS}
    sessions = [s["session_id"] for s in await db.list_sessions()]
    # As a database written before 0005: no aggregates, and 0005 not applied.
    async with db.transaction():
        for sql in ("DELETE FROM sessions", "DELETE FROM cost_days", "DELETE FROM cost_totals",
                    "DELETE FROM schema_migrations WHERE version = 5"):
            await db.store.execute(sql)
    async with DatabaseManager(url=db_url) as again:
        assert await again.schema_version() >= 5
        assert {g: await again.cost_summary(g) for g in GROUPS} == before
        assert [s["session_id"] for s in await again.list_sessions()] == sessions


async def test_session_pages_are_stable_while_sessions_keep_working(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    first: dict[str, str] = {}
    for i in range(23):
        first[f"s{i:02d}"] = await db.create_agent(oa, f"s{i:02d}")
    order = [s["session_id"] for s in await db.list_sessions(limit=100)]
    assert order == sorted(first, reverse=True)  # the most recently started first

    seen, cursor, n = [], None, 0
    while True:
        page = await db.page_sessions(limit=5, cursor=cursor)
        seen += [s["session_id"] for s in page.items]
        # Activity everywhere (old sessions become the most recently active) and new sessions.
        n += 1
        for agent in list(first.values())[::3]:
            await db.create_prompt(agent, "more", cost_usd=0.25)
            await db.create_agent_log(agent, f"tick {n}")
            await db.update_agent_status(agent, "executing")
        await db.create_agent(oa, f"late-{n}")
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == order  # none repeated, none skipped, in order


async def test_a_session_keeps_its_place_when_an_earlier_agent_comes_or_its_first_goes(
        db: DatabaseManager) -> None:
    # The key followed the earliest agent: an agent created earlier than a session's first
    # (OpenTelemetry children first, an import) moved the session back, to be paged again;
    # deleting its first agent moved it forward, past the cursor, never to be paged.
    oa = await db.create_orchestrator_agent("o")
    first = {f"s{i:02d}": await db.create_agent(oa, f"s{i:02d}") for i in range(10)}
    await db.create_agent(oa, "s05")  # a second agent, created after every session began
    order = [s["session_id"] for s in await db.list_sessions(limit=100)]
    assert order == sorted(first, reverse=True)
    page = await db.page_sessions(limit=3)
    seen = [s["session_id"] for s in page.items]
    earlier = await db.get_agent(first["s08"])
    assert earlier is not None
    await db.import_rows("agents", [{
        **earlier, "id": uuid7(), "name": "root, sent last",
        "created_at": NOW - timedelta(days=30), "updated_at": NOW - timedelta(days=30)}])
    await db.delete_agent(first["s05"])
    cursor = page.next_cursor
    while cursor is not None:
        page = await db.page_sessions(limit=3, cursor=cursor)
        seen += [s["session_id"] for s in page.items]
        cursor = page.next_cursor
    assert seen == order
    # What a summary reports is still the earliest agent.
    s08 = await db.session_summary("s08")
    assert s08 is not None
    assert datetime.fromisoformat(s08["first_activity"]) == (NOW - timedelta(days=30))


async def test_migration_8_replaces_the_session_triggers_of_an_existing_database(
        db: DatabaseManager, db_url: str) -> None:
    # As a database at version 7: its sessions triggers are not the new ones (here: ones that
    # fail), a prune kept the last day's cost under PostgreSQL's infinity, and 0008 is not
    # applied. Opening it applies 0008, which replaces the triggers and mends the day.
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "before-upgrade")
    rollup = ("INSERT INTO cost_rollups (day, session_id, agent_id, orchestrator_agent_id, "
              "prompts, cost_usd, updated_at) VALUES ({day}, 'before-upgrade', "
              f"'{agent}', '{oa}', 2, 1.5, '2026-01-01T00:00:00.000000+00:00')")
    await run_sql(db, rollup.format(day="'9999-12-31'"), rollup.format(day="'infinity'"))
    await run_sql(db, "DROP TRIGGER sessions_agents_insert",
                  "CREATE OR REPLACE FUNCTION orchestrator_db_sessions_insert() RETURNS trigger "
                  "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the old trigger'; END $$")
    await run_sql(db, "CREATE TRIGGER sessions_agents_insert AFTER INSERT ON agents BEGIN "
                  "SELECT RAISE(ABORT, 'the old trigger'); END",
                  "DELETE FROM schema_migrations WHERE version = 8")
    await run_sql(db, "DELETE FROM schema_migrations WHERE version = 8", "SELECT 1")
    async with DatabaseManager(url=db_url) as again:
        assert again.applied_migrations == [8]
        await again.create_agent(oa, "after-upgrade")
        assert [s["session_id"] for s in await again.list_sessions()] == [
            "after-upgrade", "before-upgrade"]
        assert [(r["key"], r["prompts"], r["cost_usd"])
                for r in await again.cost_summary("day")] == [("9999-12-31", 2, 1.5)]


async def test_the_first_and_last_days_are_days_on_both_engines(db: DatabaseManager) -> None:
    # PostgreSQL's driver sent 0001-01-01 and 9999-12-31 as -infinity and infinity: a cost
    # filter ending on the last day counted it twice, one starting on it counted nothing, and a
    # prune kept their cost under a day with no date.
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "edges")
    await db.import_rows("prompts", [{
        "id": uuid7(), "agent_id": agent, "content": "c", "response": None, "model": "m",
        "status": "completed", "tokens_input": 1, "tokens_output": 0, "cost_usd": 1.0,
        "created_at": when, "completed_at": None, "trace_id": None, "span_id": None}
        for when in ("0001-01-01T12:00:00+00:00", "9999-12-31T12:00:00+00:00")])

    async def prompts(**window: str) -> list[tuple[Any, ...]]:
        return [(r["key"], r["prompts"]) for r in await db.cost_summary("day", **window)]

    # Live prompts are filtered by their time; pruned ones by their day.
    assert await prompts(until="9999-12-31T06:00:00Z") == [("0001-01-01", 1)]
    assert await prompts(since="0001-01-01T13:00:00Z", until="0001-01-02") == []
    for _ in range(2):  # live prompts, then the same after prune folded them into rollups
        assert await prompts() == [("0001-01-01", 1), ("9999-12-31", 1)]
        assert await prompts(until="9999-12-31T23:00:00Z") == [("0001-01-01", 1),
                                                                ("9999-12-31", 1)]
        assert await prompts(since="9999-12-31") == [("9999-12-31", 1)]
        assert await prompts(since="0001-01-01", until="0001-01-02") == [("0001-01-01", 1)]
        await db.prune("9999-12-31T23:00:00Z", tables=("prompts",))
    assert await db.list_prompts() == []


async def test_session_cursor_is_checked(db: DatabaseManager) -> None:
    for bad in ("nope", "eyJ4IjoxfQ", "WyJzIiwiMjAyNiIsMV0"):
        with pytest.raises(ValidationError) as info:
            await db.page_sessions(limit=5, cursor=bad)
        assert info.value.field == "cursor"


async def test_costs_by_session_come_in_pages(db: DatabaseManager) -> None:
    await _populate(db, random.Random(9))
    for group_by in ("session", "agent"):
        whole = await db.cost_summary(group_by)
        got, cursor = [], None
        while True:
            page = await db.page_costs(group_by, limit=3, cursor=cursor)
            got += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert got == whole
    with pytest.raises(ValidationError):
        await db.page_costs("day", limit=3, cursor=page.next_cursor or "x")
    not_an_id = "WyJjIiwibm90LWFuLWlkIl0"  # ["c","not-an-id"]
    with pytest.raises(ValidationError) as info:
        await db.page_costs("agent", limit=3, cursor=not_an_id)
    assert info.value.field == "cursor"


async def test_stats_are_exact_for_small_tables_and_say_so(db: DatabaseManager) -> None:
    await _populate(db, random.Random(10))
    stats = await db.stats()
    assert stats["counts"]["prompts"] == 120 and stats["counts"]["agents"] == 8
    assert stats["estimated"] == dict.fromkeys(stats["counts"], False)
