"""OrchestratorDBHandler: every record lands, in order per agent; a full queue drops and counts;
emit never waits for the database."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from orchestrator_db import DatabaseManager, OrchestratorDBHandler, SyncDatabaseManager
from orchestrator_db.tracking import current_agent_id


@asynccontextmanager
async def write_lock(db: DatabaseManager) -> AsyncIterator[None]:
    """Hold the write lock of the tables the handler writes, from another connection."""
    if db.db_path is not None:
        conn = sqlite3.connect(db.db_path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        pg = await asyncpg.connect(db.target.url)
        tx = pg.transaction()
        await tx.start()
        await pg.execute("LOCK TABLE agent_logs, system_logs IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            await tx.rollback()
            await pg.close()


async def one_agent_handler(db: DatabaseManager, logger: logging.Logger, url: str | None = None,
                            **options: int) -> tuple[str, OrchestratorDBHandler]:
    """Create one agent run and a handler on ``logger`` writing to ``url`` (default ``db``)."""
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    handler = OrchestratorDBHandler(db if url is None else url, **options)
    logger.addHandler(handler)
    return agent, handler


async def test_threads_and_coroutines_all_land_in_order(db: DatabaseManager,
                                                        logger: logging.Logger) -> None:
    oa = await db.create_orchestrator_agent("o")
    thread_agents = [await db.create_agent(oa, "s-threads") for _ in range(10)]
    task_agents = [await db.create_agent(oa, "s-tasks") for _ in range(50)]
    handler = OrchestratorDBHandler(db, batch_size=300, flush_interval_ms=20)
    logger.addHandler(handler)
    per_thread, per_task, system = 200, 355, 250  # 10*200 + 50*355 + 250 = 20,000

    def from_thread(agent_id: str) -> None:
        for i in range(per_thread):
            logger.info("thread %d", i, extra={"agent_id": agent_id})

    async def from_task(agent_id: str) -> None:
        current_agent_id.set(agent_id)  # as inside track_agent (each task has its own context)
        for i in range(per_task):
            logger.warning("task %d", i)
            if i % 25 == 0:
                await asyncio.sleep(0)

    threads = [threading.Thread(target=from_thread, args=(a,)) for a in thread_agents]
    for t in threads:
        t.start()
    await asyncio.gather(*[from_task(a) for a in task_agents])
    for i in range(system):
        logger.error("system %d", i)
    for t in threads:
        t.join()
    handler.close()

    assert handler.dropped == 0 and handler.failed == 0
    assert handler.written == 20_000
    for agent_id in thread_agents:
        rows = [r async for r in db.iter_agent_logs(agent_id)]
        assert [r["message"] for r in rows] == [f"thread {i}" for i in range(per_thread)]
        assert {r["log_level"] for r in rows} == {"INFO"}
    for agent_id in task_agents:
        rows = [r async for r in db.iter_agent_logs(agent_id)]
        assert [r["message"] for r in rows] == [f"task {i}" for i in range(per_task)]
        assert {r["log_level"] for r in rows} == {"WARNING"}
        assert rows[0]["details"] == {"logger": logger.name}
    system_rows = [r async for r in db.iter_system_logs(source=logger.name)]
    assert [r["message"] for r in system_rows] == [f"system {i}" for i in range(system)]
    assert (await db.stats())["counts"]["agent_logs"] == 20_000 - system


async def test_full_queue_counts_drops_instead_of_blocking(
        db: DatabaseManager, logger: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    agent, handler = await one_agent_handler(db, logger, batch_size=5, flush_interval_ms=0,
                                             queue_size=10)
    async with write_lock(db):
        # The writer is stuck behind the lock: at most one batch (5) is out of the queue and
        # 10 wait in it; every other record must be refused at once, not waited for.
        for i in range(100):
            logger.info("r%d", i, extra={"agent_id": agent})
        assert 100 - 15 <= handler.dropped < 100
    handler.close()
    kept = 100 - handler.dropped
    rows = [r async for r in db.iter_agent_logs(agent)]
    assert len(rows) == kept == handler.written
    indexes = [int(r["message"][1:]) for r in rows]
    # The queue filled before the first drop; later records got in only as the writer freed
    # room (it may wake late and take a batch after some drops). Emit order is kept.
    assert indexes[:10] == list(range(10))
    assert indexes == sorted(indexes)
    err = capsys.readouterr().err
    assert err.count("queue is full") == 1
    reports = await db.list_system_logs(source="orchestrator_db.tracking")
    assert [(r["log_level"], r["details"]) for r in reports] == [
        ("WARNING", {"dropped": handler.dropped, "queue_size": 10})]


async def test_emit_never_waits_for_the_database(db: DatabaseManager,
                                                 logger: logging.Logger) -> None:
    agent, handler = await one_agent_handler(db, logger, batch_size=500, flush_interval_ms=10,
                                             queue_size=20_000)
    async with write_lock(db):
        # With the database locked by another connection, 10,000 emits on the event loop still
        # return, and nothing is written yet: emit only queues.
        for i in range(10_000):
            logger.info("e%d", i, extra={"agent_id": agent})
        assert handler.dropped == 0
        assert handler.written == 0
    handler.flush()
    assert handler.written == 10_000
    assert (await db.stats())["counts"]["agent_logs"] == 10_000
    handler.close()


async def test_details_keep_extra_fields_and_exceptions(db: DatabaseManager,
                                                        logger: logging.Logger) -> None:
    agent, handler = await one_agent_handler(db, logger, db.target.url, flush_interval_ms=1)
    try:
        {}["nope"]
    except KeyError:
        logger.exception("lookup failed", extra={"agent_id": agent, "step": 3,
                                                 "obj": object(), "log_type": "step_end"})
    logger.critical("disk \x00 full", extra={"user": {"id": 7}})
    logger.info("stray", extra={"agent_id": "not-a-uuid"})
    logger.info("orphan", extra={"agent_id": "00000000-0000-7000-8000-000000000000"})
    handler.flush()
    [row] = await db.list_agent_logs(agent)
    assert (row["log_level"], row["log_type"], row["message"]) == ("ERROR", "step_end",
                                                                   "lookup failed")
    details = row["details"]
    assert details["step"] == 3 and details["obj"].startswith("<object object")
    assert details["logger"] == logger.name
    assert details["exception"]["type"] == "builtins.KeyError"
    assert "{}[\"nope\"]" in details["exception"]["traceback"]
    system = {r["message"]: r for r in await db.list_system_logs()}
    assert system["disk \\x00 full"]["log_level"] == "CRITICAL"
    assert system["disk \\x00 full"]["source"] == logger.name
    assert system["disk \\x00 full"]["details"] == {"user": {"id": 7}}
    assert system["stray"]["details"] == {"logger": logger.name, "agent_id": "not-a-uuid"}
    assert system["orphan"]["details"]["agent_id"] == "00000000-0000-7000-8000-000000000000"
    assert handler.failed == 0
    handler.close()


def test_sync_code_inside_sync_track_agent(db_url: str, logger: logging.Logger) -> None:
    with SyncDatabaseManager(url=db_url) as db:
        handler = OrchestratorDBHandler(db, flush_interval_ms=1)
        logger.addHandler(handler)
        with db.track_agent("planner", session_id="s") as run:
            logger.info("inside the run")
        logger.info("outside the run")
        handler.close()
        assert [r["message"] for r in db.list_agent_logs(run.agent_id)] == ["inside the run"]
        assert [r["message"] for r in db.list_system_logs(source=logger.name)] == [
            "outside the run"]


def test_bad_target_fails_at_construction(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "not-a-db").write_text("this is not SQLite" * 100)
    with pytest.raises(Exception, match="not a SQLite database|corrupt"):
        OrchestratorDBHandler(f"sqlite:///{tmp_path}/not-a-db")
