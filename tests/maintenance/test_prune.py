"""prune: old rows go in bounded batches, money stays (cost_summary and session_summary equal)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator_db import DatabaseManager, ValidationError, apply_retention_policy
from orchestrator_db.maintenance import cutoff_from
from orchestrator_db.store.base import uuid7
from orchestrator_db.summaries import GROUPS

NOW = datetime.now(UTC)


async def _populate(db: DatabaseManager, rng: random.Random, n_prompts: int = 300
                    ) -> tuple[list[str], list[str]]:
    """Two orchestrator agents, six agents in three sessions, prompts over 60 days."""
    oas = [await db.create_orchestrator_agent(f"oa{i}") for i in range(2)]
    agents, sessions = [], []
    for i in range(6):
        session = f"session-{i % 3}"
        sessions.append(session)
        agents.append(await db.create_agent(oas[i % 2], session, name=f"agent{i}"))
    rows = []
    for i in range(n_prompts):
        created = NOW - timedelta(days=rng.uniform(0, 60), seconds=i)
        rows.append({
            "id": uuid7(), "agent_id": rng.choice(agents), "content": f"p{i}",
            "response": "r", "model": rng.choice(["m-a", "m-b", None]),
            "status": rng.choice(["completed", "failed", "pending"]),
            "tokens_input": rng.randint(0, 5000), "tokens_output": rng.randint(0, 5000),
            # multiples of 1/1024 add up exactly, in any order, on both engines
            "cost_usd": rng.randint(0, 4096) / 1024,
            "created_at": created, "completed_at": None,
        })
    await db.import_rows("prompts", rows)
    logs = [{"id": uuid7(), "agent_id": rng.choice(agents), "log_level": "INFO",
             "log_type": "event", "message": f"l{i}", "details": None,
             "created_at": NOW - timedelta(days=rng.uniform(0, 60))} for i in range(200)]
    await db.import_rows("agent_logs", logs)
    await db.create_system_logs([{"message": f"s{i}",
                                  "created_at": NOW - timedelta(days=rng.uniform(0, 60))}
                                 for i in range(100)])
    return agents, sorted(set(sessions))


async def _money(db: DatabaseManager, sessions: list[str]) -> dict[str, Any]:
    midnight = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    out: dict[str, Any] = {g: await db.cost_summary(g) for g in GROUPS}
    out["day-ranged"] = await db.cost_summary("day", since=midnight - timedelta(days=50),
                                              until=midnight - timedelta(days=10))
    out["sessions"] = []
    for s in sessions:
        summary = await db.session_summary(s)
        assert summary is not None
        out["sessions"].append({k: summary[k] for k in ("prompts", "tokens_input",
                                                         "tokens_output", "cost_usd")})
    return out


async def test_prune_keeps_every_cost_summary_equal(db: DatabaseManager) -> None:
    rng = random.Random(5)
    _, sessions = await _populate(db, rng)
    before = await _money(db, sessions)
    cutoff = NOW - timedelta(days=30)
    expected = {
        "agent_logs": sum(1 for r in await db.list_agent_logs(limit=1000)
                          if r["created_at"] < cutoff.isoformat()),
        "system_logs": sum(1 for r in await db.list_system_logs(limit=1000)
                           if r["created_at"] < cutoff.isoformat()),
        "prompts": sum(1 for r in await db.list_prompts(limit=1000)
                       if r["created_at"] < cutoff.isoformat()),
    }
    assert all(expected.values())

    dry = await db.prune(cutoff, dry_run=True)
    assert dry == expected
    assert await _money(db, sessions) == before

    counts = await db.prune(cutoff, batch_size=7)  # many batches, several per rollup key
    assert counts == expected
    assert await _money(db, sessions) == before
    assert all(r["created_at"] >= cutoff.isoformat() for r in await db.list_prompts(limit=1000))
    assert len(await db.list_prompts(limit=1000)) == 300 - expected["prompts"]

    # A second prune adds to the existing rollups instead of starting new ones.
    counts = await db.prune("10d", tables=["prompts"])
    assert counts["prompts"] > 0 and set(counts) == {"prompts"}
    assert await _money(db, sessions) == before
    dry = await db.prune("10d", dry_run=True)
    assert dry["prompts"] == 0 and dry["agent_logs"] > 0
    assert await db.prune("10d") == dry
    assert await _money(db, sessions) == before


async def test_deleting_an_agent_deletes_its_rollups(db: DatabaseManager) -> None:
    rng = random.Random(7)
    agents, sessions = await _populate(db, rng, n_prompts=60)
    await db.prune("1d", tables=["prompts"])
    await db.delete_agent(agents[0])
    per_agent = {r["key"] for r in await db.cost_summary("agent")}
    assert agents[0] not in per_agent
    assert per_agent <= set(agents[1:])


async def test_bad_arguments_are_validation_errors(db: DatabaseManager) -> None:
    with pytest.raises(ValidationError, match="older_than"):
        await db.prune("thirty days")
    with pytest.raises(ValidationError, match="tables"):
        await db.prune("30d", tables=["agents"])
    with pytest.raises(ValidationError, match="batch_size"):
        await db.prune("30d", batch_size=0)
    with pytest.raises(ValidationError, match="negative"):
        await db.prune(timedelta(days=-1))
    with pytest.raises(ValidationError, match="got 'agents'"):
        await db.prune("30d", tables="agents")


async def test_one_table_may_be_named_as_a_string(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    await db.create_agent_log(agent, "old", created_at="2000-01-01T00:00:00Z")
    await db.create_system_log("old", created_at="2000-01-01T00:00:00Z")
    assert await db.prune("1d", tables="agent_logs") == {"agent_logs": 1}
    assert len(await db.list_system_logs()) == 1


def test_older_than_forms() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert cutoff_from("30d", now) == now - timedelta(days=30)
    assert cutoff_from("12h", now) == now - timedelta(hours=12)
    assert cutoff_from("15m", now) == now - timedelta(minutes=15)
    assert cutoff_from("2w", now) == now - timedelta(weeks=2)
    assert cutoff_from(timedelta(days=1), now) == now - timedelta(days=1)
    assert cutoff_from("2026-01-01T00:00:00Z", now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert cutoff_from(datetime(2026, 1, 1), now) == datetime(2026, 1, 1, tzinfo=UTC)


async def test_retention_policy_from_the_environment(db: DatabaseManager,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    await db.create_agent_log(agent, "old", created_at=NOW - timedelta(days=10))
    await db.create_agent_log(agent, "new")
    monkeypatch.delenv("ORCHESTRATOR_RETENTION_DAYS", raising=False)
    assert await apply_retention_policy(db) == {}
    monkeypatch.setenv("ORCHESTRATOR_RETENTION_DAYS", "0")
    assert await apply_retention_policy(db) == {}
    monkeypatch.setenv("ORCHESTRATOR_RETENTION_DAYS", "7")
    assert await apply_retention_policy(db) == {"agent_logs": 1, "system_logs": 0, "prompts": 0,
                                                "changes": 0}
    assert [r["message"] for r in await db.list_agent_logs(agent)] == ["new"]
    monkeypatch.setenv("ORCHESTRATOR_RETENTION_DAYS", "a week")
    with pytest.raises(ValidationError, match="ORCHESTRATOR_RETENTION_DAYS"):
        await apply_retention_policy(db)


WRITER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from orchestrator_db import DatabaseManager, OrchestratorDBError

    url, agent_id, stop = sys.argv[1], sys.argv[2], Path(sys.argv[3])

    async def main():
        written, errors = 0, []
        async with DatabaseManager(url=url) as db:
            print("ready", flush=True)
            while not stop.exists() or written < 50:
                try:
                    await db.create_agent_log(agent_id, f"live {written}")
                    if written % 10 == 0:
                        await db.create_system_log(f"live {written}")
                    written += 1
                except OrchestratorDBError as exc:
                    errors.append(repr(exc))
                await asyncio.sleep(0)
        print(json.dumps({"written": written, "errors": errors[:5], "n_errors": len(errors)}))

    asyncio.run(main())
    """
)


