"""The engine side of the change feed (``store.changes.ChangeReader``): reads, signals, reconnects."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import pytest

from orchestrator_db import DatabaseManager, NotConnectedError, OrchestratorDBError
from orchestrator_db.events import ChangeFeed
from orchestrator_db.store.changes import BATCH, ChangeReader
from orchestrator_db.store.postgres_changes import HEAD_SQL
from orchestrator_db.tables import CHANGE_COLUMNS

WAIT = 5.0  # generous: a signal normally arrives within ~50 ms


@asynccontextmanager
async def opened(db: DatabaseManager, poll_interval: float = 0.01) -> AsyncIterator[ChangeReader]:
    reader = db.store.change_reader(poll_interval=poll_interval)
    await reader.open()
    try:
        yield reader
    finally:
        await reader.close()


async def test_reads_change_rows_and_records(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("reader")
    agent = await db.create_agent(oa, "s-1")
    logs = await db.create_agent_logs([{"agent_id": agent, "message": f"m{i}"}
                                       for i in range(BATCH + 20)])
    async with opened(db) as reader:
        newest = await reader.max_position()
        assert newest == 2 + len(logs)
        first = await reader.changes(0, limit=3)
        assert [tuple(c) for c in first] == [CHANGE_COLUMNS] * 3
        assert [(c["position"], c["table_name"], c["op"], c["row_id"]) for c in first] == [
            (1, "orchestrator_agents", "insert", oa), (2, "agents", "insert", agent),
            (3, "agent_logs", "insert", logs[0])]
        assert [c["position"] for c in await reader.changes(1, upto=4)] == [2, 3, 4]
        assert len(await reader.changes(0)) == BATCH
        # More ids than one query takes: read in batches, every record found once.
        rows = await reader.select("agent_logs", [*logs, str(uuid.uuid4())])
        assert sorted(r["id"] for r in rows) == sorted(logs)
        assert next(r for r in rows if r["id"] == logs[0]) == await db.get_agent_log(logs[0])
        assert await reader.select("agents", [agent], ("id", "session_id")) == [
            {"id": agent, "session_id": "s-1"}]
        assert await reader.select("agents", []) == []
        if reader.ordered:
            assert await reader.running_writers() == frozenset()


async def test_wait_reports_a_commit_of_another_connection(db_url: str) -> None:
    async with DatabaseManager(url=db_url) as db, DatabaseManager(url=db_url) as writer, \
            opened(db) as reader:
        await writer.create_orchestrator_agent("signal")
        assert await reader.wait(WAIT)
        assert await reader.max_position() == 1


async def test_sqlite_reader_is_read_only_and_polls_data_version(sqlite_url: str) -> None:
    async with DatabaseManager(url=sqlite_url) as db:
        async with opened(db) as reader:
            assert reader.ordered
            assert not await reader.wait(0.05)  # nothing committed: the timeout passes
            with pytest.raises(OrchestratorDBError):
                await reader.fetch("DELETE FROM changes")
            # The store's own connection is another connection: its commits count too.
            await db.create_system_log("mine")
            assert await reader.wait(WAIT)
            assert not await reader.wait(0.05)
        with pytest.raises(NotConnectedError):
            await reader.fetch("SELECT 1")


async def test_postgres_poller_is_reopened_and_events_keep_coming(pg_url: str) -> None:
    name = f"feed-{uuid.uuid4().hex[:12]}"  # finds this test's poller among other sessions
    url = f"{pg_url}&application_name={name}"
    pollers = ("SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
               "AND query = $2")
    async with DatabaseManager(url=url) as db, DatabaseManager(url=pg_url) as admin, \
            ChangeFeed(db) as feed, aclosing(feed.subscribe()) as events:
        assert not db.store.change_reader(poll_interval=0.01).ordered
        [before] = await admin.store.fetch(pollers, [name, HEAD_SQL])
        await admin.store.fetch("SELECT pg_terminate_backend($1)", [before["pid"]])
        # The watcher's next look at the head finds the connection gone and opens a new one.
        deadline = asyncio.get_running_loop().time() + WAIT
        while True:
            now = await admin.store.fetch(pollers, [name, HEAD_SQL])
            if now and now != [before]:
                break
            assert asyncio.get_running_loop().time() < deadline, "no new poller"
            await asyncio.sleep(0.05)
        oa = await admin.create_orchestrator_agent("after the reconnect")
        event = await asyncio.wait_for(anext(events), WAIT)
    assert event.id == oa
