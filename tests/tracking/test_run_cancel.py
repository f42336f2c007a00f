"""track_agent cancelled at any point, entering and leaving included, never stays `executing`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from orchestrator_db import DatabaseManager

# Cancel points: after this many turns of the event loop (where SQLite's work is done) and after
# this many milliseconds (where PostgreSQL's round trips are).
TURNS = range(0, 40)
MILLISECONDS = range(0, 13)


def after_turns(n: int) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        for _ in range(n):
            await asyncio.sleep(0)
    return wait


def after_ms(n: int) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        await asyncio.sleep(n / 1000)
    return wait


def cancel_points() -> list[Callable[[], Awaitable[None]]]:
    return [after_turns(n) for n in TURNS] + [after_ms(n) for n in MILLISECONDS]


async def cancelled_after(db: DatabaseManager, wait: Callable[[], Awaitable[None]],
                          block_seconds: float) -> None:
    """Run a tracked block lasting ``block_seconds`` in a task, cancelled after ``wait()``."""
    async def body() -> None:
        async with db.track_agent("cancel-me", session_id="s-cancel"):
            await asyncio.sleep(block_seconds)

    task = asyncio.create_task(body())
    await wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):  # any other error fails the test
        await task


async def runs(db: DatabaseManager) -> list[dict[str, object]]:
    return [dict(a) for a in await db.list_agents(limit=1000)]


async def test_cancelled_while_entering_or_inside_ends_cancelled(db: DatabaseManager) -> None:
    points = cancel_points()
    for wait in points:
        await cancelled_after(db, wait, block_seconds=60)
    agents = await runs(db)
    # A cancel before the insert leaves no run; every run that exists was cancelled.
    assert agents, "no cancel came late enough to find a run"
    assert {a["status"] for a in agents} == {"cancelled"}
    assert all(a["completed_at"] is not None for a in agents)
    for agent in agents:
        logs = await db.list_agent_logs(str(agent["id"]))
        assert [(r["log_level"], r["log_type"]) for r in logs] == [("WARNING", "cancelled")]


async def test_many_runs_cancelled_at_once(db: DatabaseManager) -> None:
    tasks = [asyncio.create_task(cancelled_after(db, wait, block_seconds=60))
             for wait in cancel_points()]
    await asyncio.gather(*tasks)
    agents = await runs(db)
    assert {a["status"] for a in agents} <= {"cancelled"}


async def test_cancelled_while_leaving_is_still_ended(db: DatabaseManager) -> None:
    # An empty block: the cancel lands while the run is created or while it is being ended.
    for wait in cancel_points():
        await cancelled_after(db, wait, block_seconds=0)
    agents = await runs(db)
    assert agents
    assert {a["status"] for a in agents} <= {"cancelled", "completed"}
    assert all(a["completed_at"] is not None for a in agents)
