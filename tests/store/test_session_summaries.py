"""Session summaries equal the same figures computed here from every agent, prompt and log line.

``summaries.sessions`` answers one row per session from SQL (counts by status, the latest run of
each orchestrator agent, first and last activity through migration 0007's index). These tests
read the records back one by one and compute each summary the way the service always defined
it, then compare every field, on both engines, for histories chosen so that each source of the
last activity (an agent update, a prompt created, a prompt completed, a log line) wins somewhere,
latest runs tie on created_at, and prompts are completed, left open, edited and deleted.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator_db import DatabaseManager
from orchestrator_db.models import AGENT_STATUSES
from orchestrator_db.store.base import uuid7
from orchestrator_db.summaries import session_status

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


async def _history(db: DatabaseManager, rng: random.Random, sessions: int = 12) -> None:
    oas = [await db.create_orchestrator_agent(f"oa{i}") for i in range(3)]
    agents, prompts, logs = [], [], []
    for s in range(sessions):
        start = T0 + timedelta(hours=s)
        for a in range(rng.randint(1, 6)):
            # Several runs of one orchestrator agent, some at the very same created_at (the
            # latest is then the greater id).
            created = start + timedelta(minutes=rng.choice([0, 0, 1, 2, 5]))
            updated = created + timedelta(minutes=rng.randint(0, 90))
            agents.append({
                "id": uuid7(), "orchestrator_agent_id": rng.choice(oas), "session_id": f"s-{s:02d}",
                "name": f"a{a}", "model": None, "status": rng.choice(AGENT_STATUSES),
                "metadata": None, "created_at": created, "updated_at": updated,
                "started_at": None, "completed_at": None})
    for agent in agents:
        for p in range(rng.randint(0, 4)):
            created = agent["created_at"] + timedelta(minutes=rng.randint(0, 120))
            completed = rng.choice([None, created + timedelta(minutes=rng.randint(0, 200)),
                                    created - timedelta(minutes=1)])  # even before created
            prompts.append({
                "id": uuid7(), "agent_id": agent["id"], "content": f"p{p}", "response": None,
                "model": None, "status": "completed",
                "tokens_input": rng.randint(0, 900), "tokens_output": rng.randint(0, 900),
                "cost_usd": rng.randint(0, 64) / 64, "created_at": created,
                "completed_at": completed})
        for n in range(rng.randint(0, 5)):
            logs.append({
                "id": uuid7(), "agent_id": agent["id"], "log_level": "INFO", "log_type": "event",
                "message": f"log {n}", "details": None,
                "created_at": agent["created_at"] + timedelta(minutes=rng.randint(0, 300))})
    await db.import_rows("agents", agents)
    await db.import_rows("prompts", prompts)
    await db.import_rows("agent_logs", logs)


async def _expected(db: DatabaseManager) -> dict[str, dict[str, Any]]:
    """Every session's summary from the records read back one by one."""
    agents = [a async for a in db.iter_agents()]
    newest: dict[str, list[str]] = defaultdict(list)  # agent id -> its prompt and log times
    async for p in db.iter_prompts():
        newest[p["agent_id"]] += [t for t in (p["created_at"], p["completed_at"]) if t]
    async for log in db.iter_agent_logs():
        newest[log["agent_id"]].append(log["created_at"])
    totals: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, 0.0])
    session_of = {a["id"]: a["session_id"] for a in agents}
    async for p in db.iter_prompts():
        acc = totals[session_of[p["agent_id"]]]
        acc[0] += 1
        acc[1] += p["tokens_input"]
        acc[2] += p["tokens_output"]
        acc[3] += p["cost_usd"]
    out: dict[str, dict[str, Any]] = {}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for a in agents:
        session = a["session_id"]
        summary = out.setdefault(session, {
            "session_id": session, "status": None, "agents": 0,
            "agents_by_status": dict.fromkeys(AGENT_STATUSES, 0), "prompts": 0,
            "tokens_input": 0, "tokens_output": 0, "cost_usd": 0.0,
            "first_activity": a["created_at"], "last_activity": a["updated_at"],
            "failed_attempts": 0})
        summary["agents"] += 1
        summary["agents_by_status"][a["status"]] += 1
        summary["first_activity"] = min(summary["first_activity"], a["created_at"])
        summary["last_activity"] = max([summary["last_activity"], a["updated_at"],
                                        *newest[a["id"]]])
        key = (session, a["orchestrator_agent_id"])
        if key not in latest or (a["created_at"], a["id"]) > (latest[key]["created_at"],
                                                               latest[key]["id"]):
            latest[key] = a
    by_status: dict[str, dict[str, int]] = defaultdict(dict)
    for (session, _), a in latest.items():
        by_status[session][a["status"]] = by_status[session].get(a["status"], 0) + 1
    for session, summary in out.items():
        summary["status"] = session_status(by_status[session])
        summary["failed_attempts"] = (summary["agents_by_status"]["failed"]
                                      - by_status[session].get("failed", 0))
        n, t_in, t_out, cost = totals[session]
        summary.update(prompts=n, tokens_input=t_in, tokens_output=t_out,
                       cost_usd=round(cost, 9))
    return out


async def _check(db: DatabaseManager) -> None:
    expected = await _expected(db)
    for session, summary in expected.items():
        assert await db.session_summary(session) == summary, session
    listed = await db.list_sessions(limit=500)
    assert {s["session_id"]: s for s in listed} == expected
    paged, cursor = [], None
    while True:
        page = await db.page_sessions(limit=5, cursor=cursor)
        paged += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert paged == listed


async def test_summaries_equal_the_records_read_back(db: DatabaseManager) -> None:
    await _history(db, random.Random(3))
    await _check(db)


async def test_summaries_follow_completions_edits_and_deletes(db: DatabaseManager) -> None:
    rng = random.Random(4)
    await _history(db, rng, sessions=6)
    prompts = [p async for p in db.iter_prompts()]
    rng.shuffle(prompts)
    for p in prompts[:6]:  # completed now: the newest activity of its session
        assert await db.complete_prompt(p["id"], "done", cost_usd=0.5)
    for p in prompts[6:10]:
        assert await db.update_prompt(p["id"], completed_at=None)
    for p in prompts[10:16]:
        assert await db.delete_prompt(p["id"])
    agents = [a async for a in db.iter_agents()]
    await db.update_agent_status(agents[0]["id"], "failed")
    await db.create_agent_log(agents[1]["id"], "the newest line of all")
    await _check(db)


async def test_a_session_of_one_agent_without_prompts_or_logs(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("oa")
    agent = await db.create_agent(oa, "quiet")
    summary = await db.session_summary("quiet")
    stored = await db.get_agent(agent)
    assert stored is not None and summary is not None
    assert (summary["first_activity"], summary["last_activity"]) == (stored["created_at"],
                                                                     stored["updated_at"])
    assert (summary["agents"], summary["status"], summary["failed_attempts"]) == (1, "pending", 0)
    assert summary["agents_by_status"] == {**dict.fromkeys(AGENT_STATUSES, 0), "pending": 1}
    assert await db.session_summary("nobody") is None
