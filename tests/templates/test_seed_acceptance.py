"""Seed 000 acceptance inside a scaffolded project: its smoke test and validation commands, verbatim.

Each command runs as a subprocess with cwd = the scaffolded directory and PYTHONPATH unset, so
``adws`` is imported from the project and ``orchestrator_db`` from the installed package. The
seed runs them through ``uv run``; where uv is not installed the same command runs directly with
this environment's ``python``.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator_db.config import Dialect
from orchestrator_db.store.base import load_migrations

# seed 000, Task 8, verbatim
SMOKE_TEST = '''import asyncio
from adws.adw_database import DatabaseManager

async def test():
    async with DatabaseManager() as db:
        # Create orchestrator agent
        agent_id = await db.create_orchestrator_agent("test-agent", "Test description")
        print(f"Created: {agent_id}")

        # Retrieve
        agent = await db.get_orchestrator_agent(agent_id)
        print(f"Retrieved: {agent}")

        # List all
        agents = await db.list_orchestrator_agents()
        print(f"Total: {len(agents)}")

asyncio.run(test())
'''

# seed 000, "Validation Commands" (the tac_bootstrap_cli lint step is that project's own code)
VALIDATION = [
    "uv run python test_manual_db.py",
    'sqlite3 data/orchestrator.db ".schema"',
    'sqlite3 data/orchestrator.db "SELECT * FROM orchestrator_agents;"',
    "uv run python -c \"from adws.adw_database import DatabaseManager; print('Import OK')\"",
]
TABLES = ["orchestrator_agents", "agents", "prompts", "agent_logs", "system_logs"]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
NEWEST = load_migrations(Dialect.SQLITE)[-1].version

# In CI (CI=true) the tool is installed by .ci/run: a missing one fails instead of skipping.
needs_sqlite3 = pytest.mark.skipif(shutil.which("sqlite3") is None and not os.environ.get("CI"),
                                   reason="the sqlite3 command-line tool is not installed")


def project_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DATABASE_URL", "ORCHESTRATOR_DB_PATH", "DATABASE_PATH")}
    # `python` is this environment's interpreter (where orchestrator-db is installed).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if command.startswith("uv run ") and shutil.which("uv") is None:
        command = command.removeprefix("uv run ")
    return subprocess.run(command, shell=True, cwd=cwd, env=project_env(), capture_output=True,
                          text=True, timeout=120)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this environment's interpreter in the project, as the user would."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=project_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "orchestrator"
    root.mkdir()
    result = subprocess.run([sys.executable, "-m", "orchestrator_db.cli", "init"], cwd=root,
                            env=project_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (root / "test_manual_db.py").write_text(SMOKE_TEST)
    return root


@needs_sqlite3
def test_seed_validation_commands(project: Path) -> None:
    smoke, schema, select, import_check = (sh(c, project) for c in VALIDATION)

    assert smoke.returncode == 0, smoke.stderr
    lines = smoke.stdout.splitlines()
    assert len(lines) == 3, smoke.stdout
    created = re.fullmatch(f"Created: ({UUID})", lines[0])
    assert created, lines[0]
    assert lines[1].startswith("Retrieved: {") and f"'id': '{created.group(1)}'" in lines[1]
    assert "'name': 'test-agent'" in lines[1] and "'description': 'Test description'" in lines[1]
    assert lines[2] == "Total: 1"
    assert (project / "data/orchestrator.db").is_file()

    assert schema.returncode == 0, schema.stderr
    for table in TABLES:
        assert re.search(rf"CREATE TABLE (IF NOT EXISTS )?{table} \(", schema.stdout), table

    assert select.returncode == 0, select.stderr
    assert select.stdout.startswith(f"{created.group(1)}|test-agent|Test description|")

    assert import_check.returncode == 0, import_check.stderr
    assert import_check.stdout == "Import OK\n"


@needs_sqlite3
def test_smoke_test_runs_again_on_the_same_database(project: Path) -> None:
    assert sh("python test_manual_db.py", project).returncode == 0
    second = sh("python test_manual_db.py", project)
    # The seed's agent name is unique: a second run says so in one typed error, no data lost.
    assert second.returncode == 1
    assert "DuplicateError: an orchestrator agent named 'test-agent' already exists" in \
        second.stderr


@needs_sqlite3
def test_setup_script_creates_a_database_the_manager_uses_as_is(project: Path) -> None:
    created = sh("scripts/setup_database.sh", project)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"created data/orchestrator.db (schema version {NEWEST})"
    db = project / "data/orchestrator.db"
    with sqlite3.connect(db) as conn:
        migrations = conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall()
        conn.execute("INSERT INTO system_logs (id, log_level, message, created_at) VALUES "
                     "('00000000-0000-7000-8000-000000000001', 'INFO', 'made by sqlite3', "
                     "'2026-01-01T00:00:00.000000+00:00')")
    conn.close()
    assert [m[0] for m in migrations] == list(range(1, NEWEST + 1))

    smoke = sh("python test_manual_db.py", project)
    assert smoke.returncode == 0, smoke.stderr
    assert smoke.stdout.splitlines()[-1] == "Total: 1"
    check = sh("python -c \"import asyncio; from adws.adw_database import DatabaseManager\n"
               "async def main():\n"
               "    async with DatabaseManager() as db:\n"
               "        print(await db.schema_version(), len(await db.list_system_logs()))\n"
               "asyncio.run(main())\"", project)
    assert check.stdout.split() == [str(NEWEST), "1"], check.stderr
    with sqlite3.connect(db) as conn:  # nothing re-created or re-applied
        assert conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall() == \
            migrations
    conn.close()

    refused = sh("scripts/setup_database.sh", project)
    assert refused.returncode == 1
    assert "already exists; pass --force" in refused.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM orchestrator_agents").fetchone() == (1,)
    conn.close()

    forced = sh("scripts/setup_database.sh --force", project)
    assert forced.returncode == 0, forced.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM orchestrator_agents").fetchone() == (0,)
    conn.close()


def test_database_path_from_the_environment(project: Path) -> None:
    env = project_env()
    env["ORCHESTRATOR_DB_PATH"] = "elsewhere/orch.db"
    result = subprocess.run([sys.executable, "test_manual_db.py"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (project / "elsewhere/orch.db").is_file()
    assert not (project / "data/orchestrator.db").exists()


def test_explicit_missing_schema_file_is_a_file_not_found_error(project: Path) -> None:
    code = ("import asyncio\nfrom adws.adw_database import DatabaseManager\n"
            "async def main():\n"
            "    try:\n"
            "        async with DatabaseManager(schema_path='adws/schema/missing.sqlite'):\n"
            "            pass\n"
            "    except FileNotFoundError as exc:\n"
            "        print(type(exc).__name__, exc)\n"
            "asyncio.run(main())\n")
    result = run_python(code, project)
    assert result.stdout.startswith("SchemaNotFoundError schema file not found"), result.stderr


def test_without_the_schema_file_the_package_migrations_are_used(project: Path) -> None:
    (project / "adws/schema/schema_orchestrator.sqlite").unlink()
    result = sh("python test_manual_db.py", project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Total: 1"


def test_sync_manager_of_the_project(project: Path) -> None:
    code = ("from adws.adw_database import SyncDatabaseManager\n"
            "from adws.adw_modules.orch_database_models import OrchestratorAgent\n"
            "with SyncDatabaseManager() as db:\n"
            "    oa = db.create_orchestrator_agent('sync-agent', capabilities='a,b')\n"
            "    print(OrchestratorAgent.model_validate(db.get_orchestrator_agent(oa)).capabilities)\n")
    result = run_python(code, project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['a', 'b']\n"
