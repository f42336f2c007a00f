"""Helpers of the group-commit tests (both engines)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from orchestrator_db import DatabaseManager


async def ten_writers_the_first_cancelled(db: DatabaseManager, *, once_started: bool,
                                          started: Callable[[], None] | None = None) -> None:
    """Start ten awaited writes, cancel the first (before it ran, or once every task ran up to
    its await: then it leads the group, and ``started`` may check the queue); the nine others
    must commit."""
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    tasks = [asyncio.create_task(db.create_agent_log(agent, f"m{i}")) for i in range(10)]
    if once_started:
        await asyncio.sleep(0)  # each task ran up to its await: task 0 leads, 1-9 joined
        if started is not None:
            started()
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, str) for r in results[1:])
    messages = sorted(r["message"] for r in await db.list_agent_logs(agent, limit=1000))
    assert messages == sorted(f"m{i}" for i in range(1, 10))
