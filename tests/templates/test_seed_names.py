"""The seeds' names work in a scaffolded project (issue 13, item 3).

Seed 002's backend puts ``adws/`` on ``sys.path`` and imports ``adw_modules.adw_database``; seeds
000/001 call ``get_orchestrator_agent(agent_id)`` and expect ``list_orchestrator_agents()`` newest
first; seed 002's ``.env.sample`` names the database ``DATABASE_PATH``; the seed's models check
the id and have defaults.
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from pathlib import Path

import pydantic
import pytest
from test_seed_acceptance import project, sh  # noqa: F401 - `project` is a fixture

from orchestrator_db import DatabaseManager
from orchestrator_db.models import Agent, AgentLog, OrchestratorAgent, Prompt, SystemLog

ROOT = Path(__file__).resolve().parents[2]

# seed 002, "FastAPI app adaptado", verbatim (its comment lines and `...` elided), in the place
# its sys.path line expects: three directories below the project root.
SEED_002_BACKEND = '''from fastapi import FastAPI, WebSocket
from contextlib import asynccontextmanager
import sys
import os

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../../adws"))
from adw_modules.adw_database import DatabaseManager

# Database instance
db_manager: DatabaseManager = None

@asynccontextmanager
async def lifespan(app: FastAPI):
    """Lifecycle manager for database connection."""
    global db_manager

    # Startup: Initialize database
    db_manager = DatabaseManager("orchestrator.db")
    await db_manager.connect()

    yield

    # Shutdown: Close database
    await db_manager.close()

app = FastAPI(
    title="TAC Bootstrap Orchestrator",
    version="0.8.0",
    lifespan=lifespan
)

@app.get("/api/agents")
async def list_agents():
    """List all orchestrator agents."""
    agents = await db_manager.list_orchestrator_agents()
    return {"agents": agents}
'''

CLIENT = '''import json, sys
sys.path.insert(0, "apps/orchestrator_3_stream/backend")
from fastapi.testclient import TestClient
from main import app, DatabaseManager
import asyncio

async def seed():
    async with DatabaseManager("orchestrator.db") as db:
        await db.create_orchestrator_agent(name="first", description="made first")
        await db.create_orchestrator_agent(name="second", description="made second")

asyncio.run(seed())
with TestClient(app) as client:
    print(json.dumps(client.get("/api/agents").json()))
'''

# seed 001, "Manual Smoke Test", verbatim: calls by keyword.
SEED_001_SMOKE = '''import asyncio
from adws.adw_database import DatabaseManager

async def test():
    async with DatabaseManager() as db:
        # Create orchestrator agent
        agent_id = await db.create_orchestrator_agent(
            name="test-agent",
            description="Test description"
        )
        print(f"✓ Created agent: {agent_id}")

        # Retrieve
        agent = await db.get_orchestrator_agent(agent_id)
        assert agent["name"] == "test-agent"
        print(f"✓ Retrieved agent: {agent['name']}")

        # List all
        agents = await db.list_orchestrator_agents()
        print(f"✓ Total agents: {len(agents)}")

asyncio.run(test())
'''


def test_seed_002_backend_imports_adw_modules_and_lists_newest_first(
        project: Path) -> None:  # noqa: F811
    backend = project / "apps/orchestrator_3_stream/backend"
    backend.mkdir(parents=True)
    (backend / "main.py").write_text(SEED_002_BACKEND)
    (project / "client.py").write_text(CLIENT)
    result = sh("python client.py", project)
    assert result.returncode == 0, result.stderr
    agents = json.loads(result.stdout)["agents"]
    assert [a["name"] for a in agents] == ["second", "first"]  # newest first, as the seed says
    assert (project / "orchestrator.db").is_file()


def test_seed_001_smoke_test_by_keyword(project: Path) -> None:  # noqa: F811
    (project / "test_db_smoke.py").write_text(SEED_001_SMOKE)
    result = sh("uv run python test_db_smoke.py", project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == ["✓ Retrieved agent: test-agent",
                                              "✓ Total agents: 1"]


async def test_keyword_names_of_the_seeds(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent(name="planner", description="plans")
    assert (await db.get_orchestrator_agent(agent_id=oa))["name"] == "planner"  # type: ignore[index]
    assert (await db.get_orchestrator_agent(orchestrator_agent_id=oa))["id"] == oa  # type: ignore[index]
    assert (await db.get_orchestrator_agent(oa))["id"] == oa  # type: ignore[index]
    with pytest.raises(TypeError, match="not both"):
        await db.get_orchestrator_agent(oa, orchestrator_agent_id=oa)
    agent = await db.create_agent(orchestrator_agent_id=oa, session_id="s")
    assert await db.update_agent_status(agent_id=agent, status="executing",
                                        started_at="2026-11-01T10:00:00Z")
    newer = await db.create_orchestrator_agent(name="reviewer")
    assert [o["id"] for o in await db.list_orchestrator_agents()] == [newer, oa]
    assert [o["id"] for o in await db.list_orchestrator_agents(order="asc")] == [oa, newer]


def test_database_path_is_an_alias_of_orchestrator_db_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "ORCHESTRATOR_DB_PATH", "DATABASE_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_PATH", "orchestrator.db")  # seed 002's .env.sample
    assert DatabaseManager().target.path == Path("orchestrator.db")
    monkeypatch.setenv("ORCHESTRATOR_DB_PATH", "data/o.db")  # the documented name wins
    assert DatabaseManager().target.path == Path("data/o.db")


def test_record_models_check_the_id_and_have_the_seeds_defaults() -> None:
    with pytest.raises(pydantic.ValidationError, match="id"):
        OrchestratorAgent(id="bad", name="planner")
    oa = OrchestratorAgent(id=str(uuid.uuid4()), name="planner")
    assert (oa.description, oa.status, oa.metadata) == (None, "active", None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", oa.created_at)
    with pytest.raises(pydantic.ValidationError, match="orchestrator_agent_id"):
        Agent(id=str(uuid.uuid4()), orchestrator_agent_id="nope", session_id="s")
    run = Agent(id=uuid.uuid4(), orchestrator_agent_id=oa.id, session_id="s")
    assert (run.status, run.started_at, run.completed_at) == ("pending", None, None)
    prompt = Prompt(id=str(uuid.uuid4()), agent_id=run.id, content="Plan it")
    assert (prompt.status, prompt.tokens_input, prompt.cost_usd) == ("pending", 0, 0.0)
    log = AgentLog(id=str(uuid.uuid4()), agent_id=run.id, message="hi")
    assert (log.log_level, log.log_type, log.details) == ("INFO", "event", None)
    assert SystemLog(id=str(uuid.uuid4()), message="up").log_level == "INFO"


def test_aiosqlite_is_not_a_dependency(project: Path) -> None:  # noqa: F811
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert not any(d.startswith("aiosqlite") for d in meta["project"]["dependencies"])
    for module in ("adws/adw_database.py", "adws/adw_modules/adw_database.py"):
        assert "aiosqlite" not in (project / module).read_text()


def test_schema_readme_says_a_deleted_schema_file_is_rebuilt(project: Path) -> None:  # noqa: F811
    readme = (project / "adws/schema/README.md").read_text()
    assert "If this file is deleted" in readme and "FileNotFoundError" in readme
    (project / "adws/schema/schema_orchestrator.sqlite").unlink()
    result = sh("python test_manual_db.py", project)
    assert result.returncode == 0, result.stderr  # created from the package's migrations
