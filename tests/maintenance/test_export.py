"""export streams every table as JSON Lines or CSV; import_rows puts it back unchanged."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from orchestrator_db import DatabaseManager, ValidationError
from orchestrator_db.tables import COLUMNS

TABLES = ("orchestrator_agents", "agents", "prompts", "agent_logs", "system_logs")
PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def empty_url(db_url: str, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A second, empty database on the same engine as ``db_url``."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/imported/orchestrator.db"
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    base = db_url.split("?", 1)[0] if "?" in db_url else PG_BASE

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{base}?search_path={schema}"
    finally:
        asyncio.run(run(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


async def _populate(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent(
        "plänner", "Plans ✓ the work, with \"quotes\", commas, and\nnewlines",
        capabilities="plan,review", metadata={"nested": {"list": [1, 2.5, None, "ü"]}})
    await db.create_orchestrator_agent("bare")
    agents = [await db.create_agent(oa, f"s-{i % 2}", name=f"a{i}", model="m",
                                    metadata={"i": i}) for i in range(4)]
    await db.update_agent_status(agents[0], "completed")
    for i, agent in enumerate(agents):
        p = await db.create_prompt(agent, f"prompt {i} 🚀", model=None if i % 2 else "m")
        await db.complete_prompt(p, f"answer {i}", tokens_input=i * 10, tokens_output=i,
                                 cost_usd=i / 8)
    await db.create_agent_logs([{"agent_id": agents[i % 4], "message": f"log {i}",
                                 "log_level": "WARNING" if i % 3 else "DEBUG",
                                 "details": None if i % 2 else {"k": [i, "x,y"]}}
                                for i in range(2500)])
    await db.create_system_logs([{"message": f"sys {i}", "source": "svc", "details": "plain"}
                                 for i in range(30)])


async def _export_all(db: DatabaseManager, format: str = "jsonl") -> dict[str, str]:
    out = {}
    for table in TABLES:
        buffer = io.StringIO()
        count = await db.export(table, buffer, format=format)
        out[table] = buffer.getvalue()
        assert count == (await db.stats())["counts"][table]
    return out


async def test_jsonl_round_trip_into_an_empty_database(db: DatabaseManager, empty_url: str
                                                       ) -> None:
    await _populate(db)
    exported = await _export_all(db)
    assert len(exported["agent_logs"].splitlines()) == 2500  # more than one keyset page
    async with DatabaseManager(url=empty_url) as copy:
        for table in TABLES:
            rows = (json.loads(line) for line in io.StringIO(exported[table]))
            await copy.import_rows(table, rows, batch_size=700)
        assert await _export_all(copy) == exported
        assert await _export_all(copy, "csv") == await _export_all(db, "csv")
        for table in TABLES:
            assert (await copy.stats())["counts"][table] == (await db.stats())["counts"][table]
        assert await copy.cost_summary("agent") == await db.cost_summary("agent")


async def test_csv_has_a_header_and_json_fields_as_json_text(db: DatabaseManager) -> None:
    await _populate(db)
    buffer = io.StringIO()
    assert await db.export("orchestrator_agents", buffer, format="csv") == 2
    rows = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert rows[0] == list(COLUMNS["orchestrator_agents"])
    record = dict(zip(rows[0], rows[1], strict=True))
    original = await db.get_orchestrator_agent_by_name("plänner")
    assert original is not None
    assert json.loads(record["capabilities"]) == ["plan", "review"]
    assert json.loads(record["metadata"]) == original["metadata"]
    assert record["description"] == original["description"]
    assert record["id"] == original["id"] and record["created_at"] == original["created_at"]
    bare = dict(zip(rows[0], rows[2], strict=True))
    assert bare["metadata"] == "" and bare["description"] == ""


async def test_filters_by_session_and_time(db: DatabaseManager) -> None:
    await _populate(db)
    buffer = io.StringIO()
    n = await db.export("agents", buffer, session_id="s-1")
    lines = [json.loads(x) for x in buffer.getvalue().splitlines()]
    assert n == len(lines) == 2 and {r["session_id"] for r in lines} == {"s-1"}
    buffer = io.StringIO()
    n = await db.export("agent_logs", buffer, session_id="s-1")
    assert n == 1250
    future = datetime.now(UTC) + timedelta(days=1)
    assert await db.export("system_logs", io.StringIO(), since=future) == 0
    assert await db.export("system_logs", io.StringIO(), until=future) == 30
    with pytest.raises(ValidationError, match="session_id"):
        await db.export("system_logs", io.StringIO(), session_id="s-1")
    with pytest.raises(ValidationError, match="format"):
        await db.export("agents", io.StringIO(), format="xml")
    with pytest.raises(ValidationError, match="table"):
        await db.export("changes", io.StringIO())


async def test_import_refuses_incomplete_or_unknown_columns(db: DatabaseManager) -> None:
    with pytest.raises(ValidationError, match="missing column"):
        await db.import_rows("system_logs", [{"id": str(uuid.uuid4()), "message": "m"}])
    with pytest.raises(ValidationError, match="unknown column"):
        await db.import_rows("system_logs", [{"bogus": 1}])

    async def rows() -> AsyncIterator[dict[str, object]]:
        yield {"id": str(uuid.uuid4()), "log_level": "INFO", "source": None, "message": "m",
               "details": None, "created_at": "2026-01-01T00:00:00+00:00"}

    assert await db.import_rows("system_logs", rows()) == 1
    [row] = await db.list_system_logs()
    assert row["created_at"] == "2026-01-01T00:00:00.000000+00:00"
