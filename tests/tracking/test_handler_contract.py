"""OrchestratorDBHandler's contract under hostile records and failures, read back from the database.

Every record logged is either written or counted in ``failed`` (``written + failed == logged``);
text that cannot be stored as it is gets escaped, not lost; one bad record never stops the ones
after it; a writer thread that dies is restarted and says so; a lock held for a moment is waited
out or retried, never counted as a failure.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from orchestrator_db import DatabaseManager, OrchestratorDBHandler

WAIT = 10.0  # bounded waits: nothing here should take more than a fraction of this


def attach(logger: logging.Logger, target: str, **kwargs: Any) -> OrchestratorDBHandler:
    handler = OrchestratorDBHandler(target, **kwargs)
    logger.addHandler(handler)
    return handler


async def flush(handler: OrchestratorDBHandler) -> None:
    """``handler.flush()`` off the event loop, bounded: a hang is a failure, not a stuck run."""
    done = threading.Event()

    def run() -> None:
        handler.flush()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    for _ in range(int(WAIT / 0.05)):
        if done.is_set():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"handler.flush() did not return within {WAIT} s")


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT} s: {what}")
        await asyncio.sleep(0.02)


async def test_nul_and_lone_surrogates_are_escaped_not_lost(
        db: DatabaseManager, db_url: str, logger: logging.Logger) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s-1")
    handler = attach(logger, db_url, flush_interval_ms=20)
    logger.info("before")
    logger.warning("nul \x00 in the message")
    logger.error("surrogate \udc80 in the message")
    logger.info("args %s and %r", "a\x00b", "c\udc80d")
    logger.info("extra values", extra={"payload": "x\udc80y", "nested": {"k": ["z\x00"]}})
    logger.info("extra key", extra={"bad\x00key": 1, "other\udcffkey": "v"})
    logger.info("agent \x00 record", extra={"agent_id": agent, "log_type": "t\udc80"})
    logger.info("after")
    await flush(handler)

    assert (handler.written, handler.failed, handler.dropped) == (8, 0, 0)
    assert handler.healthy is True
    system = {r["message"]: r for r in await db.list_system_logs(limit=1000)}
    assert list(system) == [
        "before",
        "nul \\x00 in the message",
        "surrogate \\udc80 in the message",
        "args a\\x00b and 'c\\udc80d'",
        "extra values",
        "extra key",
        "after",
    ]
    assert system["surrogate \\udc80 in the message"]["log_level"] == "ERROR"
    assert system["extra values"]["details"] == {"payload": "x\\udc80y",
                                                 "nested": {"k": ["z\\x00"]}}
    assert system["extra key"]["details"] == {"bad\\x00key": 1, "other\\udcffkey": "v"}
    assert all(r["source"] == logger.name for r in system.values())
    (agent_log,) = await db.list_agent_logs(agent)
    assert agent_log["message"] == "agent \\x00 record"
    assert agent_log["log_type"] == "t\\udc80"


async def test_bad_records_in_one_batch_do_not_take_the_good_ones_down(
        db: DatabaseManager, db_url: str, logger: logging.Logger) -> None:
    handler = attach(logger, db_url, batch_size=50, flush_interval_ms=1000)
    for i in range(120):
        if i % 7 == 0:
            logger.info("bad %d \x00 \udc80", i, extra={"k\udc80": "\x00"})
        else:
            logger.info("good %d", i)
    await flush(handler)
    assert (handler.written, handler.failed) == (120, 0)
    rows = await db.list_system_logs(limit=1000)
    assert len(rows) == 120
    expected = [f"bad {i} \\x00 \\udc80" if i % 7 == 0 else f"good {i}" for i in range(120)]
    assert [r["message"] for r in rows] == expected


async def test_details_too_large_to_store_are_noted_or_counted(
        db: DatabaseManager, db_url: str, logger: logging.Logger) -> None:
    handler = attach(logger, db_url, flush_interval_ms=20)
    logger.info("before")
    # Each value fits a message; together they are more than the 1 MB a JSON field may hold.
    logger.info("huge", extra={"a": "x" * 600_000, "b": "y" * 600_000})
    logger.info("after")
    await flush(handler)

    assert handler.written + handler.failed == 3
    rows = {r["message"]: r for r in await db.list_system_logs(limit=1000)}
    assert "before" in rows and "after" in rows
    if "huge" in rows:
        assert handler.failed == 0
        details = rows["huge"]["details"]
        assert "details_dropped" in details and details.get("keys") == ["a", "b"]
    else:
        assert handler.failed == 1
    assert set(rows) <= {"before", "huge", "after"}


def crash_writer_once(handler: OrchestratorDBHandler) -> list[int]:
    """Make the writer thread die with the next batch (a BaseException it does not catch)."""
    original = handler._write_batch
    crashed: list[int] = []

    def crash_once(*args: Any) -> Any:
        if not crashed:
            crashed.append(len(args[2]))
            raise SystemExit("simulated crash of the writer thread")
        return original(*args)

    handler._write_batch = crash_once  # type: ignore[method-assign]
    return crashed


async def messages(db: DatabaseManager) -> list[str]:
    return [r["message"] for r in await db.list_system_logs(limit=1000)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_writer_thread_that_dies_is_restarted_and_reported(
        db: DatabaseManager, db_url: str, logger: logging.Logger,
        capsys: pytest.CaptureFixture[str]) -> None:
    handler = attach(logger, db_url, flush_interval_ms=20)
    logger.info("first")
    await flush(handler)
    assert handler.written == 1 and handler.restarts == 0
    dead = handler._thread
    crashed = crash_writer_once(handler)
    logger.info("lost with the writer")
    await wait_until(lambda: not dead.is_alive(), "the writer thread ended")
    assert crashed == [1]
    capsys.readouterr()

    logger.info("after the restart")
    assert handler.restarts == 1
    assert handler._thread is not dead
    err = capsys.readouterr().err
    assert "writer thread died and was restarted" in err
    # Read back without flush() (see the next test): the new writer writes the record.
    deadline = time.monotonic() + WAIT
    while "after the restart" not in await messages(db):
        assert time.monotonic() < deadline, "the restarted writer wrote nothing"
        await asyncio.sleep(0.05)
    assert handler._thread.is_alive()
    got = await messages(db)
    assert got[0] == "first" and got[-1] == "after the restart"
    assert set(got) <= {"first", "lost with the writer", "after the restart"}
    assert handler.restarts == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_flush_returns_after_a_writer_death(
        db: DatabaseManager, db_url: str, logger: logging.Logger) -> None:
    handler = attach(logger, db_url, flush_interval_ms=20)
    dead = handler._thread
    crash_writer_once(handler)
    logger.info("lost with the writer")
    await wait_until(lambda: not dead.is_alive(), "the writer thread ended")
    logger.info("after the restart")
    await flush(handler)
    assert handler.restarts == 1
    assert (await messages(db))[-1] == "after the restart"
    logger.info("and later")
    await flush(handler)
    assert (await messages(db))[-1] == "and later"
    assert handler.restarts == 1


async def hold_write_lock(db: DatabaseManager) -> Callable[[], Awaitable[None]]:
    """Take the write lock the handler needs from another connection; return its release."""
    if db.db_path is not None:
        conn = sqlite3.connect(db.db_path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")

        async def release_sqlite() -> None:
            conn.execute("ROLLBACK")
            conn.close()
        return release_sqlite
    pg = await asyncpg.connect(db.target.url)
    tx = pg.transaction()
    await tx.start()
    await pg.execute("LOCK TABLE system_logs IN EXCLUSIVE MODE")

    async def release_pg() -> None:
        await tx.rollback()
        await pg.close()
    return release_pg


async def test_a_lock_held_for_a_moment_is_waited_out_not_failed(
        db: DatabaseManager, db_url: str, logger: logging.Logger) -> None:
    handler = attach(logger, db_url, batch_size=100, flush_interval_ms=10)
    logger.info("warm up")
    await flush(handler)

    release = await hold_write_lock(db)

    async def release_later() -> None:
        await asyncio.sleep(0.3)
        await release()

    for i in range(250):
        logger.info("while locked %d", i)
    releaser = asyncio.create_task(release_later())
    try:
        await flush(handler)
        assert releaser.done()  # nothing could be written before the lock went
    finally:
        await releaser

    assert (handler.written, handler.failed, handler.dropped) == (251, 0, 0)
    assert handler.healthy is True and handler.last_error is None
    assert await messages(db) == ["warm up", *[f"while locked {i}" for i in range(250)]]
