"""Concurrent awaited writes share transactions without weakening "awaited means committed"."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from group_helpers import ten_writers_the_first_cancelled

from orchestrator_db import DatabaseManager, ForeignKeyError

MISSING = "00000000-0000-7000-8000-000000000000"


async def test_fifty_concurrent_writers_and_one_bad_row(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    seen_committed: list[bool] = []
    other = sqlite3.connect(db.db_path) if db.db_path else None

    async def write(i: int) -> str:
        log_id = await db.create_agent_log(MISSING if i == 17 else agent, f"m{i}")
        if other is not None:  # another connection sees it the moment the await returns
            seen_committed.append(other.execute(
                "SELECT count(*) FROM agent_logs WHERE id = ?", (log_id,)).fetchone()[0] == 1)
        return log_id

    try:
        results = await asyncio.gather(*[write(i) for i in range(50)], return_exceptions=True)
    finally:
        if other is not None:
            other.close()
    errors = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert [(i, type(r)) for i, r in errors] == [(17, ForeignKeyError)]
    assert MISSING in str(errors[0][1])
    ids = [r for r in results if isinstance(r, str)]
    rows = await db.list_agent_logs(agent, limit=1000)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert sorted(r["message"] for r in rows) == sorted(f"m{i}" for i in range(50) if i != 17)
    if other is not None:
        assert seen_committed == [True] * 49


async def test_concurrent_writes_share_commits_on_sqlite(sqlite_url: str) -> None:
    async with DatabaseManager(url=sqlite_url) as db:
        oa = await db.create_orchestrator_agent("o")
        agent = await db.create_agent(oa, "s")
        commits: list[str] = []
        conn = db.store.connection.get()  # type: ignore[attr-defined]
        conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        try:
            await asyncio.gather(*[db.create_agent_log(agent, f"m{i}") for i in range(50)])
        finally:
            conn.set_trace_callback(None)
        assert 1 <= len(commits) < 50
        assert len(await db.list_agent_logs(agent, limit=1000)) == 50


async def test_group_writes_wait_for_an_open_transaction(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    inside = asyncio.Event()
    release = asyncio.Event()

    async def rolled_back() -> None:
        with pytest.raises(RuntimeError):
            async with db.transaction():
                await db.create_agent_log(agent, "rolled back")
                inside.set()
                await release.wait()
                raise RuntimeError("undo")

    tx = asyncio.create_task(rolled_back())
    await inside.wait()
    writers = [asyncio.create_task(db.create_agent_log(agent, f"w{i}")) for i in range(20)]
    await asyncio.sleep(0.01)
    release.set()
    await tx
    await asyncio.gather(*writers)
    messages = sorted(r["message"] for r in await db.list_agent_logs(agent, limit=1000))
    assert messages == sorted(f"w{i}" for i in range(20))


async def test_a_cancelled_writer_does_not_disturb_the_group(db: DatabaseManager) -> None:
    await ten_writers_the_first_cancelled(db, once_started=False)


async def test_cancelling_the_group_leader_still_commits_the_others(sqlite_url: str) -> None:
    async with DatabaseManager(url=sqlite_url) as db:
        # The leader is cancelled while it yields before committing.
        await ten_writers_the_first_cancelled(db, once_started=True)


async def test_a_loop_of_lone_writes_still_lets_timers_and_other_tasks_run(sqlite_url: str) -> None:
    # A lone write commits without giving up its loop turn (nothing could join its group), but a
    # caller looping over writes must not starve the loop: a timer task keeps ticking meanwhile.
    async with DatabaseManager(url=sqlite_url) as db:
        oa = await db.create_orchestrator_agent("o")
        agent = await db.create_agent(oa, "s")
        ticks: list[int] = []
        writes_done = 0

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.001)
                ticks.append(writes_done)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)  # the ticker is waiting on its timer, not ready to run
        ticks.clear()
        loop = asyncio.get_running_loop()
        start = loop.time()
        # At least 0.1 s and 50 writes: one slow write (a checkpoint, a busy disk) must not
        # end the loop before the ticker had a chance to run between two writes.
        while loop.time() - start < 0.1 or writes_done < 50:
            await db.create_agent_log(agent, f"m{writes_done}")
            writes_done += 1
        task.cancel()
        # The ticker ran between writes, not only once they were all done.
        assert [t for t in ticks if 0 < t < writes_done], (ticks, writes_done)
        # Every row (a fast machine writes more than one page of 1,000 in 0.1 s).
        assert len([r async for r in db.iter_agent_logs(agent)]) == writes_done
