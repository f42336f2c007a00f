"""Every record type: create, read back, list, update, delete — on both engines."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from orchestrator_db import DatabaseManager

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


def assert_ts(value: str | None) -> None:
    assert value is not None and TS.match(value), value


async def make_agent(db: DatabaseManager, session: str = "s-1", name: str = "planner") -> str:
    oa = await db.get_orchestrator_agent_by_name(name)
    oa_id = oa["id"] if oa else await db.create_orchestrator_agent(name)
    return await db.create_agent(oa_id, session)


async def test_orchestrator_agent_round_trip(db: DatabaseManager) -> None:
    oa_id = await db.create_orchestrator_agent(
        "scout", "Scouts the code", agent_type="utility",
        capabilities="codebase_exploration, issue_detection", default_model="sonnet",
        metadata={"owner": "ops", "weights": [1, 2.5], "nested": {"ü": None}},
    )
    assert str(uuid.UUID(oa_id)) == oa_id and uuid.UUID(oa_id).version == 7
    row = await db.get_orchestrator_agent(oa_id)
    assert row is not None
    assert list(row) == ["id", "name", "description", "agent_type", "capabilities",
                         "default_model", "status", "metadata", "created_at", "updated_at"]
    assert row["capabilities"] == ["codebase_exploration", "issue_detection"]
    assert row["metadata"] == {"owner": "ops", "weights": [1, 2.5], "nested": {"ü": None}}
    assert row["status"] == "active"
    assert_ts(row["created_at"])
    assert row["created_at"] == row["updated_at"]
    assert await db.get_orchestrator_agent_by_name("scout") == row
    assert await db.get_orchestrator_agent_by_name("nope") is None

    assert await db.update_orchestrator_agent(oa_id, status="archived", description=None) is True
    updated = await db.get_orchestrator_agent(oa_id)
    assert updated is not None
    assert updated["status"] == "archived" and updated["description"] is None
    assert updated["updated_at"] > row["updated_at"]
    assert await db.list_orchestrator_agents(status="archived") == [updated]
    assert await db.list_orchestrator_agents(status="active") == []
    assert await db.delete_orchestrator_agent(oa_id) is True
    assert await db.get_orchestrator_agent(oa_id) is None


async def test_agent_lifecycle(db: DatabaseManager) -> None:
    oa_id = await db.create_orchestrator_agent("builder")
    agent_id = await db.create_agent(oa_id, "session-9", name="builder-1", model="opus",
                                     metadata={"attempt": 1})
    row = await db.get_agent(agent_id)
    assert row is not None
    assert row["status"] == "pending" and row["started_at"] is None
    assert row["orchestrator_agent_id"] == oa_id and row["session_id"] == "session-9"

    assert await db.update_agent_status(agent_id, "executing") is True
    running = await db.get_agent(agent_id)
    assert running is not None
    assert running["status"] == "executing"
    assert_ts(running["started_at"])
    assert running["completed_at"] is None

    assert await db.update_agent_status(agent_id, "completed",
                                        completed_at="2026-01-02T03:04:05Z") is True
    done = await db.get_agent(agent_id)
    assert done is not None
    assert done["completed_at"] == "2026-01-02T03:04:05.000000+00:00"
    assert done["started_at"] == running["started_at"]

    assert await db.update_agent(agent_id, name="renamed", metadata={"attempt": 2}) is True
    renamed = await db.get_agent(agent_id)
    assert renamed is not None
    assert renamed["name"] == "renamed" and renamed["metadata"] == {"attempt": 2}

    other = await db.create_agent(oa_id, "session-10")
    assert [a["id"] for a in await db.list_agents_by_session("session-9")] == [agent_id]
    assert [a["id"] for a in await db.get_agents_by_orchestrator(oa_id)] == [agent_id, other]
    assert [a["id"] for a in await db.list_agents(status="completed")] == [agent_id]


async def test_naive_and_aware_timestamps_are_stored_in_utc(db: DatabaseManager) -> None:
    from datetime import datetime, timedelta, timezone

    agent_id = await make_agent(db)
    plus2 = timezone(timedelta(hours=2))
    await db.update_agent_status(agent_id, "executing",
                                 started_at=datetime(2026, 5, 1, 12, 0, tzinfo=plus2))
    await db.update_agent_status(agent_id, "failed", completed_at=datetime(2026, 5, 1, 12, 30))
    row = await db.get_agent(agent_id)
    assert row is not None
    assert row["started_at"] == "2026-05-01T10:00:00.000000+00:00"
    assert row["completed_at"] == "2026-05-01T12:30:00.000000+00:00"


async def test_prompt_round_trip_and_completion(db: DatabaseManager) -> None:
    agent_id = await make_agent(db)
    prompt_id = await db.create_prompt(agent_id, "Plan the feature ✓", model="opus")
    row = await db.get_prompt(prompt_id)
    assert row is not None
    assert row["status"] == "pending" and row["response"] is None
    assert (row["tokens_input"], row["tokens_output"], row["cost_usd"]) == (0, 0, 0.0)
    assert await db.complete_prompt(prompt_id, "Done.", tokens_input=1200, tokens_output=345,
                                    cost_usd=0.0123) is True
    done = await db.get_prompt(prompt_id)
    assert done is not None
    assert done["status"] == "completed" and done["response"] == "Done."
    assert (done["tokens_input"], done["tokens_output"], done["cost_usd"]) == (1200, 345, 0.0123)
    assert_ts(done["completed_at"])
    assert await db.list_prompts_by_agent(agent_id) == [done]
    assert await db.update_prompt(prompt_id, status="failed") is True
    assert [p["id"] for p in await db.list_prompts(status="failed")] == [prompt_id]
    assert await db.delete_prompt(prompt_id) is True
    assert await db.get_prompt(prompt_id) is None


async def test_agent_logs(db: DatabaseManager) -> None:
    a1 = await make_agent(db, "s-a")
    a2 = await make_agent(db, "s-b")
    first = await db.create_agent_log(a1, "start", log_type="step_start", details={"step": 1})
    await db.create_agent_log(a1, "careful", log_level="warning", details="plain string")
    ids = await db.create_agent_logs([
        {"agent_id": a2, "message": "bulk 1"},
        {"agent_id": a2, "message": "bulk 2", "log_level": "ERROR", "metadata": {"k": "v"}},
    ])
    assert len(ids) == 2
    row = await db.get_agent_log(first)
    assert row is not None
    assert row == {"id": first, "agent_id": a1, "log_level": "INFO", "log_type": "step_start",
                   "message": "start", "details": {"step": 1}, "created_at": row["created_at"],
                   "trace_id": None, "span_id": None}
    assert [r["message"] for r in await db.list_agent_logs(a1)] == ["start", "careful"]
    assert (await db.list_agent_logs(a1, log_level="WARNING"))[0]["details"] == "plain string"
    assert [r["message"] for r in await db.list_agent_logs(min_level="WARNING")] == [
        "careful", "bulk 2"]
    assert [r["message"] for r in await db.list_agent_logs(session_id="s-b")] == [
        "bulk 1", "bulk 2"]
    assert (await db.get_agent_log(ids[1]) or {})["details"] == {"k": "v"}
    assert [r["message"] for r in await db.list_recent_agent_logs(limit=2)] == [
        "bulk 2", "bulk 1"]
    assert [r["message"] for r in await db.list_agent_logs(log_type="step_start")] == ["start"]


async def test_system_logs(db: DatabaseManager) -> None:
    await db.create_system_log("boot", source="orchestrator")
    await db.create_system_log("disk low", log_level="WARNING", component="monitor",
                               details={"free": 0.1})
    ids = await db.create_system_logs([{"message": "a"}, {"message": "b", "log_level": "ERROR"}])
    assert len(ids) == 2
    assert [r["message"] for r in await db.list_system_logs(source="monitor")] == ["disk low"]
    assert [r["message"] for r in await db.list_system_logs(component="orchestrator")] == ["boot"]
    assert [r["message"] for r in await db.list_system_logs(min_level="warning")] == [
        "disk low", "b"]
    assert [r["message"] for r in await db.list_recent_system_logs(limit=1)] == ["b"]
    row = await db.get_system_log(ids[1])
    assert row is not None and row["log_level"] == "ERROR" and row["source"] is None


async def test_delete_agent_cascades_to_prompts_and_logs(db: DatabaseManager) -> None:
    agent_id = await make_agent(db)
    prompt_id = await db.create_prompt(agent_id, "x")
    log_id = await db.create_agent_log(agent_id, "y")
    assert await db.delete_agent(agent_id) is True
    assert await db.get_prompt(prompt_id) is None
    assert await db.get_agent_log(log_id) is None
    assert (await db.stats())["counts"]["prompts"] == 0


async def test_delete_orchestrator_agent_with_cascade(db: DatabaseManager) -> None:
    agent_id = await make_agent(db)
    oa = await db.get_orchestrator_agent_by_name("planner")
    assert oa is not None
    await db.create_agent_log(agent_id, "y")
    assert await db.delete_orchestrator_agent(oa["id"], cascade=True) is True
    counts = (await db.stats())["counts"]
    assert counts == {"orchestrator_agents": 0, "agents": 0, "prompts": 0, "agent_logs": 0,
                      "system_logs": 0}


async def test_session_summary_and_costs(db: DatabaseManager) -> None:
    oa_plan = await db.create_orchestrator_agent("plan")
    oa_build = await db.create_orchestrator_agent("build")
    a1 = await db.create_agent(oa_plan, "s1", name="p", model="opus")
    a2 = await db.create_agent(oa_build, "s1", name="b", model="haiku")
    a3 = await db.create_agent(oa_build, "s2")
    await db.update_agent_status(a1, "completed")
    await db.update_agent_status(a2, "failed")
    for agent, model, tin, tout, cost in [(a1, "opus", 100, 10, 0.5), (a1, "opus", 200, 20, 0.25),
                                          (a2, "haiku", 50, 5, 0.125), (a3, None, 1, 1, 1.0)]:
        pid = await db.create_prompt(agent, "q", model=model)
        await db.complete_prompt(pid, "r", tokens_input=tin, tokens_output=tout, cost_usd=cost)
    await db.create_agent_log(a2, "boom", log_level="ERROR")

    summary = await db.session_summary("s1")
    assert summary is not None
    assert summary["agents"] == 2 and summary["status"] == "failed"
    assert summary["agents_by_status"] == {"pending": 0, "executing": 0, "completed": 1,
                                           "failed": 1, "cancelled": 0}
    assert (summary["prompts"], summary["tokens_input"], summary["tokens_output"]) == (3, 350, 35)
    assert summary["cost_usd"] == 0.875
    assert summary["first_activity"] <= summary["last_activity"]
    assert await db.session_summary("missing") is None

    by_session = await db.cost_summary("session")
    assert [(r["key"], r["prompts"], r["cost_usd"]) for r in by_session] == [
        ("s1", 3, 0.875), ("s2", 1, 1.0)]
    by_model = await db.cost_summary("model")
    assert [(r["key"], r["tokens_input"]) for r in by_model] == [
        ("haiku", 50), ("opus", 300), (None, 1)]
    by_oa = {r["name"]: r["cost_usd"] for r in await db.cost_summary("orchestrator_agent")}
    assert by_oa == {"plan": 0.75, "build": 1.125}
    by_day = await db.cost_summary("day")
    assert len(by_day) == 1 and by_day[0]["prompts"] == 4
    assert await db.cost_summary("day", since="2000-01-01", until="2000-01-02") == []

    sessions = await db.list_sessions()
    assert {s["session_id"] for s in sessions} == {"s1", "s2"}


async def test_stats(db: DatabaseManager) -> None:
    await make_agent(db)
    stats = await db.stats()
    assert stats["engine"] == db.dialect.value
    assert stats["schema_version"] >= 1
    assert stats["size_bytes"] > 0
    assert stats["counts"]["agents"] == 1 and stats["counts"]["orchestrator_agents"] == 1
    if db.dialect.value == "postgresql":  # this schema's tables, not the whole database's
        [row] = await db.store.fetch("SELECT pg_database_size(current_database()) AS n")
        assert stats["size_bytes"] < row["n"]
        await db.create_agent_logs([{"agent_id": (await db.list_agents())[0]["id"],
                                     "message": "x" * 1000} for _ in range(2000)])
        assert (await db.stats())["size_bytes"] > stats["size_bytes"] + 1_000_000


async def test_agent_created_executing_or_finished_gets_its_timestamp(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    running = await db.get_agent(await db.create_agent(oa, "s", status="executing"))
    assert running is not None
    assert_ts(running["started_at"])
    assert running["completed_at"] is None
    done = await db.get_agent(await db.create_agent(oa, "s", status="failed"))
    assert done is not None
    assert done["started_at"] is None
    assert_ts(done["completed_at"])
    given = await db.get_agent(await db.create_agent(oa, "s", status="executing",
                                                     started_at="2026-01-01T00:00:00Z"))
    assert given is not None and given["started_at"] == "2026-01-01T00:00:00.000000+00:00"


async def test_log_lines_can_be_edited(db: DatabaseManager) -> None:
    agent_id = await make_agent(db)
    log = await db.create_agent_log(agent_id, "api_key=sk-123", details={"key": "sk-123"})
    assert await db.update_agent_log(log, message="api_key=[redacted]", details=None) is True
    row = await db.get_agent_log(log)
    assert row is not None
    assert (row["message"], row["details"], row["log_level"]) == ("api_key=[redacted]", None,
                                                                  "INFO")
    syslog = await db.create_system_log("x", source="a")
    assert await db.update_system_log(syslog, log_level="error", source=None) is True
    srow = await db.get_system_log(syslog)
    assert srow is not None and (srow["log_level"], srow["source"]) == ("ERROR", None)
    assert await db.update_agent_log("0190f1c2-0000-7000-8000-000000000000", message="m") is False


async def test_a_big_batch_stores_what_single_writes_store(db: DatabaseManager) -> None:
    """Past 2,048 rows PostgreSQL writes a batch as binary COPY data it encodes itself: every
    column must read back exactly as the same rows written one at a time (and as on SQLite)."""
    agent = await make_agent(db, "s-big")
    texts = ["plain", "tab\there, newline\nthere", "quote ' \" back\\slash", "é 日本 🚀 \u2028",
             "x" * 5000, ""]
    times = [None, "2026-01-02T03:04:05.123456+05:30", datetime(1999, 12, 31, 23, 59, 59,
             999999, tzinfo=UTC), "9999-12-31T23:59:59.999998+00:00", "1970-01-01T00:00:00Z"]
    details = [None, {"n": 2**63, "f": 1e308, "neg": -0.5, "s": "é\\\"", "l": [1, None, True]},
               "just a string", [], 12, {"deep": {"er": [{"x": "🚀"}]}}]
    agent_rows = [{"agent_id": agent, "message": texts[i % len(texts)],
                   "log_level": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"][i % 5],
                   "log_type": ["event", "tool_call", "span"][i % 3],
                   "details": details[i % len(details)],
                   "trace_id": "0af7651916cd43dd8448eb211c80319c" if i % 4 == 0 else None,
                   "span_id": f"{i + 1:016x}" if i % 4 == 0 else None,
                   **({"created_at": times[i % len(times)]} if times[i % len(times)] else {})}
                  for i in range(2049)]
    system_rows = [{"message": texts[i % len(texts)], "source": "svc" if i % 2 else None,
                    "details": details[i % len(details)],
                    **({"created_at": times[i % len(times)]} if times[i % len(times)] else {})}
                   for i in range(2049)]
    big = await db.create_agent_logs(agent_rows)
    # The same rows one at a time (a span id is unique in its trace: these get others).
    one = [await db.create_agent_logs([{**row, "span_id": f"{i:x}".rjust(16, "f")}])
           for i, row in enumerate(agent_rows[:30:4])]
    one += [await db.create_agent_logs([row]) for row in agent_rows[:30] if not row["span_id"]]
    big_sys = await db.create_system_logs(system_rows)
    one_sys = [await db.create_system_logs([row]) for row in system_rows[:30]]

    def same(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        """A stored row without what differs by design (its id and span id; "now" where no
        time was given)."""
        return {k: v for k, v in a.items() if k not in ("id", "span_id")
                and not (k == "created_at" and "created_at" not in b)}

    for ids, rows, get in ((big, agent_rows, db.get_agent_log),
                           (big_sys, system_rows, db.get_system_log)):
        stored = [await get(i) for i in ids]
        assert len(stored) == 2049 and all(stored)
        for row, given in zip(stored, rows, strict=True):
            assert row is not None
            for key, value in given.items():
                if key != "created_at":
                    assert row[key] == value, (key, row[key], value)
        assert stored[1]["created_at"] == "2026-01-01T21:34:05.123456+00:00"
        assert stored[3]["created_at"] == "9999-12-31T23:59:59.999998+00:00"
    spans_first = [*range(0, 30, 4), *(i for i in range(30) if i % 4)]
    for ids, pairs, get in (([i for [i] in one], [(big[i], agent_rows[i]) for i in spans_first],
                             db.get_agent_log),
                            ([i for [i] in one_sys], zip(big_sys, system_rows, strict=True),
                             db.get_system_log)):
        for single_id, (big_id, given) in zip(ids, pairs, strict=False):  # the first 30
            single, batched = await get(single_id), await get(big_id)
            assert single is not None and batched is not None
            assert same(single, given) == same(batched, given)