async def test_prune_100k_rows_beside_a_writing_process(db: DatabaseManager, db_url: str,
                                                        tmp_path: Path) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    old = NOW - timedelta(days=90)
    for start in range(0, 100_000, 10_000):
        await db.import_rows("agent_logs", [
            {"id": uuid7(), "agent_id": agent, "log_level": "DEBUG", "log_type": "event",
             "message": f"old {start + i}", "details": {"i": i},
             "created_at": old + timedelta(microseconds=start + i)}
            for i in range(10_000)], batch_size=5000)
    stop = tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, db_url, agent, str(stop)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        counts = await db.prune("30d", batch_size=5000)
    finally:
        stop.touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["n_errors"] == 0, result
    assert counts == {"agent_logs": 100_000, "system_logs": 0, "prompts": 0}
    rows = [r async for r in db.iter_agent_logs(agent)]
    assert [r["message"] for r in rows] == [f"live {i}" for i in range(result["written"])]


async def test_prune_trims_the_change_log_too(db: DatabaseManager) -> None:
    await db.create_system_logs([{"message": str(i)} for i in range(5)])
    store = db.store
    old = NOW - timedelta(days=40)
    await store.execute(f"UPDATE changes SET created_at = {store.query().p(store.ts(old))}",  # type: ignore[attr-defined]
                        [store.ts(old)])  # type: ignore[attr-defined]
    await db.create_system_log("recent")
    before = (await store.fetch("SELECT count(*) AS n FROM changes"))[0]["n"]
    assert before == 6
    assert (await db.prune("30d", tables=["changes"], dry_run=True)) == {"changes": 5}
    assert (await db.prune("30d", tables=["changes"])) == {"changes": 5}
    rows = await store.fetch("SELECT count(*) AS n FROM changes")
    assert rows[0]["n"] == 1
    assert len(await db.list_system_logs()) == 6, "pruning the change log never touches records"

