"""The change feed keeps going when its input is odd and says so when it cannot read at all.

A position from a database that was replaced is answered with a ``reset`` notice; a change row
naming a table this version does not know, an unrelated transaction left open, or a position
that never fills (a rollback) do not hold live events back; losing the change log is reported
(``feed_error``, ``healthy`` False, ``failures``) and the feed recovers when it is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

import asyncpg
import pytest

from dbhelpers import run_sql
from orchestrator_db import DatabaseManager
from orchestrator_db.events import ChangeEvent, ChangeFeed

WAIT = 5.0  # an event normally arrives within ~50 ms; this bounds a regression to a failure
RECOVERY_WAIT = 15.0  # the feed backs off up to 5 s between attempts while it cannot read


async def next_event(events: AsyncIterator[ChangeEvent], timeout: float = WAIT) -> ChangeEvent:
    return await asyncio.wait_for(anext(events), timeout)


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


# a position this database never reached ---------------------------------------------------------
@pytest.mark.parametrize("ahead", [1, 1_000_000, 2**62])
async def test_subscribing_after_a_position_never_reached_starts_with_a_reset(
        db: DatabaseManager, ahead: int) -> None:
    oa = await db.create_orchestrator_agent("replaced")
    agent = await db.create_agent(oa, "s-1")
    async with ChangeFeed(db) as feed:
        newest = await feed.current_position()
        assert newest == 2
        async with aclosing(feed.subscribe(after=newest + ahead)) as events:
            reset = await next_event(events)
            assert (reset.op, reset.position) == ("reset", newest)
            assert reset.row is not None and str(newest + ahead) in reset.row["message"]
            log = await db.create_agent_log(agent, "after the reset")
            event = await next_event(events)
            assert (event.table, event.op, event.id) == ("agent_logs", "insert", log)
            assert event.position == newest + 1
            assert event.row is not None and event.row["message"] == "after the reset"
            update = await db.update_agent_status(agent, "completed")
            assert update
            event = await next_event(events)
            assert (event.table, event.op, event.id, event.position) == (
                "agents", "update", agent, newest + 2)


async def test_subscribing_at_the_newest_position_gets_no_reset(db: DatabaseManager) -> None:
    await db.create_orchestrator_agent("current")
    async with ChangeFeed(db) as feed:
        newest = await feed.current_position()
        async with aclosing(feed.subscribe(after=newest)) as events:
            log = await db.create_system_log("next")
            event = await next_event(events)
    assert (event.op, event.id, event.position) == ("insert", log, newest + 1)


# a change row of a table this version does not know ----------------------------------------------
async def test_a_change_row_of_an_unknown_table_does_not_stop_the_feed(
        db: DatabaseManager) -> None:
    async with ChangeFeed(db) as feed, aclosing(feed.subscribe()) as events:
        await run_sql(
            db,
            "INSERT INTO changes (table_name, op, row_id, created_at) VALUES ('widgets', "
            "'insert', 'w-1', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))",
            "INSERT INTO changes (table_name, op, row_id) VALUES ('widgets', 'insert', "
            "gen_random_uuid())",
        )
        log = await db.create_system_log("after the widget", log_level="WARNING")
        before: list[ChangeEvent] = []
        event = await next_event(events)
        while event.id != log:
            before.append(event)
            event = await next_event(events)
        assert event.row is not None and event.row["message"] == "after the widget"
        # Whatever the feed makes of the unknown row, it is no record of ours.
        assert all(e.table == "widgets" and e.row is None for e in before)
        assert feed.healthy
        later = await db.create_system_log("and later")
        assert (await next_event(events)).id == later


# PostgreSQL: an unrelated idle transaction and a gap that never fills ---------------------------
async def test_postgresql_idle_transaction_and_a_rollback_gap_do_not_hold_events(
        pg_url: str) -> None:
    async with DatabaseManager(url=pg_url) as db, ChangeFeed(db) as feed, \
            aclosing(feed.subscribe()) as events:
        oa = await db.create_orchestrator_agent("idle")
        agent = await db.create_agent(oa, "s-1")
        assert [e.id for e in [await next_event(events), await next_event(events)]] == [
            oa, agent]
        idle = await asyncpg.connect(pg_url)
        try:
            # A session idle in a transaction that holds an xid (it wrote, elsewhere).
            await idle.execute("BEGIN")
            await idle.execute("CREATE TEMP TABLE scratch (n int)")
            await idle.execute("INSERT INTO scratch VALUES (1)")
            xid = await idle.fetchval("SELECT txid_current()")
            assert xid is not None

            # A position taken and never committed: a gap that will never fill.
            class RollBack(Exception):
                pass

            with pytest.raises(RollBack):
                async with db.transaction():
                    await db.create_agent_log(agent, "rolled back")
                    raise RollBack

            log = await db.create_agent_log(agent, "committed after the gap")
            event = await next_event(events)
            assert event.id == log
            assert event.row is not None and event.row["message"] == "committed after the gap"
            # The idle transaction is still open: the feed did not wait for it to end.
            assert await idle.fetchval("SELECT txid_current()") == xid
            again = await db.create_agent_log(agent, "and another")
            assert (await next_event(events)).id == again
        finally:
            await idle.close()
        assert [r["message"] for r in await db.list_agent_logs(agent)] == [
            "committed after the gap", "and another"]


# losing the change log is reported, and the feed recovers -----------------------------------------
async def rename_changes(db: DatabaseManager, old: str, new: str) -> None:
    sql = f"ALTER TABLE {old} RENAME TO {new}"
    await run_sql(db, sql, sql)


async def test_a_feed_that_cannot_read_says_so_and_recovers(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("recover")
    agent = await db.create_agent(oa, "s-1")
    async with ChangeFeed(db) as feed, aclosing(feed.subscribe()) as events:
        assert feed.healthy and feed.status()["failures"] == 0
        first: asyncio.Task[ChangeEvent] = asyncio.ensure_future(next_event(events, 30.0))
        await asyncio.sleep(0.2)  # attached and waiting for live events
        renamed = False
        try:
            await rename_changes(db, "changes", "changes_away")
            renamed = True
            await until(lambda: not feed.healthy, WAIT, "feed.healthy became False")
            status = feed.status()
            assert status["failures"] >= 1 and status["healthy"] is False
            assert status["running"] is True and status["last_error"]
            notice = await asyncio.wait_for(first, WAIT)
            assert notice.op == "feed_error"
            assert notice.row is not None and "changes" in notice.row["message"]
            await asyncio.sleep(1.0)  # a few failed attempts: still failing, still running
            assert not feed.healthy and feed.running
        finally:
            if not first.done():
                first.cancel()
            if renamed:
                await rename_changes(db, "changes_away", "changes")
        await until(lambda: feed.healthy, RECOVERY_WAIT, "feed.healthy became True again")
        assert feed.status()["failures"] == 0
        log = await db.create_agent_log(agent, "after the recovery")
        event = await next_event(events)
        while event.op == "feed_error":  # a notice sent before the rename back may remain
            event = await next_event(events)
        assert (event.table, event.op, event.id) == ("agent_logs", "insert", log)
        assert event.row is not None and event.row["message"] == "after the recovery"


# helpers used above must themselves be right --------------------------------------------------
async def test_run_sql_reaches_the_same_database(db: DatabaseManager) -> None:
    await run_sql(db, "INSERT INTO system_logs (id, log_level, message, created_at) VALUES ("
                  "'01900000-0000-7000-8000-000000000001', 'INFO', 'raw', "
                  "'2024-01-01T00:00:00.000000+00:00')",
                  "INSERT INTO system_logs (id, log_level, message, created_at) VALUES ("
                  "'01900000-0000-7000-8000-000000000001', 'INFO', 'raw', "
                  "'2024-01-01T00:00:00+00:00')")
    assert [r["message"] for r in await db.list_system_logs()] == ["raw"]
