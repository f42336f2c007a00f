"""The commands on another program's database: one error line, and the file left as it was.

Read-only commands never create a database, so they never write our schema into an existing
file that lacks it (another app's, or an empty one) either; `current` says the version it finds
without migrating it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from cli_helpers import invoke, run

from dbhelpers import run_sql, sqlite_execute
from orchestrator_db import DatabaseManager
from orchestrator_db.config import Dialect
from orchestrator_db.store.migrations import load_migrations

NEWEST = load_migrations(Dialect.SQLITE)[-1].version
READ_ONLY = [["sessions"], ["stats"], ["current"], ["export", "--table", "agent_logs"],
             ["prune", "--older-than", "30d"], ["logs"]]


def one_error_line(result, *expected: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: c[0])
@pytest.mark.parametrize("kind", ["another app's", "empty"])
def test_read_only_commands_leave_a_file_without_our_schema_as_it_was(
        tmp_path: Path, command: list[str], kind: str) -> None:
    path = tmp_path / "f.db"
    if kind == "empty":
        path.touch()
    else:
        sqlite_execute(path, "CREATE TABLE users (id integer)", "INSERT INTO users VALUES (1)")
    before = path.read_bytes()
    one_error_line(invoke(*command, "--db", str(path)), f"no orchestrator-db schema at {path}",
                   "orchestrator-db upgrade")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.db"]


def test_a_schema_migrations_table_of_another_program_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    sqlite_execute(path, "CREATE TABLE schema_migrations (version text, name text)",
            "INSERT INTO schema_migrations VALUES ('abc', 'x')")
    before = path.read_bytes()
    for command in [*READ_ONLY, ["upgrade"], ["backup", str(tmp_path / "b.db")]]:
        result = run(*command, "--db", str(path))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"error: {path} is not an orchestrator-db database "
                                        "(its schema_migrations table has the columns version, "
                                        "name, not version, name, applied_at)"), result.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.db"]


def test_upgrade_of_a_clashing_table_does_not_advise_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    sqlite_execute(path, "CREATE TABLE agents (id text PRIMARY KEY, foo text)")
    result = invoke("upgrade", "--db", str(path))
    one_error_line(result, "not an orchestrator-db database", "agents (id, foo)",
                   "no such column: session_id")
    assert "run `orchestrator-db upgrade`" not in result.stderr


async def _at_version(url: str, version: int) -> None:
    """A database whose newest recorded migration is ``version`` (the later ones' rows gone)."""
    async with DatabaseManager(url=url) as db:
        await run_sql(db, f"DELETE FROM schema_migrations WHERE version > {version}",
                      f"DELETE FROM schema_migrations WHERE version > {version}")


def _recorded(url: str) -> int:
    """The newest version in schema_migrations, read as another client (nothing migrated)."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return int(conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0])
        finally:
            conn.close()

    async def read() -> int:
        conn_pg = await asyncpg.connect(url)
        try:
            return int(await conn_pg.fetchval("SELECT max(version) FROM schema_migrations"))
        finally:
            await conn_pg.close()
    return asyncio.run(read())


def test_current_prints_the_version_found_without_migrating(db_url: str) -> None:
    asyncio.run(_at_version(db_url, NEWEST - 1))
    result = invoke("current", "--url", db_url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(NEWEST - 1)
    assert "upgrade is pending" in result.stderr and "orchestrator-db upgrade" in result.stderr
    assert _recorded(db_url) == NEWEST - 1
    assert invoke("upgrade", "--url", db_url).exit_code == 0
    result = invoke("current", "--url", db_url)
    assert (result.exit_code, result.stdout.strip(), result.stderr) == (0, str(NEWEST), "")


def test_current_names_a_newer_schema(db_url: str) -> None:
    async def newer() -> None:
        async with DatabaseManager(url=db_url) as db:
            await run_sql(db, "INSERT INTO schema_migrations VALUES (99, 'future', 'x')",
                          "INSERT INTO schema_migrations VALUES (99, 'future', now())")
    asyncio.run(newer())
    result = invoke("current", "--url", db_url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "99"
    assert "newer than this orchestrator-db's" in result.stderr
