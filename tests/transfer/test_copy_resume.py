"""An interrupted copy continues where it stopped: complete, verified, nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from copy_helpers import read_all

from orchestrator_db import DatabaseManager, SchemaError
from orchestrator_db.transfer import COPY_TABLES, CopyInterrupted, copy_database


async def _counts(url: str) -> dict[str, int]:
    async with DatabaseManager(url=url) as db:
        return dict((await db.stats())["counts"])


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
async def test_injected_stop_then_rerun_completes(source_url: str, target: str,
                                                  request: pytest.FixtureRequest,
                                                  tmp_path: Path) -> None:
    dst = (request.getfixturevalue("pg_url") if target == "postgresql"
           else f"sqlite:///{tmp_path}/dst/orchestrator.db")
    async with DatabaseManager(url=source_url) as src:
        before = await read_all(src)
    # 10-row batches: orchestrator_agents (2), agents (2) and prompts (2) take one batch each,
    # so the fifth batch is the second one of agent_logs.
    with pytest.raises(CopyInterrupted, match="after 5 batch"):
        await copy_database(source_url, dst, batch_size=10, stop_after_batches=5)
    partial = await _counts(dst)
    assert partial["agent_logs"] == 20 and partial["system_logs"] == 0

    # Stop once more in the middle, then let it finish.
    with pytest.raises(CopyInterrupted):
        await copy_database(source_url, dst, batch_size=10, stop_after_batches=3)
    assert (await _counts(dst))["agent_logs"] == 50
    result = await copy_database(source_url, dst, batch_size=10)
    assert result.mode == "resume" and result.verified
    by_table = {t.table: t for t in result.tables}
    assert by_table["agent_logs"].existing_rows == 50
    assert by_table["agent_logs"].copied_rows == len(before["agent_logs"]) - 50
    async with DatabaseManager(url=dst) as db:
        assert await read_all(db) == before


def _make_large_source(path: Path, rows: int) -> None:
    async def go() -> None:
        async with DatabaseManager(path) as db:
            oa = await db.create_orchestrator_agent("bulk")
            agent = await db.create_agent(oa, "bulk-session")
            for start in range(0, rows, 10_000):
                await db.create_agent_logs([
                    {"agent_id": agent, "message": f"line {i} ✓", "details": {"i": i}}
                    for i in range(start, min(rows, start + 10_000))
                ])
    asyncio.run(go())


async def _pg_count(url: str, table: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


def test_copy_killed_midway_then_rerun_completes(pg_url: str, tmp_path: Path) -> None:
    rows = 60_000
    source = tmp_path / "big.db"
    _make_large_source(source, rows)
    command = [sys.executable, "-m", "orchestrator_db.cli", "copy", f"sqlite:///{source}",
               pg_url, "--batch-size", "500"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"})
    try:
        # Wait until some agent_logs batches have landed, then kill it without warning.
        deadline = time.monotonic() + 120
        copied = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                copied = asyncio.run(_pg_count(pg_url, "agent_logs"))
            except asyncpg.UndefinedTableError:
                copied = 0
            if copied >= 2_000:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the copy finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    left = asyncio.run(_pg_count(pg_url, "agent_logs"))
    assert 0 < left < rows

    async def refused() -> None:  # its keys and triggers are off: no writer until it ends
        with pytest.raises(SchemaError, match="a `copy` that has not ended"):
            await DatabaseManager(url=pg_url).connect()
    asyncio.run(refused())

    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resumed and completed" in done.stdout
    assert asyncio.run(_pg_count(pg_url, "agent_logs")) == rows

    async def same() -> None:
        async with DatabaseManager(source) as src, DatabaseManager(url=pg_url) as dst:
            assert await read_all(src) == await read_all(dst)
    asyncio.run(same())


def test_tables_are_copied_in_dependency_order() -> None:
    assert COPY_TABLES.index("orchestrator_agents") < COPY_TABLES.index("agents")
    assert COPY_TABLES.index("agents") < COPY_TABLES.index("prompts")
    assert COPY_TABLES.index("agents") < COPY_TABLES.index("agent_logs")


async def test_postgres_to_sqlite_interrupted_then_resumed(source_url: str, pg_url: str,
                                                           tmp_path: Path) -> None:
    await copy_database(source_url, pg_url)
    back = f"sqlite:///{tmp_path}/back.db"
    with pytest.raises(CopyInterrupted):
        await copy_database(pg_url, back, batch_size=25, stop_after_batches=5)
    assert 0 < (await _counts(back))["agent_logs"] < 120
    result = await copy_database(pg_url, back, batch_size=25)
    assert result.mode == "resume" and result.verified
    async with DatabaseManager(url=source_url) as a, DatabaseManager(url=back) as b:
        assert await read_all(a) == await read_all(b)
