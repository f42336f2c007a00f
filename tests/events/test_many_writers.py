"""Many writers committing at once (PostgreSQL), and the wake-up path that replaced NOTIFY.

The triggers send no signal since migration 0006: the reader polls the change log's head. These
tests check that every change of many concurrent committers still arrives exactly once, in
position order, and that databases created before 0006 lose their NOTIFY when they upgrade.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack, aclosing

import pytest

from orchestrator_db import DatabaseManager
from orchestrator_db.events import ChangeEvent, ChangeFeed
from orchestrator_db.store.postgres_changes import IDLE_INTERVAL, PostgresChangeReader

WAIT = 10.0  # for the whole burst; events normally follow within ~50 ms
CLIENTS, TASKS, COMMITS = 4, 4, 15  # 16 concurrent committers, single-row commits each
NOTIFYING = ("SELECT count(*) AS n FROM pg_proc WHERE proname LIKE 'orchestrator_db_changes_%' "
             "AND pronamespace = current_schema()::regnamespace AND prosrc LIKE '%pg_notify%'")


async def test_many_concurrent_writers_every_position_once_in_order(pg_url: str) -> None:
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(DatabaseManager(url=pg_url))
        writers = [await stack.enter_async_context(DatabaseManager(url=pg_url))
                   for _ in range(CLIENTS)]
        feed = await stack.enter_async_context(ChangeFeed(db))
        events = await stack.enter_async_context(aclosing(feed.subscribe()))
        start = await feed.current_position()
        oa = await db.create_orchestrator_agent("many")
        agent = await db.create_agent(oa, "s-many")

        async def commits(writer: DatabaseManager, task: int) -> list[str]:
            ids = []
            for i in range(COMMITS):
                if i == 3:  # a position taken and rolled back: a gap that never fills
                    with pytest.raises(RuntimeError):
                        async with writer.transaction():
                            await writer.create_agent_log(agent, "rolled back")
                            raise RuntimeError("roll back")
                if i == 7:  # a statement of several rows among the single ones
                    ids += await writer.create_agent_logs(
                        [{"agent_id": agent, "message": f"{task} batch {n}"} for n in range(3)])
                ids.append(await writer.create_agent_log(agent, f"{task} single {i}"))
            return ids

        written = await asyncio.gather(*(commits(w, t) for t, w in enumerate(
            writers[i % CLIENTS] for i in range(CLIENTS * TASKS))))
        expected = {oa, agent} | {log for ids in written for log in ids}
        got: list[ChangeEvent] = []
        async with asyncio.timeout(WAIT):
            while len(got) < len(expected):
                got.append(await anext(events))
        # Nothing more arrives: no change was delivered twice.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                got.append(await anext(events))
        committed = await db.store.fetch(
            "SELECT position, row_id::text AS id FROM changes WHERE position > $1 "
            "ORDER BY position", [start])
    assert [(e.position, e.id) for e in got] == [(r["position"], r["id"]) for r in committed]
    assert {e.id for e in got} == expected and len(got) == len(expected)


async def test_triggers_send_no_notify_and_upgrading_removes_it(pg_url: str) -> None:
    async with DatabaseManager(url=pg_url) as db:
        assert (await db.store.fetch(NOTIFYING))[0]["n"] == 0
        # A database migrated before 0006: its functions still NOTIFY.
        await db.store.execute(
            "CREATE OR REPLACE FUNCTION orchestrator_db_changes_system_logs() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('orchestrator_db_changes', '1'); "
            "RETURN NULL; END $$")
        await db.store.execute("DELETE FROM schema_migrations WHERE version = 6")
        assert (await db.store.fetch(NOTIFYING))[0]["n"] == 1
    async with DatabaseManager(url=pg_url) as db, ChangeFeed(db) as feed, \
            aclosing(feed.subscribe()) as events:
        assert (await db.store.fetch(NOTIFYING))[0]["n"] == 0
        log = await db.create_system_log("after the upgrade")
        event = await asyncio.wait_for(anext(events), WAIT)
    assert (event.table, event.id) == ("system_logs", log)


async def test_idle_reader_backs_off_and_wakes_on_a_commit(pg_url: str) -> None:
    name = f"idle-{uuid.uuid4().hex[:8]}"
    async with DatabaseManager(url=pg_url) as db, DatabaseManager(url=pg_url) as writer:
        reader = db.store.change_reader(poll_interval=0.01)
        assert isinstance(reader, PostgresChangeReader)
        await reader.open()
        try:
            assert reader.interval() == 0.01  # just opened: looks often
            loop = asyncio.get_running_loop()
            reader._changed_at = loop.time() - 60  # quiet for a minute
            assert reader.interval() == IDLE_INTERVAL
            assert not await reader.check()
            await writer.create_orchestrator_agent(name)
            assert await reader.wait(WAIT)
            assert reader.interval() == 0.01  # a change: back to looking often
            assert not await reader.wait(0.05)
        finally:
            await reader.close()
