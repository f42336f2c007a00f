"""track_agent (async and sync) and the one-line log helpers leave exactly the expected rows."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator_db import (
    DatabaseManager,
    SyncDatabaseManager,
    log_agent_event,
    log_system_event,
)
from orchestrator_db.tracking import current_agent_id


async def test_success_path_records_run_logs_and_prompt(db: DatabaseManager) -> None:
    async with db.track_agent(orchestrator_agent="planner", session_id="s-1", model="m-1",
                              name="plan step") as run:
        assert current_agent_id.get() == run.agent_id
        agent = await db.get_agent(run.agent_id)
        assert agent is not None
        assert agent["status"] == "executing"
        assert agent["started_at"] is not None
        assert agent["completed_at"] is None
        log_id = await run.log("thinking", level="DEBUG", log_type="step_start",
                               details={"step": 1})
        prompt = await run.prompt("what next?")
        assert await prompt.complete("this", tokens_input=10, tokens_output=5, cost_usd=0.25)
    assert current_agent_id.get() is None

    agent = await db.get_agent(run.agent_id)
    assert agent is not None
    assert (agent["status"], agent["session_id"], agent["name"], agent["model"]) == (
        "completed", "s-1", "plan step", "m-1")
    assert agent["completed_at"] is not None and agent["completed_at"] >= agent["started_at"]
    oa = await db.get_orchestrator_agent_by_name("planner")
    assert oa is not None and oa["id"] == agent["orchestrator_agent_id"] == run.orchestrator_agent_id

    logs = await db.list_agent_logs(run.agent_id)
    assert [(r["id"], r["log_level"], r["log_type"], r["message"], r["details"]) for r in logs] == [
        (log_id, "DEBUG", "step_start", "thinking", {"step": 1})]
    prompts = await db.list_prompts(agent_id=run.agent_id)
    assert [(p["id"], p["content"], p["response"], p["model"], p["status"], p["tokens_input"],
             p["tokens_output"], p["cost_usd"]) for p in prompts] == [
        (prompt.prompt_id, "what next?", "this", "m-1", "completed", 10, 5, 0.25)]


async def test_failure_path_logs_the_exception_and_reraises(db: DatabaseManager) -> None:
    with pytest.raises(KeyError, match="missing"):
        async with db.track_agent("builder", session_id="s-2") as run:
            await run.log("about to fail")
            raise KeyError("missing")
    agent = await db.get_agent(run.agent_id)
    assert agent is not None
    assert agent["status"] == "failed"
    assert agent["completed_at"] is not None
    logs = await db.list_agent_logs(run.agent_id)
    assert [(r["log_level"], r["message"]) for r in logs] == [
        ("INFO", "about to fail"), ("ERROR", "KeyError: 'missing'")]
    exc = logs[1]["details"]["exception"]
    assert exc["type"] == "builtins.KeyError"
    assert exc["message"] == "'missing'"
    assert "Traceback" in exc["traceback"] and "raise KeyError" in exc["traceback"]
    assert await db.list_prompts(agent_id=run.agent_id) == []


async def test_cancellation_marks_the_run_cancelled(db: DatabaseManager) -> None:
    started = asyncio.Event()
    agent_ids: list[str] = []

    async def work() -> None:
        async with db.track_agent("canceller", session_id="s-3") as run:
            agent_ids.append(run.agent_id)
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(work())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    agent = await db.get_agent(agent_ids[0])
    assert agent is not None and agent["status"] == "cancelled"


async def test_orchestrator_agent_is_reused_and_creation_races_are_safe(db: DatabaseManager
                                                                        ) -> None:
    async def one(i: int) -> str:
        async with db.track_agent("shared", session_id=f"s-{i}") as run:
            return run.orchestrator_agent_id  # type: ignore[return-value]

    ids = await asyncio.gather(*[one(i) for i in range(10)])
    assert len(set(ids)) == 1
    assert len(await db.list_orchestrator_agents()) == 1
    assert len(await db.get_agents_by_orchestrator(ids[0])) == 10


async def test_a_missing_session_id_gets_a_fresh_one(db: DatabaseManager) -> None:
    async with db.track_agent("planner") as first, db.track_agent("planner") as second:
        assert first.session_id and second.session_id and first.session_id != second.session_id


def test_sync_track_agent_success_and_failure(db_url: str) -> None:
    with SyncDatabaseManager(url=db_url) as db:
        with db.track_agent(orchestrator_agent="planner", session_id="s-sync", model="m") as run:
            assert current_agent_id.get() == run.agent_id
            run.log("sync step", level="WARNING", details={"k": "v"})
            prompt = run.prompt("hello")
            assert prompt.complete("hi", tokens_input=3, tokens_output=4, cost_usd=0.5)
        assert current_agent_id.get() is None
        with pytest.raises(RuntimeError, match="boom"), db.track_agent("planner",
                                                                      session_id="s-sync") as bad:
            raise RuntimeError("boom")

        ok = db.get_agent(run.agent_id)
        failed = db.get_agent(bad.agent_id)
        assert ok["status"] == "completed" and failed["status"] == "failed"
        assert ok["orchestrator_agent_id"] == failed["orchestrator_agent_id"]
        assert [(r["log_level"], r["message"], r["details"]) for r in db.list_agent_logs(
            run.agent_id)] == [("WARNING", "sync step", {"k": "v"})]
        failure = db.list_agent_logs(bad.agent_id)
        assert [(r["log_level"], r["message"]) for r in failure] == [("ERROR", "RuntimeError: boom")]
        assert "RuntimeError: boom" in failure[0]["details"]["exception"]["traceback"]
        summary = db.session_summary("s-sync")
        assert (summary["prompts"], summary["tokens_input"], summary["tokens_output"],
                summary["cost_usd"]) == (1, 3, 4, 0.5)
        assert summary["agents_by_status"]["completed"] == 1
        assert summary["agents_by_status"]["failed"] == 1


async def test_log_agent_event_and_log_system_event(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    log_id = await log_agent_event(db, agent, "state_change", "now running", {"from": "pending"})
    system_id = await log_system_event(db, "scheduler up", level="warning", source="scheduler",
                                       details={"workers": 2})
    row = await db.get_agent_log(log_id)
    assert row is not None
    assert (row["agent_id"], row["log_type"], row["message"], row["log_level"],
            row["details"]) == (agent, "state_change", "now running", "INFO", {"from": "pending"})
    srow = await db.get_system_log(system_id)
    assert srow is not None
    assert (srow["message"], srow["log_level"], srow["source"], srow["details"]) == (
        "scheduler up", "WARNING", "scheduler", {"workers": 2})
