"""Several OS processes on one database: no lost rows, no "database is locked", one schema."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator_db import DatabaseManager
from orchestrator_db.manager.schema import packaged_schema_version

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from orchestrator_db import DatabaseManager, OrchestratorDBError

    url, agent_id, n, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

    async def main():
        errors = []
        written = 0
        async with DatabaseManager(url=url) as db:
            while time.time() < start_at:
                await asyncio.sleep(0.001)
            for i in range(n):
                try:
                    if i % 2:
                        await db.create_agent_log(agent_id, f"w{i}")
                    else:  # read-then-write in one transaction, the pattern that loses rows
                        async with db.transaction():
                            assert await db.get_agent(agent_id) is not None
                            await db.create_agent_log(agent_id, f"t{i}")
                    written += 1
                except OrchestratorDBError as exc:
                    errors.append(str(exc))
        print(json.dumps({"written": written, "errors": errors[:5], "n_errors": len(errors)}))

    asyncio.run(main())
    """
)

RACE = textwrap.dedent(
    """
    import asyncio, sys, time
    from orchestrator_db import DatabaseManager

    url, start_at = sys.argv[1], float(sys.argv[2])

    async def main():
        while time.time() < start_at:
            time.sleep(0.0005)
        async with DatabaseManager(url=url) as db:
            print(await db.schema_version())

    asyncio.run(main())
    """
)


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


async def test_four_processes_write_one_sqlite_file(sqlite_url: str) -> None:
    async with DatabaseManager(url=sqlite_url) as db:
        oa = await db.create_orchestrator_agent("o")
        agent = await db.create_agent(oa, "s")
    start_at = time.time() + 1.5
    procs = [_spawn(WORKER, sqlite_url, agent, "2000", str(start_at)) for _ in range(4)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert [r["n_errors"] for r in results] == [0, 0, 0, 0], results
    assert sum(r["written"] for r in results) == 8000
    async with DatabaseManager(url=sqlite_url) as db:
        assert (await db.stats())["counts"]["agent_logs"] == 8000


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_processes_racing_to_create_a_new_database(engine: str, request: pytest.FixtureRequest,
                                                          tmp_path: Path) -> None:
    url = request.getfixturevalue("pg_url" if engine == "postgresql" else "sqlite_url")
    start_at = time.time() + 1.5
    procs = [_spawn(RACE, url, str(start_at)) for _ in range(4)]
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            # Every process sees the whole schema, whichever of them created it.
            assert int(out.strip()) == packaged_schema_version()
    finally:  # on a failure, end the others and close their pipes here, not in a later test
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    async with DatabaseManager(url=url) as db:
        rows = await db.store.fetch("SELECT version FROM schema_migrations ORDER BY version")
        versions = [r["version"] for r in rows]
        # Each migration recorded exactly once.
        assert versions == list(range(1, packaged_schema_version() + 1))
