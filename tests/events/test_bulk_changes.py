"""Bulk inserts and the change feed: a large insert records every change once, in order.

On SQLite a large insert drops the table's insert trigger inside a savepoint, inserts, records
the change rows in one INSERT ... SELECT and re-creates the trigger (store/sqlite_changes.py);
PostgreSQL's statement-level trigger does the same on its own. Either way the change log and
the events must be what a trigger per row would have written.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from orchestrator_db import DatabaseManager, OrchestratorDBError
from orchestrator_db.events import ChangeEvent, ChangeFeed
from orchestrator_db.store.sqlite_changes import RECORDED_MIN_ROWS
from orchestrator_db.tables import CHANGE_FIELDS

WAIT = 5.0
ROWS = RECORDED_MIN_ROWS * 3
TRIGGERS = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'changes!_%' ESCAPE '!'"


async def test_bulk_insert_records_each_row_once_in_order(db: DatabaseManager) -> None:
    async with ChangeFeed(db) as feed, aclosing(feed.subscribe()) as events:
        oa = await db.create_orchestrator_agent("bulk")
        agent = await db.create_agent(oa, "s-bulk")
        few = await db.create_agent_logs([{"agent_id": agent, "message": f"few {i}",
                                           "log_level": "WARNING"} for i in range(3)])
        many = await db.create_agent_logs([{"agent_id": agent, "message": f"many {i}",
                                            "log_level": "ERROR"} for i in range(ROWS)])
        system = await db.create_system_logs([{"message": f"sys {i}"} for i in range(ROWS)])
        got: list[ChangeEvent] = []
        async with asyncio.timeout(WAIT):
            while len(got) < 2 + len(few) + len(many) + len(system):
                got.append(await anext(events))
        changes = await db.store.fetch(
            "SELECT position, table_name, op, row_id, session_id, agent_id, log_level "
            "FROM changes ORDER BY position")
    assert [e.id for e in got] == [oa, agent, *few, *many, *system]
    positions = [e.position for e in got]
    assert positions == sorted(set(positions))
    by_id = {str(c["row_id"]): c for c in changes}
    assert len(by_id) == len(changes) == len(got)
    assert {(c["table_name"], c["op"], str(c["agent_id"]), c["log_level"], c["session_id"])
            for i in many for c in [by_id[i]]} == {
        ("agent_logs", "insert", agent, "ERROR", None)}
    assert {(c["table_name"], c["agent_id"], c["log_level"]) for i in system
            for c in [by_id[i]]} == {("system_logs", None, "INFO")}
    assert got[-1].row is not None and got[-1].row["message"] == f"sys {ROWS - 1}"
    assert got[-1].session_id is None and got[3 + len(few)].session_id == "s-bulk"


async def test_sqlite_failed_bulk_insert_keeps_the_trigger_and_records_nothing(
        sqlite_url: str) -> None:
    async with DatabaseManager(url=sqlite_url) as db:
        oa = await db.create_orchestrator_agent("bulk")
        agent = await db.create_agent(oa, "s-bulk")
        [first] = await db.create_agent_logs([{"agent_id": agent, "message": "first"}])
        before = await db.store.fetch("SELECT count(*) AS n FROM changes")
        triggers = {r["name"] for r in await db.store.fetch(TRIGGERS)}
        assert len(triggers) == 3 * len(CHANGE_FIELDS)
        columns = ("id", "agent_id", "log_level", "log_type", "message", "created_at")
        rows = [(f"00000000-0000-7000-8000-{i:012d}", agent, "INFO", "event", f"m{i}",
                 "2026-12-01T00:00:00.000000+00:00") for i in range(ROWS)]
        rows[ROWS // 2] = (first, *rows[ROWS // 2][1:])  # a duplicate id halfway through
        async with db.transaction():  # the caller goes on after the failed insert
            with pytest.raises(OrchestratorDBError):
                await db.store.insert_many("agent_logs", columns, rows)
            log = await db.create_agent_log(agent, "after the failure")
        assert {r["name"] for r in await db.store.fetch(TRIGGERS)} == triggers
        assert await db.store.fetch("SELECT count(*) AS n FROM agent_logs") == [{"n": 2}]
        after = await db.store.fetch("SELECT row_id FROM changes ORDER BY position")
        assert len(after) == before[0]["n"] + 1 and after[-1]["row_id"] == log
        # The trigger still records single-row inserts made by other connections.
        async with DatabaseManager(url=sqlite_url) as other:
            await other.create_system_log("from another connection")
        assert len(await db.store.fetch("SELECT row_id FROM changes")) == len(after) + 1
