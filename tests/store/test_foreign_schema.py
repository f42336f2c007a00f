"""A schema that claims to be ours but is not (loaded by pgloader) is refused on connect/upgrade.

pgloader, the seeds' migration advice, copies ``schema_migrations`` along with the rows, so the
database claims the newest version; but every column is text and no trigger is there. Before,
it was accepted as current and failed its first write with a misleading error.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from orchestrator_db import DatabaseManager
from orchestrator_db.config import Dialect
from orchestrator_db.errors import SchemaError
from orchestrator_db.store.migrations import load_migrations
from orchestrator_db.tables import COLUMNS

MIGRATIONS = load_migrations(Dialect.SQLITE)


def _pgloader_like_sqlite(path: Path) -> None:
    """Every column TEXT, no triggers, and every migration recorded as applied."""
    conn = sqlite3.connect(path)
    for table, columns in COLUMNS.items():
        conn.execute(f"CREATE TABLE {table} ({', '.join(c + ' TEXT' for c in columns)})")
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, "
                 "applied_at TEXT)")
    conn.executemany("INSERT INTO schema_migrations VALUES (?, ?, '2026-11-01')",
                     [(m.version, m.name) for m in MIGRATIONS])
    conn.commit()
    conn.close()


async def _pgloader_like_postgres(url: str) -> None:
    """What pgloader makes of our SQLite file: text columns, no triggers, versions copied."""
    conn = await asyncpg.connect(url)
    try:
        for table, columns in COLUMNS.items():
            await conn.execute(f"CREATE TABLE {table} ({', '.join(c + ' text' for c in columns)})")
        await conn.execute("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, "
                           "name text, applied_at text)")
        await conn.executemany("INSERT INTO schema_migrations VALUES ($1, $2, '2026-11-01')",
                               [(m.version, m.name) for m in MIGRATIONS])
    finally:
        await conn.close()


async def test_sqlite_with_text_columns_and_no_triggers_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loaded.db"
    _pgloader_like_sqlite(path)
    with pytest.raises(SchemaError) as caught:
        async with DatabaseManager(path):
            pass
    message = str(caught.value)
    assert "3 column(s) of other types (prompts.tokens_input is TEXT, not INTEGER" in message
    assert "all 15 change-feed triggers missing" in message
    assert "pgloader" in message and "orchestrator-db copy" in message


async def test_postgres_with_text_columns_is_refused(pg_url: str) -> None:
    await _pgloader_like_postgres(pg_url)
    with pytest.raises(SchemaError) as caught:
        async with DatabaseManager(url=pg_url):
            pass
    message = str(caught.value)
    # 9 uuid, 10 timestamptz and 5 jsonb columns are text
    assert "24 column(s) of other types (orchestrator_agents.id is text, not uuid" in message
    assert "all 15 change-feed triggers missing" in message
    assert "orchestrator-db copy" in message
    # read-only opening (copy's source, backup) says the same
    with pytest.raises(SchemaError, match="pgloader"):
        async with DatabaseManager(url=pg_url, read_only=True):
            pass


async def test_dropped_triggers_are_noticed(db_url: str) -> None:
    async with DatabaseManager(url=db_url) as db:
        await db.store.execute("DROP TRIGGER changes_agents_insert"
                               + (" ON agents" if db.dialect is Dialect.POSTGRES else ""))
    with pytest.raises(SchemaError, match=r"1 of the 15 change-feed triggers missing "
                                          r"\(changes_agents_insert\)"):
        async with DatabaseManager(url=db_url):
            pass


async def test_our_own_schema_passes_and_the_check_is_cheap(db_url: str) -> None:
    async with DatabaseManager(url=db_url) as db:
        await db.create_orchestrator_agent("planner")
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):
        async with DatabaseManager(url=db_url) as db:
            assert len(await db.list_orchestrator_agents()) == 1
    assert (loop.time() - start) / 5 < 0.5  # a connect, checks included, stays well under this


def test_upgrade_refuses_it_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "loaded.db"
    _pgloader_like_sqlite(path)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ORCHESTRATOR_DB_PATH")}
    result = subprocess.run([sys.executable, "-m", "orchestrator_db.cli", "upgrade", "--db", str(path)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "orchestrator-db copy" in result.stderr
    assert "already up to date" not in result.stdout
