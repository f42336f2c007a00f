"""A session's status is the state of each agent's latest run; retried failures are counted apart.

Before, the demo (a builder that failed once, was retried and then completed, and an approving
reviewer) showed a red "failed" session (issue 13, item 9).
"""

from __future__ import annotations

from orchestrator_db import DatabaseManager
from orchestrator_db.demo import run_demo


async def test_retried_failure_leaves_the_session_completed(db: DatabaseManager) -> None:
    session = await run_demo(db, duration=0, session_id="demo-retry")
    summary = await db.session_summary(session)
    assert summary is not None
    assert summary["status"] == "completed"
    assert summary["failed_attempts"] == 1
    assert summary["agents_by_status"]["failed"] == 1  # every failed run, still counted
    assert summary["agents"] == 4
    listed = (await db.list_sessions())[0]
    assert (listed["status"], listed["failed_attempts"]) == ("completed", 1)


async def test_latest_run_per_agent_decides(db: DatabaseManager) -> None:
    builder = await db.create_orchestrator_agent("builder")
    reviewer = await db.create_orchestrator_agent("reviewer")
    first = await db.create_agent(builder, "s")
    await db.update_agent_status(first, "failed")
    summary = await db.session_summary("s")
    assert summary is not None
    assert (summary["status"], summary["failed_attempts"]) == ("failed", 0)  # not retried (yet)

    retry = await db.create_agent(builder, "s", name="builder (retry)")
    await db.update_agent_status(retry, "executing")
    summary = await db.session_summary("s")
    assert summary is not None
    assert (summary["status"], summary["failed_attempts"]) == ("executing", 1)

    await db.update_agent_status(retry, "completed")
    review = await db.create_agent(reviewer, "s")
    await db.update_agent_status(review, "failed")  # a different agent failing still counts
    summary = await db.session_summary("s")
    assert summary is not None
    assert (summary["status"], summary["failed_attempts"]) == ("failed", 1)
